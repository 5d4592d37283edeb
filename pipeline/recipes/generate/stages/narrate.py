"""narrate: ``plan.json`` scenes → one voice track ``narration.m4a`` plus word timings in ``narration.json``.

Each scene is spoken on its own, by edge-tts when it answers and by espeak-ng when it
does not (offline edge-tts fails in ≈0.01 s and would leave a 0-byte file, see NOTES),
and kept as ``narration/scene-NN.wav`` (48 kHz mono PCM) beside a timing file
``narration/scene-NN.json``. The timing file is written last, so its presence means
"this scene is finished": a killed batch resumes without speaking finished scenes again.

Every clip is decoded to the same PCM format before joining, so the join is a byte
concatenation and scene starts are exact sample counts, not probe estimates (an MP3
without a Xing header has only an estimated duration). Loudness is normalized once, on
the joined track (EBU R128: I=-16 LUFS, TP=-1.5 dBTP, LRA=11 LU).

Options (:class:`~pipeline.recipes.generate.options.GenerateOptions`): ``tts`` = ``auto`` (edge-tts,
then espeak-ng) | ``edge`` | ``espeak``; ``voice`` / ``rate`` (used when plan.json does not set them);
``espeak_voice``, ``espeak_wpm``, ``edge_timeout_s``, ``edge_proxy`` (defaults documented there).
ffmpeg and ffprobe are :mod:`pipeline.common.ffmpeg`'s; only espeak-ng is looked up here.
"""

from __future__ import annotations

import array
import asyncio
import concurrent.futures
import hashlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline import errors
from pipeline.common.ffmpeg import probe, run_ffmpeg
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.options import GenerateOptions, options_of
from state.storage import atomic_write_bytes, clean_stray_temps

log = logging.getLogger("tubemill.narrate")

PLAN = "plan.json"
NARRATION_DIR = "narration"
NARRATION_AUDIO = "narration.m4a"
NARRATION_JSON = "narration.json"
SAMPLE_RATE = 48_000
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"
FFMPEG_TIMEOUT_S = 600
EDGE = "edge-tts"
ESPEAK = "espeak-ng"
SILENCE = "silence"
_TICKS = 10_000_000  # edge-tts offsets and durations are in 100-ns units
_T = TypeVar("_T")


@dataclass
class Clip:
    """One spoken scene: its PCM file, real duration and word timings relative to the clip start."""

    index: int
    engine: str
    audio: str  # relative to the workdir
    duration: float
    words: list[dict[str, Any]] = field(default_factory=list)
    text_sha1: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "engine": self.engine, "audio": self.audio, "duration": self.duration,
                "text_sha1": self.text_sha1, "words": self.words}


class EdgeFailed(Exception):
    """edge-tts produced no usable audio; ``network`` says whether it was the connection."""

    def __init__(self, message: str, *, network: bool) -> None:
        super().__init__(message)
        self.network = network


# -- small helpers -------------------------------------------------------------------------------------------------


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if not path:
        raise errors.ConfigError("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


def _run(cmd: list[str], what: str, *, stdin: bytes | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise errors.RetryableError(f"{what} timed out after {timeout:.0f}s") from exc
    except OSError as exc:
        raise errors.ConfigError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise errors.PermanentError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc


def probe_duration(path: Path) -> float:
    """The container's duration in seconds (ffprobe, or ``ffmpeg -i`` where there is none)."""
    duration = probe(path).duration
    if not duration:
        raise errors.PermanentError(f"ffprobe found no duration in {path.name}")
    return duration


def _to_pcm(src: Path, dst: Path, what: str) -> None:
    """Decode anything ffmpeg reads into ``dst``: 48 kHz mono s16 WAV, replaced atomically."""
    tmp = dst.with_name(f".tmp-{dst.name}")
    try:
        run_ffmpeg(["-y", "-i", str(src), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
                    "-f", "wav", str(tmp)], what=what, timeout=FFMPEG_TIMEOUT_S)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _silence(dst: Path, seconds: float) -> None:
    tmp = dst.with_name(f".tmp-{dst.name}")
    frames = max(1, round(seconds * SAMPLE_RATE))
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(b"\0\0" * frames)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _wav_info(path: Path) -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frames) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()


def _speech_bounds(path: Path, threshold: int = 500, window_s: float = 0.01) -> tuple[float, float]:
    """Where speech starts and ends in a mono s16 WAV (leading/trailing silence skipped), in seconds."""
    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.getnframes()
        samples = array.array("h")
        samples.frombytes(w.readframes(frames))
    if not len(samples):
        return 0.0, 0.0
    step = max(1, int(rate * window_s))
    n_windows = (len(samples) + step - 1) // step

    def loud(i: int) -> bool:
        chunk = samples[i * step:(i + 1) * step]
        return max(chunk) > threshold or -min(chunk) > threshold

    first = next((i for i in range(n_windows) if loud(i)), None)
    if first is None:
        return 0.0, len(samples) / rate
    last = next(i for i in range(n_windows - 1, -1, -1) if loud(i))
    return first * step / rate, min(len(samples), (last + 1) * step) / rate


_PAUSE = {".": 3, "!": 3, "?": 3, ",": 2, ";": 2, ":": 2}


def estimate_words(text: str, start: float, end: float) -> list[dict[str, Any]]:
    """Word timings spread over [start, end] in proportion to word length, with pauses after punctuation.

    Good enough for espeak-ng, whose speech rate is nearly uniform; edge-tts reports real boundaries.
    """
    tokens = text.split()
    if not tokens or end <= start:
        return []
    weights = [max(1, len(re.sub(r"\W", "", t))) + 1 for t in tokens]
    gaps = [_PAUSE.get(t[-1], 0) if i < len(tokens) - 1 else 0 for i, t in enumerate(tokens)]
    unit = (end - start) / (sum(weights) + sum(gaps))
    out, t = [], start
    for token, w, g in zip(tokens, weights, gaps, strict=True):
        out.append({"start": round(t, 3), "end": round(t + w * unit, 3), "text": token})
        t += (w + g) * unit
    return out


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def parse_rate(rate: str) -> int:
    """``"+10%"`` → 10; refuses anything else (edge-tts would fail later and less clearly)."""
    m = re.fullmatch(r"\s*([+-]?)(\d{1,3})%\s*", str(rate or ""))
    if not m:
        raise errors.InvalidInput(f"rate must look like '+0%' or '-10%', not {rate!r}")
    return int(m.group(2)) * (-1 if m.group(1) == "-" else 1)


def espeak_voice_for(voice: str) -> str:
    """The espeak-ng voice for an edge-tts voice's locale: ``en-US-AriaNeural`` → ``en-us``."""
    parts = str(voice or "").split("-")
    if len(parts) >= 2 and parts[0].isalpha() and parts[1].isalpha():
        return f"{parts[0]}-{parts[1]}".lower()
    return "en-us"


# -- engines ---------------------------------------------------------------------------------------------------------


async def _edge_collect(text: str, voice: str, rate: str, timeout: float,
                        proxy: str | None) -> tuple[bytes, list[dict[str, Any]]]:
    import edge_tts

    # edge-tts 7 reports only SentenceBoundary unless asked for words.
    comm = edge_tts.Communicate(text, voice, rate=rate, boundary="WordBoundary", proxy=proxy,
                                connect_timeout=int(max(1, min(timeout, 30))), receive_timeout=int(max(1, timeout)))
    audio = bytearray()
    words: list[dict[str, Any]] = []

    async def pump() -> None:
        async for chunk in comm.stream():
            if chunk["type"] == "audio":
                audio.extend(chunk.get("data", b""))
            elif chunk["type"] == "WordBoundary":
                start = float(chunk.get("offset", 0)) / _TICKS
                words.append({"start": start, "end": start + float(chunk.get("duration", 0)) / _TICKS,
                              "text": str(chunk.get("text", ""))})

    await asyncio.wait_for(pump(), timeout=timeout * 2)
    return bytes(audio), words


def synthesize_edge(text: str, voice: str, rate: str, mp3: Path, timeout: float = 60,
                    proxy: str | None = None) -> list[dict[str, Any]]:
    """edge-tts → ``mp3`` (written only when audio arrived); word boundaries in seconds from the clip start."""
    import aiohttp
    import edge_tts.exceptions

    try:
        audio, words = _run_async(_edge_collect(text, voice, rate, timeout, proxy))
    except (OSError, aiohttp.ClientError) as exc:  # TimeoutError and DNS errors are OSErrors
        raise EdgeFailed(f"edge-tts unreachable: {type(exc).__name__}: {exc}", network=True) from exc
    except edge_tts.exceptions.EdgeTTSException as exc:
        raise EdgeFailed(f"edge-tts: {type(exc).__name__}: {exc}", network=False) from exc
    except (ValueError, TypeError) as exc:  # TTSConfig validation: a malformed voice, rate or text
        raise EdgeFailed(f"edge-tts refused the settings: {exc}", network=False) from exc
    finally:
        if mp3.exists() and mp3.stat().st_size == 0:
            mp3.unlink()
    if not audio:
        raise EdgeFailed("edge-tts returned no audio", network=False)
    atomic_write_bytes(mp3, audio, durable=False)
    return words


def synthesize_espeak(text: str, voice: str, wpm: int, wav: Path) -> None:
    """espeak-ng → ``wav`` (its native 22.05 kHz); text goes through stdin, so a leading '-' is just text."""
    exe = _espeak()
    tmp = wav.with_name(f".tmp-{wav.name}")
    tried = []
    try:
        for v in dict.fromkeys([voice, voice.split("-")[0], "en-us"]):
            tried.append(v)
            proc = subprocess.run([exe, "-v", v, "-s", str(wpm), "--stdin", "-w", str(tmp)], input=text.encode(),
                                  capture_output=True, timeout=300, check=False)
            if proc.returncode == 0 and tmp.exists() and tmp.stat().st_size > 44:
                os.replace(tmp, wav)
                return
            log.info("espeak-ng voice %s failed: %s", v, proc.stderr.decode("utf-8", "replace").strip())
    except subprocess.TimeoutExpired as exc:
        raise errors.RetryableError("espeak-ng timed out") from exc
    finally:
        tmp.unlink(missing_ok=True)
    raise errors.PermanentError(f"espeak-ng produced no audio (voices tried: {', '.join(tried)})")


# -- per scene -------------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    mode: str
    voice: str
    rate: str
    espeak_voice: str
    wpm: int
    edge_timeout_s: float
    edge_proxy: str | None = None
    edge_disabled: str | None = None  # set after the first edge failure in auto mode: stop retrying per scene


def _settings(plan: dict[str, Any], opts: GenerateOptions) -> Settings:
    """The voice and rate the plan chose (else the item's, else the batch's options), and the TTS knobs."""
    voice = str(plan.get("voice") or opts.voice)
    rate = str(plan.get("rate") or opts.rate)
    pct = parse_rate(rate)
    wpm = max(80, min(450, round(opts.espeak_wpm * (1 + pct / 100))))
    return Settings(opts.tts, voice, rate, opts.espeak_voice or espeak_voice_for(voice), wpm, opts.edge_timeout_s,
                    opts.edge_proxy)


def _scene_paths(ctx: StageContext, index: int) -> tuple[Path, Path, Path]:
    folder = ctx.path(NARRATION_DIR)
    stem = f"scene-{index:02d}"
    return folder / f"{stem}.wav", folder / f"{stem}.mp3", folder / f"{stem}.json"


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def load_clip(ctx: StageContext, index: int, text: str) -> Clip | None:
    """A finished scene from an earlier run: timing file and audio present, same text; else None."""
    wav, _, timing = _scene_paths(ctx, index)
    try:
        data = json.loads(timing.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("text_sha1") != _sha1(text):
        return None
    if not wav.exists() or wav.stat().st_size <= 44:
        return None
    return Clip(index=index, engine=str(data.get("engine", ESPEAK)), audio=str(data.get("audio")),
                duration=float(data.get("duration", 0.0)), words=list(data.get("words") or []),
                text_sha1=str(data["text_sha1"]))


def _clip_duration(wav: Path) -> float:
    channels, width, rate, frames = _wav_info(wav)
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise errors.PermanentError(f"{wav.name}: expected 48 kHz mono 16-bit PCM")
    return frames / rate


def synthesize_scene(ctx: StageContext, index: int, text: str, est_s: float, s: Settings) -> Clip:
    """Speak one scene into ``narration/scene-NN.wav`` and its timing file; the timing file is written last."""
    wav, mp3, timing = _scene_paths(ctx, index)
    wav.parent.mkdir(parents=True, exist_ok=True)
    rel = wav.relative_to(ctx.workdir.resolve()).as_posix()
    words: list[dict[str, Any]] = []
    engine = ""
    if not text.strip():
        _silence(wav, est_s if est_s > 0 else 1.0)
        engine = SILENCE
    if not engine and s.mode in ("auto", "edge") and not s.edge_disabled:
        try:
            words = synthesize_edge(text, s.voice, s.rate, mp3, s.edge_timeout_s, s.edge_proxy)
            _to_pcm(mp3, wav, f"decoding edge-tts audio of scene {index}")
            engine = EDGE
        except EdgeFailed as exc:
            mp3.unlink(missing_ok=True)
            if s.mode == "edge":
                cls = errors.NetworkError if exc.network else errors.PermanentError
                raise cls(f"scene {index}: {exc}") from exc
            log.warning("scene %d: %s; falling back to espeak-ng", index, exc)
            s.edge_disabled = str(exc)
    if not engine:
        raw = ctx.tmpdir / f"espeak-{index:02d}.wav"
        synthesize_espeak(text, s.espeak_voice, s.wpm, raw)
        _to_pcm(raw, wav, f"resampling espeak-ng audio of scene {index}")
        raw.unlink(missing_ok=True)
        engine = ESPEAK
    duration = _clip_duration(wav)
    if engine == ESPEAK:
        lo, hi = _speech_bounds(wav)
        words = estimate_words(text, lo, hi)
    clean = []
    for w in words:  # edge boundaries can overrun the decoded clip by a frame; keep them inside it and ordered
        start = min(max(0.0, w["start"]), duration)
        end = min(max(start, w["end"]), duration)
        if clean and start < clean[-1]["start"]:
            start = clean[-1]["start"]
        clean.append({"start": round(start, 3), "end": round(max(start, end), 3), "text": w["text"]})
    clip = Clip(index=index, engine=engine, audio=rel, duration=duration, words=clean, text_sha1=_sha1(text))
    atomic_write_bytes(timing, json.dumps(clip.to_dict(), ensure_ascii=False).encode(), durable=True)
    return clip


# -- whole track -----------------------------------------------------------------------------------------------------


def _load_plan(ctx: StageContext) -> dict[str, Any]:
    path = ctx.path(PLAN)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.RetryableError("no plan.json to narrate (the plan stage will run again)") from None
    except (OSError, ValueError) as exc:
        raise errors.InvalidInput(f"plan.json is not valid JSON: {exc}") from exc
    scenes = plan.get("scenes") if isinstance(plan, dict) else None
    if not isinstance(scenes, list) or not scenes:
        raise errors.InvalidInput("plan.json has no scenes")
    seen: set[int] = set()
    for i, sc in enumerate(scenes, start=1):
        if not isinstance(sc, dict):
            raise errors.InvalidInput(f"plan.json scene {i} is not an object")
        try:
            sc["index"] = int(sc.get("index", i))
        except (TypeError, ValueError):
            raise errors.InvalidInput(f"plan.json scene {i}: index is not a number") from None
        if sc["index"] in seen or sc["index"] < 0:
            raise errors.InvalidInput(f"plan.json: scene index {sc['index']} repeated or negative")
        seen.add(sc["index"])
    return plan


def join_clips(ctx: StageContext, clips: list[Clip], out: Path) -> None:
    """Concatenate the scene PCM (exact: same format), normalize loudness once and encode AAC into ``out``."""
    joined = ctx.tmpdir / "narration-joined.wav"
    with wave.open(str(joined), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(SAMPLE_RATE)
        for clip in clips:
            with wave.open(str(ctx.path(clip.audio)), "rb") as src:
                dst.writeframes(src.readframes(src.getnframes()))
    tmp = out.with_name(f".tmp-{out.name}")
    try:
        run_ffmpeg(["-y", "-i", str(joined), "-af", loudnorm_filter(measure_loudness(joined)),
                    "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart",
                    "-f", "mp4", str(tmp)], what="encoding narration.m4a", timeout=FFMPEG_TIMEOUT_S)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        joined.unlink(missing_ok=True)


def measure_loudness(path: Path) -> dict[str, str] | None:
    """loudnorm's first pass (``print_format=json``) over ``path``; None when ffmpeg printed nothing usable."""
    proc = run_ffmpeg(["-i", str(path), "-af", f"{LOUDNORM}:print_format=json", "-f", "null", "-"],
                      what="measuring loudness", timeout=FFMPEG_TIMEOUT_S, loglevel="info")  # loudnorm prints at info
    text = proc.stderr
    start, end = text.rfind("{"), text.rfind("}")
    try:
        data = json.loads(text[start:end + 1]) if 0 <= start < end else None
    except ValueError:
        return None
    keys = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")
    if not isinstance(data, dict) or not all(k in data for k in keys):
        return None
    try:
        if any(not math.isfinite(float(data[k])) for k in keys):  # silence measures as -inf
            return None
    except (TypeError, ValueError):
        return None
    return {k: str(data[k]) for k in keys}


def loudnorm_filter(measured: dict[str, str] | None) -> str:
    """The second-pass filter from a first-pass measurement, or the single-pass filter without one.

    Measured values make loudnorm apply one linear gain when the true-peak limit allows it (peaky
    speech often does not, and it falls back to dynamic mode). On 11 s of espeak-ng the single pass
    landed at -17.3 LUFS, two passes at -16.8. loudnorm works at 192 kHz internally; callers resample.
    """
    if not measured:
        return LOUDNORM
    return (f"{LOUDNORM}:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
            f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
            f":offset={measured['target_offset']}:linear=true")


def _overall_engine(clips: list[Clip]) -> str:
    engines = {c.engine for c in clips if c.engine != SILENCE}
    if not engines:
        return SILENCE
    return engines.pop() if len(engines) == 1 else "mixed"


def _result(audio: Path, js: Path, doc: dict[str, Any], extra: dict[str, Any] | None = None) -> StageResult:
    meta = {"tts_engine": doc.get("engine"), "narration_s": doc.get("duration"), **(extra or {})}
    return StageResult(artifacts={"narration": str(audio), "narration_json": str(js)}, meta=meta)


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    audio, js = ctx.path(NARRATION_AUDIO), ctx.path(NARRATION_JSON)
    if audio.exists() and js.exists():
        try:
            return _result(audio, js, json.loads(js.read_text(encoding="utf-8")))
        except ValueError:
            log.warning("%s is not valid JSON; narrating again", js)
    plan = _load_plan(ctx)
    s = _settings(plan, options_of(ctx).for_item(item))
    clean_stray_temps(ctx.path(NARRATION_DIR))  # half-written clips of a killed run
    scenes = plan["scenes"]
    clips: list[Clip] = []
    reused = 0
    for i, scene in enumerate(scenes):
        if ctx.cancelled():
            raise errors.Cancelled("narration cancelled")
        text = str(scene.get("narration") or "").strip()
        clip = load_clip(ctx, scene["index"], text)
        if clip is None:
            clip = synthesize_scene(ctx, scene["index"], text, float(scene.get("est_s") or 0.0), s)
        else:
            reused += 1
        clips.append(clip)
        ctx.progress(0.9 * (i + 1) / len(scenes))
    if ctx.cancelled():
        raise errors.Cancelled("narration cancelled")
    join_clips(ctx, clips, audio)
    ctx.progress(0.97)

    doc_scenes, doc_words, t = [], [], 0.0
    for clip in clips:
        start, end = t, t + clip.duration
        doc_scenes.append({"index": clip.index, "start": round(start, 3), "end": round(end, 3),
                           "duration": round(clip.duration, 3), "audio": clip.audio, "engine": clip.engine})
        doc_words.extend({"start": round(start + w["start"], 3), "end": round(start + w["end"], 3),
                          "text": w["text"], "scene": clip.index} for w in clip.words)
        t = end
    doc = {"audio": NARRATION_AUDIO, "duration": round(probe_duration(audio), 3), "engine": _overall_engine(clips),
           "voice": s.voice, "rate": s.rate, "loudnorm": LOUDNORM, "scenes": doc_scenes, "words": doc_words}
    if any(c.engine == ESPEAK for c in clips):
        doc["espeak_voice"] = s.espeak_voice
    atomic_write_bytes(js, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    extra: dict[str, Any] = {"narration_scenes_reused": reused}
    if s.edge_disabled:
        extra["tts_fallback"] = s.edge_disabled
    return _result(audio, js, doc, extra)


register(Stage("narrate", run, resource="net", doc="edge-tts (espeak-ng offline) → narration.m4a + narration.json"))

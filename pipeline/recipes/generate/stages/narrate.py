"""narrate: ``plan.json`` scenes → one spoken clip per scene plus scene and word timings in ``narration.json``.

Each scene is spoken on its own, by edge-tts when it answers and by espeak-ng when it
does not (the engines are :mod:`pipeline.recipes.generate.tts`'s), and kept as
``narration/scene-NN.wav`` (48 kHz mono PCM) beside a timing file
``narration/scene-NN.json``. The timing file is written last, so its presence means
"this scene is finished": a killed batch resumes without speaking finished scenes again.
Scenes are spoken a few at a time (the first alone: it tells auto mode whether edge-tts
answers). The clips are joined, loudness-normalized and encoded into ``narration.m4a`` by
the next stage, :mod:`~pipeline.recipes.generate.stages.master`, which runs beside the
video encode: the timings are all that subtitles and the encode need, and they are exact
sample counts, so the joined track has the same clock.

Options (:class:`~pipeline.recipes.generate.options.GenerateOptions`): ``tts`` = ``auto`` (edge-tts,
then espeak-ng) | ``edge`` | ``espeak``; ``voice`` / ``rate`` (used when plan.json does not set them);
``espeak_voice``, ``espeak_wpm``, ``edge_timeout_s``, ``edge_proxy`` (defaults documented there).
ffmpeg and ffprobe are :mod:`pipeline.common.ffmpeg`'s; only espeak-ng is looked up (in the tts module).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.parallel import each_done
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.audio import LOUDNORM, pcm_duration, speech_bounds, to_pcm, write_silence
from pipeline.recipes.generate.options import GenerateOptions, options_of
from pipeline.recipes.generate.tts import (
    EdgeFailed,
    espeak_voice_for,
    estimate_words,
    parse_rate,
    synthesize_edge,
    synthesize_espeak,
)
from state.storage import atomic_write_bytes, clean_stray_temps

log = logging.getLogger("tubemill.narrate")

PLAN = "plan.json"
NARRATION_DIR = "narration"
NARRATION_AUDIO = "narration.m4a"
NARRATION_JSON = "narration.json"
EDGE = "edge-tts"
ESPEAK = "espeak-ng"
SILENCE = "silence"
SPEAK_WORKERS = 4  # edge-tts requests at once for one item (each one is a short websocket exchange)


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


# -- per scene -------------------------------------------------------------------------------------------------------


@dataclass
class Settings:
    """One item's TTS choices; mutable because ``edge_disabled`` is set after auto mode's first edge failure."""

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


def synthesize_scene(ctx: StageContext, index: int, text: str, est_s: float, s: Settings) -> Clip:
    """Speak one scene into ``narration/scene-NN.wav`` and its timing file; the timing file is written last."""
    wav, mp3, timing = _scene_paths(ctx, index)
    wav.parent.mkdir(parents=True, exist_ok=True)
    rel = wav.relative_to(ctx.workdir.resolve()).as_posix()
    words: list[dict[str, Any]] = []
    engine = ""
    if not text.strip():
        write_silence(wav, est_s if est_s > 0 else 1.0)
        engine = SILENCE
    if not engine and s.mode in ("auto", "edge") and not s.edge_disabled:
        try:
            words = synthesize_edge(text, s.voice, s.rate, mp3, s.edge_timeout_s, s.edge_proxy)
            to_pcm(mp3, wav, f"decoding edge-tts audio of scene {index}")
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
        to_pcm(raw, wav, f"resampling espeak-ng audio of scene {index}")
        raw.unlink(missing_ok=True)
        engine = ESPEAK
    duration = pcm_duration(wav)
    if engine == ESPEAK:
        lo, hi = speech_bounds(wav)
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


def _overall_engine(clips: list[Clip]) -> str:
    engines = {c.engine for c in clips if c.engine != SILENCE}
    if not engines:
        return SILENCE
    return engines.pop() if len(engines) == 1 else "mixed"


def _result(js: Path, doc: dict[str, Any], extra: dict[str, Any] | None = None) -> StageResult:
    meta = {"tts_engine": doc.get("engine"), "narration_s": doc.get("duration"), **(extra or {})}
    return StageResult(artifacts={"narration_json": str(js)}, meta=meta)


def _speak_all(ctx: StageContext, scenes: list[dict[str, Any]], s: Settings) -> tuple[list[Clip], int]:
    """Every scene's clip, reusing finished ones; the rest spoken a few at a time.

    The first scene to speak goes alone: in auto mode it finds out whether edge-tts answers
    (one timeout, not one per scene), and a cancel right after it keeps just that scene.
    The others run in parallel (espeak-ng is one process per scene, edge-tts one request):
    the clips are independent and the join only needs them all.
    """
    texts = [str(scene.get("narration") or "").strip() for scene in scenes]
    clips: list[Clip | None] = [load_clip(ctx, sc["index"], t) for sc, t in zip(scenes, texts, strict=True)]
    reused = sum(c is not None for c in clips)
    todo = [i for i, c in enumerate(clips) if c is None]
    finished = reused

    def speak(i: int) -> Clip:
        if ctx.cancelled():
            raise errors.Cancelled("narration cancelled")
        return synthesize_scene(ctx, scenes[i]["index"], texts[i], float(scenes[i].get("est_s") or 0.0), s)

    def done(i: int, clip: Clip) -> None:
        nonlocal finished
        clips[i] = clip
        finished += 1
        ctx.progress(0.95 * finished / len(scenes))

    if todo:
        done(todo[0], speak(todo[0]))
        rest = todo[1:]
        workers = min(len(rest), SPEAK_WORKERS if s.mode != "espeak" else (os.cpu_count() or 1))
        for i, clip in each_done(speak, rest, workers, "narrate"):
            done(i, clip)  # progress from the stage's own thread
    if ctx.cancelled():
        raise errors.Cancelled("narration cancelled")
    return [c for c in clips if c is not None], reused


def narration_doc(clips: list[Clip], s: Settings) -> dict[str, Any]:
    """narration.json: scene spans and word times on the joined track's clock (exact sample counts)."""
    doc_scenes, doc_words, t = [], [], 0.0
    for clip in clips:
        start, end = t, t + clip.duration
        doc_scenes.append({"index": clip.index, "start": round(start, 3), "end": round(end, 3),
                           "duration": round(clip.duration, 3), "audio": clip.audio, "engine": clip.engine})
        doc_words.extend({"start": round(start + w["start"], 3), "end": round(start + w["end"], 3),
                          "text": w["text"], "scene": clip.index} for w in clip.words)
        t = end
    doc = {"audio": NARRATION_AUDIO, "duration": round(t, 3), "engine": _overall_engine(clips),
           "voice": s.voice, "rate": s.rate, "loudnorm": LOUDNORM, "scenes": doc_scenes, "words": doc_words}
    if any(c.engine == ESPEAK for c in clips):
        doc["espeak_voice"] = s.espeak_voice
    return doc


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    js = ctx.path(NARRATION_JSON)
    plan = _load_plan(ctx)
    s = _settings(plan, options_of(ctx).for_item(item))
    clean_stray_temps(ctx.path(NARRATION_DIR))  # half-written clips of a killed run
    clips, reused = _speak_all(ctx, plan["scenes"], s)
    doc = narration_doc(clips, s)
    body = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    try:
        unchanged = js.read_bytes() == body
    except OSError:
        unchanged = False
    if not unchanged:  # an unchanged file keeps its mtime: the master stage's joined track stays valid
        atomic_write_bytes(js, body)
    extra: dict[str, Any] = {"narration_scenes_reused": reused}
    if s.edge_disabled:
        extra["tts_fallback"] = s.edge_disabled
    return _result(js, doc, extra)


register(Stage("narrate", run, resource="net", doc="edge-tts (espeak-ng offline) → scene clips + narration.json"))

"""master: the scene clips of ``narration.json`` → one loudness-normalized AAC track, ``narration.m4a``.

Split from narrate so the slowest audio step (EBU R128 in two passes, ≈3 s for a minute on
one core) runs beside the video encode instead of before it: the encode needs only the
scene times, which narrate has already written. The join is exact (every clip is the same
PCM format), so the track's duration is narration.json's to the millisecond.

Idempotent: a ``narration.m4a`` newer than ``narration.json`` is the join of exactly those
clips (narrate rewrites the JSON only when a scene changed) and is returned as is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.audio import join_and_encode, probe_duration
from pipeline.recipes.generate.stages.narrate import NARRATION_AUDIO, NARRATION_JSON


def _doc(ctx: StageContext) -> dict[str, Any]:
    try:
        doc = json.loads(ctx.path(NARRATION_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.RetryableError("no narration.json to master (the narrate stage will run again)") from None
    except (OSError, ValueError) as exc:
        raise errors.PermanentError(f"narration.json is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("scenes"), list) or not doc["scenes"]:
        raise errors.PermanentError("narration.json has no scenes")
    return doc


def is_current(ctx: StageContext) -> bool:
    """narration.m4a exists and was made from the clips narration.json lists now."""
    audio, js = ctx.path(NARRATION_AUDIO), ctx.path(NARRATION_JSON)
    try:
        made = audio.stat()
        return made.st_size > 0 and made.st_mtime_ns >= js.stat().st_mtime_ns
    except OSError:
        return False


def master(ctx: StageContext) -> Path:
    """Join and normalize the clips into ``narration.m4a`` unless it is current; returns its path."""
    audio = ctx.path(NARRATION_AUDIO)
    if is_current(ctx):
        return audio
    doc = _doc(ctx)
    clips = []
    for scene in doc["scenes"]:
        clip = ctx.path(str(scene.get("audio") or ""))
        if not clip.is_file():
            raise errors.PermanentError(f"scene clip {scene.get('audio')} is missing: run the narrate stage again")
        clips.append(clip)
    if ctx.cancelled():
        raise errors.Cancelled("mastering cancelled")
    join_and_encode(clips, audio, ctx.tmpdir / "narration-joined.wav")
    return audio


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    audio = master(ctx)
    ctx.progress(1.0)
    return StageResult(artifacts={"narration": str(audio)}, meta={"narration_s": round(probe_duration(audio), 3)})


register(Stage("master", run, resource="cpu", doc="scene clips → narration.m4a (EBU R128 −16 LUFS, AAC)"))

"""master: the scene clips of ``narration.json`` (and the music bed, when asked) → one loudness-normalized AAC
track, ``narration.m4a``.

Split from narrate so the slowest audio step (EBU R128 in two passes, ≈3 s for a minute on
one core) runs beside the video encode instead of before it: the encode needs only the
scene times, which narrate has already written. The join is exact (every clip is the same
PCM format), so the track's duration is narration.json's to the millisecond.

Music (options ``music_dir``, ``music_db``, ``duck``; ``music_dir`` may be set per CSV row):
:mod:`pipeline.recipes.generate.music` mixes a bed under the joined narration, and the mix,
not the narration alone, is what the one loudness pass brings to -16 LUFS (mono AAC at 128 kb/s,
as the narration alone; :data:`~pipeline.recipes.generate.music.MIX_CHANNELS` says why). A
track that is missing or will not decode never costs the video: the narration-only master is
made, ``meta["music"]`` says why and the item is flagged ``music-failed``; the chosen track is
recorded by name only.

Idempotent: a ``narration.m4a`` newer than ``narration.json`` is the join of exactly those
clips (narrate rewrites the JSON only when a scene changed), and ``master.json`` records a
fingerprint of the music inputs it was mixed with (the folder's listing, sizes and mtimes,
``music_db``, ``duck``); when both still hold it is returned as is. A master made before
music existed has no ``master.json`` and stays current while no music is asked for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate import music
from pipeline.recipes.generate.audio import join_pcm, normalize_encode, probe_duration
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.stages.narrate import NARRATION_AUDIO, NARRATION_JSON
from state.storage import atomic_write_bytes

MASTER_JSON = "master.json"
BITRATE = {1: "128k", 2: "160k"}


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


def _music_inputs(ctx: StageContext, item: dict[str, Any] | None) -> tuple[music.Tracks, str | None, float, bool]:
    """The item's candidate tracks (its CSV row's music_dir, else the batch's) and their fingerprint."""
    opts = options_of(ctx).for_item(item or {})
    tracks = music.list_tracks(opts.music_dir)
    return tracks, music.inputs_key(tracks, ctx.item_n, opts.music_db, opts.duck), opts.music_db, opts.duck


def _record(ctx: StageContext) -> dict[str, Any] | None:
    try:
        doc = json.loads(ctx.path(MASTER_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_current(ctx: StageContext, item: dict[str, Any] | None = None) -> bool:
    """narration.m4a exists, was made from the clips narration.json lists now, and with the music asked for now.

    Without ``item`` the batch's music options are used (a CSV row's music_dir is the item's).
    """
    audio, js = ctx.path(NARRATION_AUDIO), ctx.path(NARRATION_JSON)
    try:
        made = audio.stat()
        if made.st_size <= 0 or made.st_mtime_ns < js.stat().st_mtime_ns:
            return False
    except OSError:
        return False
    key = _music_inputs(ctx, item)[1]
    record = _record(ctx)
    if record is None:
        return key is None  # a master from before music: current while none is asked for
    return record.get("music_key") == key and record.get("bytes") == made.st_size


def master_track(ctx: StageContext, item: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any] | None]:
    """Join, mix the bed in (when asked) and normalize into ``narration.m4a`` unless it is current.

    Returns its path and the music meta (None when no music was asked for).
    """
    audio = ctx.path(NARRATION_AUDIO)
    if is_current(ctx, item):
        record = _record(ctx) or {}
        return audio, record.get("music")
    doc = _doc(ctx)
    clips = []
    for scene in doc["scenes"]:
        clip = ctx.path(str(scene.get("audio") or ""))
        if not clip.is_file():
            raise errors.PermanentError(f"scene clip {scene.get('audio')} is missing: run the narrate stage again")
        clips.append(clip)
    if ctx.cancelled():
        raise errors.Cancelled("mastering cancelled")
    tracks, key, music_db, duck = _music_inputs(ctx, item)
    joined = ctx.tmpdir / "narration-joined.wav"
    music_meta: dict[str, Any] | None = None
    mixed: Path | None = None
    try:
        join_pcm(clips, joined)
        if ctx.cancelled():  # between steps too: a short ffmpeg run can end before its first cancel poll
            raise errors.Cancelled("mastering cancelled")
        if key is not None:
            started = time.monotonic()
            try:
                if tracks.error:
                    raise music.BedFailed(tracks.error)
                bed = music.make_bed(joined, music.rotation(tracks.paths, ctx.item_n), music_db, duck,
                                     ctx.tmpdir, ctx.cancelled)
                mixed, music_meta = bed.path, bed.meta
            except music.BedFailed as exc:
                music_meta = exc.meta()
            music_meta["mix_s"] = round(time.monotonic() - started, 3)
        if mixed is not None and music_meta is not None:
            try:
                normalize_encode(mixed, audio, channels=music.MIX_CHANNELS, bitrate=BITRATE[music.MIX_CHANNELS],
                                 cancelled=ctx.cancelled)
            except errors.PermanentError as exc:  # the mix will not encode: the narration alone will
                music_meta = {"track": music_meta.get("track"), "error": f"mastering the mix failed: {exc}"[:300]}
                mixed.unlink(missing_ok=True)
                mixed = None
        if mixed is None:
            normalize_encode(joined, audio, channels=1, bitrate=BITRATE[1], cancelled=ctx.cancelled)
    finally:
        joined.unlink(missing_ok=True)
        if mixed is not None:
            mixed.unlink(missing_ok=True)
    atomic_write_bytes(ctx.path(MASTER_JSON), json.dumps(
        {"music_key": key, "music": music_meta, "bytes": audio.stat().st_size}, indent=2).encode())
    return audio, music_meta


def master(ctx: StageContext, item: dict[str, Any] | None = None) -> Path:
    """Join and normalize the clips into ``narration.m4a`` unless it is current; returns its path."""
    return master_track(ctx, item)[0]


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    audio, music_meta = master_track(ctx, item)
    ctx.progress(1.0)
    meta: dict[str, Any] = {"narration_s": round(probe_duration(audio), 3)}
    if music_meta is not None or (item.get("meta") or {}).get("music") is not None:
        meta["music"] = music_meta  # None clears the record of a bed no longer asked for
    meta.update(music.flag_change(list(item.get("flags") or []), bool(music_meta and music_meta.get("error"))))
    return StageResult(artifacts={"narration": str(audio)}, meta=meta)


register(Stage("master", run, resource="cpu",
               doc="scene clips (+ music bed, ducked) → narration.m4a (EBU R128 −16 LUFS, AAC)"))

"""export: the item's files — transcript.txt/.srt/.vtt/.json, summary.md, meta.json.

The transcript files and a first ``meta.json`` are written earlier, by the stage that
made the transcript (:func:`ensure_transcript_files`); this last stage of the
transcribe recipe completes ``meta.json`` with the summary's outcome and records the
video in the home's library and download archive, so a later batch reuses these files
instead of redoing them.
Downloaded audio is kept for playback as ``media.<ext>`` (the item artifact ``media``) up to ``keep_media_mb``
per batch (:mod:`pipeline.recipes.transcribe.kept_media`), as ``audio.<ext>`` with ``--keep-audio``, and
otherwise goes with the item's scratch folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import kept_media, library
from pipeline.recipes.transcribe.options import options_of
from state.storage import atomic_write_bytes

FILES = {"txt": "transcript.txt", "srt": "transcript.srt", "vtt": "transcript.vtt", "json": "transcript.json",
         "summary": "summary.md", "meta": "meta.json"}


CORE = ("txt", "srt", "vtt", "json", "meta")
RECORD_META = ("upload_date", "parent", "extractor", "tags", "summary_engine", "llm_model", "llm_usage", "llm_cost_usd",
               "model_fallback", "repetition", "reused_from", "summary_outcome", "summary_reason",
               "summary_adjustments", "language_probability", "title_from", "media_url")


def item_record(item: dict[str, Any], ctx: StageContext, transcript: dict[str, Any],
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """``meta.json``: what the item is and how its transcript (and summary, once there) came to be."""
    meta = {**(item.get("meta") or {}), **(meta or {})}
    return {
        "source": meta.get("input") or item["source"],
        "url": item["source"],
        "id": item.get("id"),
        "title": meta.get("title") or item.get("title"),
        "duration": item.get("duration") or meta.get("duration") or transcript.get("duration"),
        "language": transcript.get("language"),
        "transcript_source": transcript.get("source"),
        "model": transcript.get("model"),
        "segments": len(transcript.get("segments", [])),
        "flags": meta.get("flags") or item.get("flags") or [],
        "timings": item.get("timings") or {},
        "batch": ctx.batch_name,
        **{k: meta[k] for k in RECORD_META if k in meta},
    }


def ensure_transcript_files(item: dict[str, Any], ctx: StageContext, transcript: dict[str, Any],
                            meta: dict[str, Any] | None = None) -> dict[str, str]:
    """Write the transcript files and a first ``meta.json`` that are missing; returns their artifacts.

    Called by the stages that produce ``transcript.json`` (captions, transcribe) the moment
    it exists, so no later enrichment (a summary, an upload) can cost them; idempotent, so
    a crash between two files is repaired by the next run of any of these stages.
    """
    from pipeline.common import formats

    for key, render in (("txt", formats.to_txt), ("srt", formats.to_srt), ("vtt", formats.to_vtt)):
        path = ctx.path(FILES[key])
        if not path.exists():
            atomic_write_bytes(path, render(transcript).encode("utf-8"), durable=False)
    meta_path = ctx.path(FILES["meta"])
    if not meta_path.exists():
        record = item_record(item, ctx, transcript, meta)
        atomic_write_bytes(meta_path, json.dumps(record, ensure_ascii=False, indent=1).encode())
    return {k: str(ctx.path(FILES[k])) for k in CORE if ctx.path(FILES[k]).exists()}


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    tr_path = ctx.path(FILES["json"])
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to export yet")
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))
    ensure_transcript_files(item, ctx, transcript)
    meta = item.get("meta") or {}
    record = item_record(item, ctx, transcript)
    atomic_write_bytes(ctx.path(FILES["meta"]), json.dumps(record, ensure_ascii=False, indent=1).encode())
    artifacts = {k: str(ctx.path(v)) for k, v in FILES.items() if ctx.path(v).exists()}
    artifacts.update(_kept_media(item, ctx))
    if item.get("id"):
        library.record(ctx.home, id=item["id"], archive_id=meta.get("archive_id"), workdir=str(ctx.workdir),
                       batch=ctx.batch_name, title=item.get("title"))
    return StageResult(artifacts=artifacts)


def _kept_media(item: dict[str, Any], ctx: StageContext) -> dict[str, str]:
    """The item's ``audio``/``media`` artifacts once its scratch folder goes: ``--keep-audio`` keeps the audio
    as ``audio.<ext>``; else it is kept as ``media.<ext>`` while the batch is under ``keep_media_mb``
    (:mod:`..kept_media`), else deleted. A local source plays from where it is (``media`` is its path)."""
    opts = options_of(ctx)
    audio = (item.get("artifacts") or {}).get("audio")
    local = (item.get("meta") or {}).get("local_path")
    out: dict[str, str] = {}
    if audio and opts.keep_audio and Path(audio).exists():
        kept = ctx.path("audio" + Path(audio).suffix)
        if Path(audio).resolve() != kept and not local:
            shutil.move(audio, kept)
        out["audio"] = out["media"] = str(kept if kept.exists() else audio)
    elif local:
        if Path(local).is_file():
            out["media"] = local
    elif (earlier := kept_media.find(ctx.workdir)) is not None:
        out["media"] = str(earlier)  # a re-run export: kept the first time
    elif audio and Path(audio).is_relative_to(ctx.workdir) and Path(audio).exists():
        kept = kept_media.keep(Path(audio), ctx.workdir, opts.keep_media_mb)
        if kept is not None:
            out["media"] = str(kept)
        else:
            try:
                os.unlink(audio)  # the scratch folder goes too when the item finishes; free the disk now
            except OSError:
                pass
    return out


register(Stage("export", run, resource="cpu", doc="txt/srt/vtt/json/md/meta per item"))

"""export: the item's files — transcript.txt/.srt/.vtt/.json, summary.md, meta.json.

Last stage of the transcribe recipe: it also records the video in the home's library
and download archive, so a later batch reuses these files instead of redoing them.
Temporary audio goes with the item's scratch folder unless ``--keep-audio``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline import errors, library
from pipeline.stages import register
from pipeline.stages.base import Stage, StageContext, StageResult
from state.storage import atomic_write_bytes

FILES = {"txt": "transcript.txt", "srt": "transcript.srt", "vtt": "transcript.vtt", "json": "transcript.json",
         "summary": "summary.md", "meta": "meta.json"}


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline import formats

    tr_path = ctx.path(FILES["json"])
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to export yet")
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))
    for key, render in (("txt", formats.to_txt), ("srt", formats.to_srt), ("vtt", formats.to_vtt)):
        path = ctx.path(FILES[key])
        if not path.exists():
            atomic_write_bytes(path, render(transcript).encode("utf-8"), durable=False)
    meta = item.get("meta") or {}
    record = {
        "source": meta.get("input") or item["source"],
        "url": item["source"],
        "id": item.get("id"),
        "title": item.get("title"),
        "duration": item.get("duration") or transcript.get("duration"),
        "language": transcript.get("language"),
        "transcript_source": transcript.get("source"),
        "model": transcript.get("model"),
        "segments": len(transcript.get("segments", [])),
        "flags": item.get("flags") or [],
        "timings": item.get("timings") or {},
        "batch": ctx.batch_name,
        **{k: meta[k] for k in ("upload_date", "parent", "extractor", "tags", "summary_engine", "llm_model",
                                 "llm_usage", "llm_cost_usd", "model_fallback", "repetition", "reused_from")
           if k in meta},
    }
    atomic_write_bytes(ctx.path(FILES["meta"]), json.dumps(record, ensure_ascii=False, indent=1).encode())
    audio = (item.get("artifacts") or {}).get("audio")
    artifacts = {k: str(ctx.path(v)) for k, v in FILES.items() if ctx.path(v).exists()}
    if audio and str(ctx.options.get("keep_audio")).lower() in ("1", "true", "yes") and Path(audio).exists():
        kept = ctx.path("audio" + Path(audio).suffix)
        if Path(audio).resolve() != kept and not meta.get("local_path"):
            shutil.move(audio, kept)
        artifacts["audio"] = str(kept if kept.exists() else audio)
    elif audio and not meta.get("local_path") and Path(audio).is_relative_to(ctx.workdir):
        try:
            os.unlink(audio)  # the scratch folder goes too when the item finishes; free the disk now
        except OSError:
            pass
    if item.get("id"):
        library.record(ctx.home, id=item["id"], archive_id=meta.get("archive_id"), workdir=str(ctx.workdir),
                       batch=ctx.batch_name, title=item.get("title"))
    return StageResult(artifacts=artifacts)


register(Stage("export", run, resource="cpu", doc="txt/srt/vtt/json/md/meta per item"))

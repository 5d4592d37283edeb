"""export: the item's files — transcript.txt/.srt/.vtt/.json, summary.md, meta.json.

The transcript files and a first ``meta.json`` are written earlier, by the stage that
made the transcript (:func:`ensure_transcript_files`); this last stage of the
transcribe recipe completes ``meta.json`` with the summary's outcome and records the
video in the home's library and download archive, so a later batch reuses these files
instead of redoing them.

The extra formats a batch asks for (``--formats``: obsidian, docx, words, ass; :data:`EXPORTS`) are written
here too, from :mod:`pipeline.recipes.transcribe.exports`; one that fails is recorded in the item's
``export_errors`` (flag ``export-failed``) and never fails the item: the transcript is already on disk.

Downloaded audio is kept for playback as ``media.<ext>`` (the item artifact ``media``) up to ``keep_media_mb``
per batch (:mod:`pipeline.recipes.transcribe.kept_media`), as ``audio.<ext>`` with ``--keep-audio``, and
otherwise goes with the item's scratch folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import kept_media, library
from pipeline.recipes.transcribe.options import options_of
from pipeline.recipes.transcribe.translate import META_KEYS as TRANSLATION_META
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.export")

FILES = {"txt": "transcript.txt", "srt": "transcript.srt", "vtt": "transcript.vtt", "json": "transcript.json",
         "summary": "summary.md", "meta": "meta.json"}


# --formats: format -> (artifact, file name) pairs; written from transcript.json, summary.json and meta.json.
EXPORTS: dict[str, tuple[tuple[str, str], ...]] = {
    "obsidian": (("notes", "notes.md"),),
    "docx": (("docx", "transcript.docx"),),
    "words": (("words_srt", "transcript.words.srt"), ("words_vtt", "transcript.words.vtt")),
    "ass": (("ass", "transcript.ass"),),
}
EXPORT_FLAG = "export-failed"


CORE = ("txt", "srt", "vtt", "json", "meta")
RECORD_META = ("upload_date", "parent", "extractor", "tags", "summary_engine", "llm_model", "llm_usage", "llm_cost_usd",
               "model_fallback", "repetition", "reused_from", "summary_outcome", "summary_reason",
               "summary_adjustments", "language_probability", "title_from", "media_url", "channel", "word_times",
               "words_estimated", "export_errors", *TRANSLATION_META, "quality", "task")


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
    extra, export_meta = write_exports(item, ctx, transcript, item_record(item, ctx, transcript))
    record = item_record(item, ctx, transcript, export_meta)
    atomic_write_bytes(ctx.path(FILES["meta"]), json.dumps(record, ensure_ascii=False, indent=1).encode())
    artifacts = {k: str(ctx.path(v)) for k, v in FILES.items() if ctx.path(v).exists()}
    artifacts.update(extra)
    artifacts.update(_kept_media(item, ctx))
    if item.get("id"):
        library.record(ctx.home, id=item["id"], archive_id=meta.get("archive_id"), workdir=str(ctx.workdir),
                       batch=ctx.batch_name, title=item.get("title"))
    export_meta.update(index_for_search(item, ctx, transcript, export_meta.get("flags")))
    return StageResult(artifacts=artifacts, meta=export_meta)


SEARCH_FLAG = "search-index-failed"


def index_for_search(item: dict[str, Any], ctx: StageContext, transcript: dict[str, Any],
                     flags: list[str] | None = None) -> dict[str, Any]:
    """Put the item in <home>/search.sqlite (`tubemill search`, the Search page); idempotent, so a re-run export
    replaces its rows. A failure is recorded (meta search_error, flag search-index-failed), never the item's:
    `tubemill search --reindex` rebuilds the index from the transcript files."""
    import sqlite3

    from state import search

    meta = item.get("meta") or {}
    had = list(flags if flags is not None else item.get("flags") or [])
    try:
        search.index_item(ctx.home, batch_id=ctx.batch_id, batch_name=ctx.batch_name, n=ctx.item_n,
                          item_id=item.get("id"), title=item.get("title") or meta.get("title"),
                          source=item["source"], workdir=ctx.workdir, segments=transcript.get("segments") or [],
                          language=transcript.get("language"))
    except (sqlite3.Error, OSError) as exc:
        log.warning("export: search index of item %s failed: %s", ctx.item_n, exc)
        return {"search_error": f"{type(exc).__name__}: {exc}"[:300], **flag_change(had, SEARCH_FLAG, True)}
    out: dict[str, Any] = flag_change(had, SEARCH_FLAG, False)
    if meta.get("search_error"):
        out["search_error"] = None
    return out


def flag_change(had: list[str], flag: str, on: bool) -> dict[str, list[str]]:
    """``{"flags": …}`` with ``flag`` set or cleared, when that changes ``had``; else nothing (an enrichment
    that failed is flagged, and a later run that succeeds clears its flag)."""
    new = sorted({*(f for f in had if f != flag), *([flag] if on else [])})
    return {"flags": new} if new != sorted(set(had)) else {}


def write_exports(item: dict[str, Any], ctx: StageContext, transcript: dict[str, Any],
                  record: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The ``--formats`` files (artifacts) and what the item's meta should say about them.

    Each format is written on its own, atomically, and rewritten on every run (a re-run after a summary
    retry gets the new summary); one that raises is recorded as ``export_errors[format]`` with the flag
    ``export-failed``, and the others are still written. ``words_estimated`` says for how many segments
    word times were shared out by length because the transcript had none.
    """
    from pipeline.recipes.transcribe import exports
    from pipeline.recipes.transcribe.summary import SUMMARY_JSON

    formats = options_of(ctx).formats
    summary: dict[str, Any] | None = None
    if ctx.path(SUMMARY_JSON).exists():
        try:
            summary = json.loads(ctx.path(SUMMARY_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None  # a summary that cannot be read: the notes go without it
    meta = item.get("meta") or {}
    facts = {**record, **{k: meta[k] for k in ("channel", "upload_date") if meta.get(k)}}
    title = str(record.get("title") or "")
    render = {
        "notes": lambda: exports.obsidian_markdown(facts, transcript, summary).encode("utf-8"),
        "docx": lambda: exports.docx_bytes(facts, transcript, summary),
        "words_srt": lambda: exports.words_srt(transcript).encode("utf-8"),
        "words_vtt": lambda: exports.words_vtt(transcript).encode("utf-8"),
        "ass": lambda: exports.ass_karaoke(transcript, title).encode("utf-8"),
    }
    artifacts: dict[str, str] = {}
    failed: dict[str, str] = {}
    out: dict[str, Any] = {}
    for fmt in formats:
        for key, name in EXPORTS.get(fmt, ()):
            try:
                atomic_write_bytes(ctx.path(name), render[key](), durable=False)
                artifacts[key] = str(ctx.path(name))
            except Exception as exc:  # an export is an enrichment: recorded, never the end of the item
                failed[fmt] = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("export: %s of item %s failed: %s", fmt, ctx.item_n, failed[fmt])
    out.update(flag_change(list(item.get("flags") or []), EXPORT_FLAG, bool(failed)))
    if failed or meta.get("export_errors"):
        out["export_errors"] = failed
    if {"words", "ass"} & set(formats):
        lines = exports.timed_lines(transcript)
        out["words_estimated"] = f"{sum(1 for ln in lines if ln.estimated)} of {len(lines)} segments"
    return artifacts, out


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


register(Stage("export", run, resource="cpu", doc="txt/srt/vtt/json/md/meta per item, and --formats"))

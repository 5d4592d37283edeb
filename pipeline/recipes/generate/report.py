"""What generate adds to every batch's manifest and errors.md: its file columns, each video's facts, and
what was not what it should have been.

A video is the item's result; everything else is an enrichment that may fall back (the LLM script to
the template, edge-tts to espeak-ng, a stock picture to the local folder or a drawn frame, the music
bed to none) or fail on its own (the thumbnail, the playlist, the credits) while the video is still
made and uploaded. Stages record that in the item, by one convention this module reads:

- ``meta["<part>_fallback"]`` (the reason, or True) and/or the flag ``<part>-fallback``: the part fell back;
- ``meta["<part>_error"]`` (the reason) and/or the flag ``<part>-failed``: the part was not applied (for a
  part inside the video — music, media… — that is a fallback too: the video is made without it);
- ``visuals.json`` in the item folder: per scene, where its picture came from and why it fell back.

The manifest entry gets ``video`` (duration, bytes, size, encoder), ``script``/``voice`` (which engine
wrote and spoke it), ``upload`` (status, video id, link), ``visuals`` (provider, scenes from it, scenes
that fell back), ``fallbacks`` and ``extras_failed``; errors.md lists the videos made but not uploaded,
the extras that failed, and the media fallbacks, each with what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.engine.recipe import Report
from pipeline.engine.report import hint_text, item_name, md_code

FILE_KINDS = ("video", "srt", "ass", "thumbnail", "metadata")
# Parts inside the video: their failure is a media fallback (the video is made without them), not a failed extra.
MEDIA_PARTS = frozenset({"script", "tts", "media", "visuals", "music", "captions", "motion"})
UPLOAD_HINT = ("The videos are made (in the batch folder and its ZIP); only their upload failed. Fix the cause "
               "(`tubemill youtube-auth CLIENT_SECRETS.json` for refused credentials; a quota error waits for the "
               "next quota day by itself), then `tubemill retry-failed {batch}`: only the upload runs again.")
EXTRAS_NOTE = ("These videos are made (and uploaded when asked); only the parts below were not applied. Fix the "
               "cause the reason names, then run the extras again (the recipe's `retry_extras`: only what is "
               "missing is done, the video is not sent again), or set them by hand in YouTube Studio.")
FALLBACK_NOTE = ("These videos are complete, but a part of them came from its fallback: the template script "
                 "instead of the LLM, espeak-ng instead of edge-tts, a local picture or a drawn frame instead of "
                 "stock media, no music. The reason is given for each.")


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _workdir(item: dict[str, Any]) -> Path | None:
    return Path(item["workdir"]) if item.get("workdir") else None


def _why(value: Any) -> str:
    return "yes" if value is True else " ".join(str(value).split())[:300]


def _reasons(item: dict[str, Any], key_end: str, flag_end: str) -> dict[str, str]:
    """{part: reason} from ``meta["<part><key_end>"]``, then the flags ``<part><flag_end>`` (their reason from
    ``meta[part]["error"]`` when the part keeps a record there, as the music bed does). A flag whose reason
    sits under other keys (``upload-extras-failed``: ``thumbnail_error``, ``playlist_error``) adds nothing."""
    meta = item.get("meta") or {}
    out: dict[str, str] = {}
    for key, value in meta.items():
        if key.endswith(key_end) and value not in (None, "", False, [], {}):
            out[key[: -len(key_end)]] = _why(value)
    for flag in item.get("flags") or []:
        if not flag.endswith(flag_end):
            continue
        part = flag[: -len(flag_end)].replace("-", "_")
        record = meta.get(part)
        if isinstance(record, dict) and record.get("error"):
            out.setdefault(part, _why(record["error"]))
        elif not out:
            out[part] = "flagged"
    return out


def fallbacks(item: dict[str, Any]) -> dict[str, str]:
    """The parts of the video that fell back or were left out, with why (script, tts, media, music…)."""
    failed = _reasons(item, "_error", "-failed")
    return {**_reasons(item, "_fallback", "-fallback"), **{k: v for k, v in failed.items() if k in MEDIA_PARTS}}


def extras_failed(item: dict[str, Any]) -> dict[str, str]:
    """The enrichments around the video not applied, with why (thumbnail, playlist, credits…)."""
    return {k: v for k, v in _reasons(item, "_error", "-failed").items() if k not in MEDIA_PARTS}


def visuals_summary(item: dict[str, Any]) -> dict[str, Any] | None:
    """Where the scenes' pictures came from (None without a media provider: no ``visuals.json``)."""
    wd = _workdir(item)
    doc = _json(wd / "visuals.json") if wd else None
    if doc is None:
        return None
    scenes = [s for s in doc.get("scenes") or [] if isinstance(s, dict)]
    fell = [{"scene": s.get("index"), "reason": " ".join(str(s["fallback"]).split())[:300]}
            for s in scenes if s.get("fallback")]
    by: dict[str, int] = {}
    for s in scenes:
        src = "generated" if s.get("kind") == "generated" else str(s.get("provider") or "unknown")
        by[src] = by.get(src, 0) + 1
    return {"provider": doc.get("provider"), "scenes": len(scenes), "by_source": by, "fell_back": fell,
            "errors": [str(e)[:300] for e in doc.get("errors") or []]}


def video_facts(item: dict[str, Any]) -> dict[str, Any] | None:
    """The rendered video's duration, bytes, frame size, frame rate and encoder (None before it exists)."""
    wd = _workdir(item)
    video = (item.get("artifacts") or {}).get("video")
    path = Path(video) if video else (wd / "video.mp4" if wd else None)
    if path is not None and not path.is_absolute() and wd is not None:
        path = wd / path
    if path is None or not path.is_file():
        return None
    render = (_json(wd / "render.json") if wd else None) or {}
    meta = item.get("meta") or {}
    return {"duration_s": render.get("duration", item.get("duration")), "bytes": path.stat().st_size,
            "width": render.get("width"), "height": render.get("height"), "fps": render.get("fps"),
            "encoder": render.get("encoder") or meta.get("encoder"),
            "subtitles": "burned" if meta.get("burn_subtitles") else "file"}


def upload_facts(item: dict[str, Any]) -> dict[str, Any]:
    """The upload's outcome: skipped (not asked), uploaded/resumed/exists (with the id and link), failed or
    not yet; privacy and schedule from ``upload.json``."""
    meta = item.get("meta") or {}
    err = item.get("error") or {}
    status = meta.get("upload")
    if item.get("status") == "failed" and (err.get("stage") or item.get("stage")) == "upload":
        status = "failed"
    wd = _workdir(item)
    record = (_json(wd / "upload.json") if wd else None) or {}
    return {"status": status or ("pending" if item.get("status") != "done" else None),
            "video_id": meta.get("youtube_id") or record.get("video_id"),
            "url": meta.get("youtube_url") or record.get("url"),
            "privacy": record.get("privacy"), "publish_at": record.get("publish_at")}


def row(item: dict[str, Any]) -> dict[str, Any]:
    """The generate keys of an item's manifest entry."""
    meta = item.get("meta") or {}
    return {"video": video_facts(item), "script": meta.get("script_engine"), "voice": meta.get("tts_engine"),
            "upload": upload_facts(item), "visuals": visuals_summary(item), "fallbacks": fallbacks(item),
            "extras_failed": extras_failed(item)}


# ---------------------------------------------------------------- errors.md


def _video_rel(item: dict[str, Any]) -> str | None:
    wd = _workdir(item)
    if wd is None or not (wd / "video.mp4").is_file():
        return None
    return f"{wd.name}/video.mp4"


def not_uploaded_markdown(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """"Not uploaded": videos made whose upload failed (they are listed as failed above too)."""
    failed = [it for it in items if upload_facts(it)["status"] == "failed"]
    if not failed:
        return []
    out = ["## Not uploaded", "", f"{len(failed)} video(s) were made but not uploaded.", "",
           f"**What to do:** {hint_text(UPLOAD_HINT, batch_name)}", ""]
    for it in failed:
        why = " ".join(str((it.get("error") or {}).get("message") or "unknown").split())
        where = _video_rel(it)
        out.append(f"- {it.get('n')}. {item_name(it)}: {md_code(why)}" + (f" (video: `{where}`)" if where else ""))
    out.append("")
    return out


def extras_markdown(items: list[dict[str, Any]]) -> list[str]:
    """"Extras that failed": thumbnail, playlist, credits… not applied to a video that is otherwise done."""
    listed = [(it, extras_failed(it)) for it in items]
    listed = [(it, ex) for it, ex in listed if ex]
    if not listed:
        return []
    out = ["## Extras that failed", "", EXTRAS_NOTE, ""]
    for it, ex in listed:
        parts = "; ".join(f"{part}: {why}" for part, why in sorted(ex.items()))
        out.append(f"- {it.get('n')}. {item_name(it)}: {md_code(parts)}")
    out.append("")
    return out


def fallbacks_markdown(items: list[dict[str, Any]]) -> list[str]:
    """"Media fallbacks": the parts of a finished video that came from their fallback, scene by scene for
    the pictures, with the providers' errors."""
    out: list[str] = []
    for it in items:
        fb = fallbacks(it)
        vis = visuals_summary(it) or {}
        notes = [f"{part}: {why}" for part, why in sorted(fb.items())]
        notes += [f"scene {s['scene']}: {s['reason']}" for s in (vis.get("fell_back") or [])[:20]]
        more = len(vis.get("fell_back") or []) - 20
        if more > 0:
            notes.append(f"{more} more scene(s), see visuals.json")
        notes += [f"provider: {e}" for e in (vis.get("errors") or [])[:5]]
        if not notes:
            continue
        out.append(f"- {it.get('n')}. {item_name(it)}")
        out += [f"  - {md_code(n)}" for n in notes]
    if (left := sum(int((it.get("meta") or {}).get("credits_left_out") or 0) for it in items)):
        out.append(f"- {left} credit(s) did not fit a description (5,000 bytes): each video's credits.txt has "
                   "them all; add them to the video's page by hand.")
    return ["## Media fallbacks", "", FALLBACK_NOTE, "", *out, ""] if out else []


def sections(items: list[dict[str, Any]], batch_name: str) -> list[str]:
    """errors.md's generate sections: videos not uploaded, extras that failed, media fallbacks."""
    return not_uploaded_markdown(items, batch_name) + extras_markdown(items) + fallbacks_markdown(items)


REPORT = Report(file_kinds=FILE_KINDS, row=row, sections=sections)

"""download: yt-dlp best audio → ``.tmp/audio.<ext>`` (deleted when the item finishes).

yt-dlp writes ``*.part`` and renames only a complete file, so a partial download never
counts as done; a retry resumes the ``.part`` (HTTP Range) or restarts cleanly.
Captions or a reused earlier result make this stage a no-op: no request is sent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.stages import register
from pipeline.stages.base import Stage, StageContext, StageResult
from pipeline.ytdlp import classify_ytdlp_error, ydl_base_options

log = logging.getLogger("tubemill.download")

TRANSCRIPT = "transcript.json"


def find_audio(tmp: Path) -> Path | None:
    for p in sorted(tmp.glob("audio.*")):
        if p.suffix not in (".part", ".ytdl", ".temp") and not p.name.endswith((".part", ".ytdl")) and p.stat().st_size:
            return p
    return None


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    if ctx.path(TRANSCRIPT).exists():  # captions or reuse already gave us the transcript
        return StageResult()
    local = (item.get("meta") or {}).get("local_path")
    if local:
        if not Path(local).exists():
            raise errors.NotFound(f"local file {local} no longer exists")
        return StageResult(artifacts={"audio": local}, meta={"audio_local": True})
    tmp = ctx.tmpdir
    done = find_audio(tmp)
    if done:
        return StageResult(artifacts={"audio": str(done)})
    import yt_dlp

    def hook(d: dict[str, Any]) -> None:
        if ctx.cancelled():
            raise errors.Cancelled("download cancelled")
        if d.get("status") == "downloading":
            total = d.get("total_bytes") or d.get("total_bytes_estimate")
            if total:
                ctx.progress(min(0.99, (d.get("downloaded_bytes") or 0) / total))

    opts = {
        **ydl_base_options(ctx),
        "format": ctx.options.get("format", "bestaudio/best"),
        "outtmpl": {"default": str(tmp / "audio.%(ext)s")},
        "progress_hooks": [hook],
    }
    index = (item.get("meta") or {}).get("playlist_index")
    if index:
        opts["noplaylist"] = False
        opts["playlist_items"] = str(index)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(item["source"], download=True)
    except errors.Cancelled:
        raise
    except yt_dlp.utils.DownloadError as exc:
        if isinstance(getattr(exc, "exc_info", (None, None))[1], errors.Cancelled):
            raise errors.Cancelled("download cancelled") from exc
        # 401/403 means bad cookies only for a signed-in account (a cookie file or a browser profile)
        signed_in = bool(ctx.cookiefile or ctx.browser or ctx.options.get("cookies"))
        raise classify_ytdlp_error(exc, account=ctx.account if signed_in else None) from exc
    audio = find_audio(tmp)
    if audio is None:
        raise errors.RetryableError("yt-dlp finished but left no audio file")
    meta: dict[str, Any] = {}
    if info:
        entry = info["entries"][0] if info.get("entries") else info
        if entry.get("duration") and not item.get("duration"):
            meta["duration"] = float(entry["duration"])
        if entry.get("title") and not item.get("title"):
            meta["title"] = entry["title"]
    ctx.progress(1.0)
    return StageResult(artifacts={"audio": str(audio)}, meta=meta)


def needs_account(item: dict[str, Any], workdir: Path) -> bool:
    """False when this item's download sends no request (local file, captions, audio already here)."""
    if (item.get("meta") or {}).get("local_path"):
        return False
    if (workdir / TRANSCRIPT).exists():
        return False
    tmp = workdir / ".tmp"
    return not (tmp.is_dir() and find_audio(tmp))


register(Stage("download", run, resource="net", account_bound=True, doc="yt-dlp best audio",
               needs_account=needs_account))

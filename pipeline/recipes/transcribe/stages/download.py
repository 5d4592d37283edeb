"""download: yt-dlp best audio → ``.tmp/audio.<ext>`` (deleted when the item finishes).

yt-dlp writes ``*.part`` and renames only a complete file, so a partial download never
counts as done; a retry resumes the ``.part`` (HTTP Range) or restarts cleanly.
Captions or a reused earlier result make this stage a no-op: no request is sent.

The call runs in a child process (:mod:`pipeline.recipes.transcribe.ytdlp_run`): cancel and interrupt stop it within
about a fifth of a second even while it is blocked in a read, and its limits hold — a byte cap
(``max_download_mb``, never more than the free disk above the governor's floor), a stall rule
(``stall_rate_kbps`` over ``stall_seconds``), the media check on the first bytes, the outbound
rule for redirects. yt-dlp gets a private copy of the account's cookie file, never the file itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe.kept_media import playable_url
from pipeline.recipes.transcribe.options import options_of
from pipeline.recipes.transcribe.source_entries import clean_title
from pipeline.recipes.transcribe.source_probe import Probed, media_seconds, probe_file
from pipeline.recipes.transcribe.ytdlp import call_limits, call_options
from pipeline.recipes.transcribe.ytdlp_run import YtdlpCall

log = logging.getLogger("tubemill.download")

TRANSCRIPT = "transcript.json"


def find_audio(tmp: Path) -> Path | None:
    for p in sorted(tmp.glob("audio.*")):
        if p.suffix not in (".part", ".ytdl", ".temp") and not p.name.endswith((".part", ".ytdl")) and p.stat().st_size:
            return p
    return None


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    if ctx.path(TRANSCRIPT).exists():  # captions or reuse already gave us the transcript
        return StageResult(measured=False)
    local = (item.get("meta") or {}).get("local_path")
    if local:
        if not Path(local).exists():
            raise errors.NotFound(f"local file {local} no longer exists")
        return StageResult(artifacts={"audio": local}, meta={"audio_local": True, **learned(item, {}, Path(local))},
                           measured=False)  # nothing fetched: no download speed to learn
    tmp = ctx.tmpdir
    done = find_audio(tmp)
    if done:
        return StageResult(artifacts={"audio": str(done)})
    limits = call_limits(ctx, tmp)
    if limits.cap_bytes <= 0:
        raise limits.cap_error()
    # 401/403 means bad cookies only for a signed-in account (a cookie file or a browser profile)
    signed_in = bool(ctx.cookiefile or ctx.browser or options_of(ctx).cookies)
    with call_options(ctx) as base:
        opts = {
            **base,
            **limits.ydl_options(),
            "format": options_of(ctx).format,
            "outtmpl": {"default": str((tmp / "audio.%(ext)s").resolve())},
        }
        index = (item.get("meta") or {}).get("playlist_index")
        if index:
            opts["noplaylist"] = False
            opts["playlist_items"] = str(index)
        with YtdlpCall(ctx, opts, limits, account=ctx.account if signed_in else None, watch_dir=tmp) as call:
            info = call.extract(item["source"], download=True)
    audio = find_audio(tmp)
    if audio is None:
        raise errors.RetryableError("yt-dlp finished but left no audio file")
    meta = learned(item, info, audio)
    ctx.progress(1.0)
    return StageResult(artifacts={"audio": str(audio)}, meta=meta)


def learned(item: dict[str, Any], info: dict[str, Any], audio: Path) -> dict[str, Any]:
    """What the download taught about the item: a duration it lacked, a better title, the media's own URL.

    A title is replaced only when the item has none or a file-name stand-in (``title_from``): the
    file's ``title`` tag first (ffprobe of the download: yt-dlp reads no tags of a direct file), then
    yt-dlp's ``track``. A title the listing or the user gave is kept. The item's folder keeps the name it
    was given at its start; the full title goes to the item record and the manifest.
    """
    meta: dict[str, Any] = {}
    weak = not item.get("title") or (item.get("meta") or {}).get("title_from") == "file name"
    tags = probe_file(audio) if weak or not item.get("duration") else Probed()
    duration = media_seconds(info.get("duration")) or tags.duration
    if duration and not item.get("duration"):
        meta["duration"] = duration
    title = (tags.title or clean_title(info.get("track"))) if weak else None
    if title is None and not item.get("title"):
        title = clean_title(info.get("title"))
    if title and title != item.get("title"):
        meta["title"], meta["title_from"] = title, "tags"
    media_url = playable_url(info, item.get("source") or "")
    if media_url:
        meta["media_url"] = media_url
    return meta


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

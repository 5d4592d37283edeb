"""Downloaded media kept for playback, up to a cap per batch (``keep_media_mb``, ``[downloads]``).

The results page plays an item from its own folder (``media.<ext>``, the item artifact ``media``), so
playback needs neither the origin server nor a page a browser cannot play. Without a cap a 7,000-video
batch would keep hundreds of gigabytes, so a batch keeps the media of its items until their total reaches
``keep_media_mb`` (per batch: a batch's folder is what a user browses, moves and deletes as one; a total
over the home would need an eviction policy that decides which old batch loses its media), and deletes
the rest as before. ``keep_audio`` keeps every item's audio, uncapped, as ``audio.<ext>``.

What a batch already keeps is read once per process from its folder (a scan of ``*/media.*``) and then
counted as items keep theirs, under a lock, so exports running at once never pass the cap together. A
batch whose exports run in several processes (Dask workers) may pass it by an item per process.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from pipeline.config.ytdlp_options import redact_url

MEDIA_STEM = "media"

_lock = threading.Lock()
_used: dict[Path, int] = {}  # batch folder -> bytes of media kept there


def find(workdir: Path) -> Path | None:
    """The media an item folder keeps already (a re-run export, a reopened batch), or None."""
    try:
        return next((p for p in sorted(Path(workdir).glob(f"{MEDIA_STEM}.*")) if p.is_file()), None)
    except OSError:
        return None


def _scan(batch_dir: Path) -> int:
    total = 0
    try:
        for p in batch_dir.glob(f"*/{MEDIA_STEM}.*"):
            try:
                total += p.stat().st_size if p.is_file() else 0
            except OSError:
                continue
    except OSError:
        pass
    return total


def keep(audio: Path, workdir: Path, cap_mb: float) -> Path | None:
    """Move ``audio`` (in the item's scratch folder) to ``workdir/media.<ext>`` if it fits under the batch's
    cap; None when it does not (the caller deletes it) or the cap is 0."""
    if cap_mb <= 0:
        return None
    workdir = Path(workdir)
    batch_dir = workdir.resolve().parent
    try:
        size = audio.stat().st_size
    except OSError:
        return None
    dest = workdir / f"{MEDIA_STEM}{audio.suffix.lower()}"
    with _lock:
        if batch_dir not in _used:
            _used[batch_dir] = _scan(batch_dir)
        if _used[batch_dir] + size > cap_mb * 2**20:
            return None
        try:
            shutil.move(str(audio), dest)
        except OSError:
            return None
        _used[batch_dir] += size
    return dest


def playable_url(info: dict[str, Any], source: str) -> str | None:
    """The media file behind a generic page (yt-dlp's ``url`` of its one format), for playback when none is
    kept; None for a site's formats (signed for one client address, expiring within hours) and for the
    source itself."""
    url = info.get("url")
    generic = str(info.get("extractor_key") or "").lower() in ("generic", "html5mediaembed")
    if not generic or not isinstance(url, str) or not url.startswith(("http://", "https://")) or url == source:
        return None
    return redact_url(url)

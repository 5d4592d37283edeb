"""Listing a URL source (a video, playlist, channel, feed or page) into entries with yt-dlp's
``extract_flat``, so a 7,000-video channel lists in one request per page instead of one per video.

A listing is bounded in time, every yt-dlp failure comes out as one of our errors, a feed strict XML
refuses is read again and repaired (:mod:`.source_feeds`), and one unusable entry (a ``file:``
enclosure, controls in its URL) is reported while the others are kept.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.lines import printable
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.source_entries import Entry, Filters, clean_title, short_hash, strip_smuggle
from pipeline.recipes.transcribe.source_feeds import reread_feed
from pipeline.recipes.transcribe.source_text import SURROGATE, bad_char, unsafe_char
from pipeline.recipes.transcribe.ytdlp import YtdlpLogger, classify_ytdlp_error, common_options

LISTING_DEADLINE_S = 300.0


def _entry_scheme(url: str) -> str:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", url)
    return m.group(1).lower() if m else ""


def _upload_date(e: dict[str, Any]) -> str | None:
    """YYYYMMDD from the entry's date or timestamp; ``None`` for anything a filter could not compare."""
    raw = e.get("upload_date")
    if isinstance(raw, str) and re.fullmatch(r"\d{8}", raw):
        try:
            datetime.strptime(raw, "%Y%m%d")
            return raw
        except ValueError:
            return None
    ts = e.get("timestamp") or e.get("release_timestamp")
    if ts:
        try:
            return datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y%m%d")
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    return None


def _duration(value: Any) -> float | None:
    try:
        d = float(value) if value else None
    except (TypeError, ValueError):
        return None
    return d if d is not None and 0 < d < 1e9 else None


def _entry_from_info(line: str, e: dict[str, Any], parent: dict[str, Any] | None, extractor: str,
                     position: int) -> Entry | None:
    index = None
    if e.get("_type") in ("url", "url_transparent"):
        url = strip_smuggle(str(e.get("url") or ""))  # RSS entries carry #__youtubedl_smuggle (NOTES)
    else:
        # A resolved video: its page is what yt-dlp fetches again (captions, formats), not a format URL.
        url = strip_smuggle(str(e.get("webpage_url") or e.get("original_url") or e.get("url") or line))
        if parent is not None and url == strip_smuggle(str(parent.get("webpage_url") or line)):
            index = position  # several media on one page: download picks this one with playlist_items
    if _entry_scheme(url) not in ("", "http", "https"):
        raise InvalidInput(f"feed or page entry refused: {_entry_scheme(url)}: URL")
    if SURROGATE.search(url) or bad_char(url) is not None:
        raise InvalidInput("feed or page entry refused: control characters in its URL")
    ie = str(e.get("ie_key") or e.get("extractor_key") or extractor or "generic")
    raw_id = e.get("id")
    generic = ie.lower() in ("generic", "html5", "html5mediaembed")
    if not raw_id and url:
        raw_id = Path(urllib.parse.urlsplit(url).path).stem or None
    if not raw_id:
        return None
    # An id is stored and shown like a title: no controls, but otherwise exactly what the site said.
    raw_id = "".join(c for c in str(raw_id) if not unsafe_char(c))
    if not raw_id.strip():
        return None
    # Generic ids are file names ("ep1", "page-1"): add a hash of the URL so two sites' "ep1" differ.
    cid = f"{raw_id}-{short_hash(url + (f'#{index}' if index else ''), 8)}" if generic else str(raw_id)
    subs = e.get("subtitles") if isinstance(e.get("subtitles"), dict) else {}
    autos = e.get("automatic_captions") if isinstance(e.get("automatic_captions"), dict) else {}
    title = clean_title(e.get("title"))
    if generic and title and parent is None and str(raw_id).endswith("-1") and title.endswith(" (1)"):
        title = title[:-4].rstrip() or title  # a page's only video: "Sundials", not "Sundials (1)"
    stem = clean_title(Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem)
    return Entry(
        source=line,
        url=url or line,
        id=cid,
        archive_id=f"{'generic' if generic else ie.lower()} {raw_id}",
        title=title,
        title_from="file name" if generic and title is not None and title == stem else None,
        media_url=_media_url(e, url) if generic else None,
        duration=_duration(e.get("duration")),
        upload_date=_upload_date(e),
        extractor="generic" if generic else ie.lower(),
        parent=clean_title((parent or {}).get("title")),
        subtitles=sorted(str(k) for k in set(subs) | set(autos)),
        playlist_index=index,
    )


def _media_url(e: dict[str, Any], url: str) -> str | None:
    """The media file a resolved page entry plays (``url`` of its one format), when it is a plain http(s) URL
    other than the page: what the results page plays and the duration probe reads; never refuses the entry.
    Asked of generic pages only: a site's format URLs are signed for one client address and soon expire."""
    raw = e.get("url")
    if e.get("_type") in ("url", "url_transparent") or not isinstance(raw, str):
        return None
    media = strip_smuggle(raw)
    if media == url or _entry_scheme(media) not in ("http", "https") or len(media) > 4096:
        return None
    return None if SURROGATE.search(media) or bad_char(media) is not None else media


def media_entry(url: str) -> Entry:
    """A direct media URL, listed without a request: yt-dlp would only report its base name (NOTES). The
    file name stands in for a title until media tags (the probe, the download) say better."""
    stem = clean_title(Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem) or "media"
    return Entry(source=url, url=url, id=f"{stem}-{short_hash(url, 8)}", archive_id=f"generic {stem}", title=stem,
                 title_from="file name")


def unlisted_entry(line: str) -> Entry:
    """The one entry a source that could not be listed is kept as, so the batch records why it failed."""
    return Entry(source=line, url=line, id=f"unlisted-{short_hash(line, 12)}",
                 archive_id=f"generic {short_hash(line, 12)}", title=None)


def list_with_deadline(line: str, kind: str, filters: Filters, ydl_opts: dict[str, Any] | None,
                       notes: list[tuple[str, str]]) -> list[Entry]:
    """:func:`list_url` bounded in time: a server that trickles its feed a byte every few seconds never times
    a socket out, and must not hold the whole run (or the app's Preview) at the listing. Past the deadline
    the line is reported failed and the run goes on; the stuck read ends with the process."""
    import concurrent.futures

    deadline = float((ydl_opts or {}).get("listing_timeout_s") or LISTING_DEADLINE_S)
    opts = {k: v for k, v in (ydl_opts or {}).items() if k != "listing_timeout_s"}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tubemill-listing")
    fut = pool.submit(list_url, line, kind, filters, opts, notes)
    pool.shutdown(wait=False)
    try:
        return fut.result(timeout=deadline)
    except concurrent.futures.TimeoutError:
        raise errors.NetworkError(f"listing took longer than {deadline:.0f} s (a server sending too slowly); "
                                  "not listed") from None


def list_url(line: str, kind: str, filters: Filters, ydl_opts: dict[str, Any] | None = None,
             refused: list[tuple[str, str]] | None = None) -> list[Entry]:
    """Entries behind a URL via yt-dlp ``extract_flat`` (one request per playlist page, not per video).

    Every yt-dlp failure comes out as one of our errors. One unusable entry (a ``file:``
    enclosure, a date no calendar holds) is added to ``refused`` as (url, reason) and the
    others are kept.
    """
    import yt_dlp

    opts = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "skip_download": True,
        "extract_flat": "in_playlist",
        "socket_timeout": 20,
        "retries": 2,
        "extractor_retries": 1,
        "logger": YtdlpLogger(),
        **common_options(),  # the JS runtime by path, as for every yt-dlp call of ours
        **(ydl_opts or {}),  # pass-through options and the batch's proxy: ytdlp.listing_options()
    }
    if filters.newest and kind in ("channel", "playlist"):
        opts["playlistend"] = filters.newest
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            try:
                info = ydl.extract_info(line, download=False)
            except yt_dlp.utils.DownloadError as exc:
                err = classify_ytdlp_error(exc)
                info = reread_feed(ydl, line) if isinstance(err, errors.Unsupported) else None
                if info is None:
                    raise err from exc
    except yt_dlp.utils.YoutubeDLError as exc:  # e.g. RequestError, raised without a DownloadError around it
        raise classify_ytdlp_error(exc) from exc
    if info is None:
        raise errors.Unsupported("yt-dlp returned nothing for this URL")
    parent = info if info.get("entries") is not None else None
    raw_entries = list(info.get("entries") or []) if parent is not None else [info]
    out = []
    for position, e in enumerate(raw_entries, start=1):
        if not isinstance(e, dict):
            continue
        try:
            entry = _entry_from_info(line, e, parent, info.get("extractor_key") or "generic", position)
        except InvalidInput as exc:
            entry = None
            if refused is not None:
                refused.append((printable(str(e.get("url") or e.get("webpage_url") or "?"))[:200], str(exc)))
        if entry is not None:
            out.append(entry)
    return out

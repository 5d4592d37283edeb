"""What a subscription's source lists today, as cheaply as it can be asked.

- A YouTube channel (``/channel/UC…``) or playlist (``?list=…``): its RSS feed, one request
  (``feeds/videos.xml?channel_id=…`` / ``?playlist_id=…``, the newest 15 entries; Pinchflat's "fast
  indexing"), sent with the last ``ETag``/``Last-Modified`` so an unchanged feed is a bodiless 304.
  When the feed cannot say (an ``@handle`` or ``/c/`` URL has no channel id, the feed is 404 or
  unreadable) yt-dlp's flat listing does it, through the transcribe recipe's own ``list_url``.
- Any other URL: an RSS or Atom feed read directly, the same way; not a feed: yt-dlp's flat listing.
- A folder: media files whose size and modification time have not changed for ``stable_s`` seconds
  (a file still being copied in waits for the next look).

The feed host is ``TUBEMILL_YOUTUBE_FEEDS`` when set (tests point it at a loopback server).
"""

from __future__ import annotations

import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.recipes.transcribe.source_entries import Entry, Filters, clean_title, short_hash
from pipeline.recipes.transcribe.source_feeds import FEED_MAX_BYTES, repair_feed
from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS
from pipeline.recipes.transcribe.source_local import local_id

YOUTUBE_FEEDS = "https://www.youtube.com/feeds/videos.xml"
FETCH_TIMEOUT_S = 20.0
FLAT_NEWEST = 50  # a flat channel listing reads this many of the newest uploads, not the whole channel
_ATOM = "{http://www.w3.org/2005/Atom}"
_YT = "{http://www.youtube.com/xml/schemas/2015}"
_MEDIA = "{http://search.yahoo.com/mrss/}"
_USER_AGENT = "tubemill-watch/1"


@dataclass
class Listing:
    """One look at a source: its entries, newest first where the source says, and what the look cost."""

    entries: list[Entry] = field(default_factory=list)
    requests: int = 0
    via: str = "feed"  # feed | yt-dlp | folder | unchanged (a 304)
    waiting: int = 0  # folder files not stable yet
    note: str | None = None  # why the feed could not say, when yt-dlp listed instead


def feed_base() -> str:
    return os.environ.get("TUBEMILL_YOUTUBE_FEEDS") or YOUTUBE_FEEDS


def youtube_feed_url(source: str) -> str | None:
    """The RSS feed of a YouTube channel or playlist URL, or None when the URL does not carry the id the feed
    needs (``@handle``, ``/c/name``, ``/user/name``: only a page request would tell)."""
    u = urllib.parse.urlsplit(source)
    playlist = urllib.parse.parse_qs(u.query).get("list")
    if playlist:
        return f"{feed_base()}?playlist_id={urllib.parse.quote(playlist[0])}"
    m = re.match(r"^/channel/(UC[\w-]{10,})", u.path)
    return f"{feed_base()}?channel_id={m.group(1)}" if m else None


def fetch(url: str, state: dict[str, Any]) -> bytes | None:
    """GET ``url`` (conditional on the ``etag``/``modified`` kept in ``state``); None for a 304.

    Errors come out as ours: 404/410 permanent, 429 and 5xx rate-limited or retryable (the
    scheduler backs off either way), a refused or cut connection a NetworkError.
    """
    headers = {"User-Agent": _USER_AGENT}
    if state.get("etag"):
        headers["If-None-Match"] = state["etag"]
    if state.get("modified"):
        headers["If-Modified-Since"] = state["modified"]
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 (http(s) only, checked)
            data = resp.read(FEED_MAX_BYTES + 1)
            etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return None
        if exc.code in (404, 410):
            raise errors.PermanentError(f"HTTP {exc.code} for {url}") from None
        if exc.code == 429:
            raise errors.RateLimited(f"HTTP 429 for {url} (Retry-After {exc.headers.get('Retry-After')})") from None
        raise errors.RetryableError(f"HTTP {exc.code} for {url}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.NetworkError(f"cannot fetch {url}: {reason}") from None
    if len(data) > FEED_MAX_BYTES:
        raise errors.PermanentError(f"{url} is larger than {FEED_MAX_BYTES >> 20} MB; not a feed")
    state["etag"], state["modified"] = etag, modified
    return data


def parse_feed(url: str, data: bytes) -> list[Entry] | None:
    """Entries of an Atom (YouTube's) or RSS feed, with the ids ``tubemill run`` gives the same videos;
    None when the bytes are no feed."""
    doc: ET.Element | None
    try:
        if b"<!ENTITY" in data[:65536]:
            return None
        doc = ET.fromstring(data)
    except ET.ParseError:
        doc = repair_feed(data)
    if doc is None:
        return None
    if doc.tag == f"{_ATOM}feed":
        return [e for e in (_atom_entry(url, x) for x in doc.findall(f"{_ATOM}entry")) if e is not None]
    if doc.tag == "rss":
        parent = clean_title(doc.findtext("./channel/title"))
        return [e for e in (_rss_entry(url, x, parent) for x in doc.findall("./channel/item")) if e is not None]
    return None


def _atom_entry(url: str, x: ET.Element) -> Entry | None:
    vid = (x.findtext(f"{_YT}videoId") or "").strip()
    link = next((ln.attrib.get("href") for ln in x.findall(f"{_ATOM}link")
                 if ln.attrib.get("rel", "alternate") == "alternate" and ln.attrib.get("href")), None)
    title = clean_title(x.findtext(f"{_ATOM}title") or x.findtext(f"{_MEDIA}group/{_MEDIA}title"))
    published = (x.findtext(f"{_ATOM}published") or "")[:10].replace("-", "") or None
    if vid:
        return Entry(source=url, url=f"https://www.youtube.com/watch?v={vid}", id=vid, archive_id=f"youtube {vid}",
                     title=title, upload_date=published, extractor="youtube")
    if not link:
        return None
    link = urllib.parse.urljoin(url, link)
    raw = Path(urllib.parse.urlsplit(link).path).stem or short_hash(link)
    return Entry(source=url, url=link, id=f"{raw}-{short_hash(link, 8)}", archive_id=f"generic {raw}", title=title,
                 upload_date=published)


def _rss_entry(url: str, x: ET.Element, parent: str | None) -> Entry | None:
    enclosure = next((e.attrib.get("url") for e in x.findall("./enclosure") if e.attrib.get("url")), None)
    link = (enclosure or x.findtext("link") or "").strip()
    if not link:
        return None
    link = urllib.parse.urljoin(url, link)
    if urllib.parse.urlsplit(link).scheme not in ("http", "https"):
        return None  # a file: enclosure never reaches the download stage
    raw = Path(urllib.parse.urlsplit(link).path).stem or short_hash(link)
    return Entry(source=url, url=link, id=f"{raw}-{short_hash(link, 8)}", archive_id=f"generic {raw}",
                 title=clean_title(x.findtext("title")), parent=parent)


def flat_listing(source: str, kind: str, ydl_opts: dict[str, Any] | None = None) -> list[Entry]:
    """yt-dlp's flat listing of the newest uploads (one request per page), bounded in time."""
    from pipeline.recipes.transcribe.source_listing import list_with_deadline

    notes: list[tuple[str, str]] = []
    return list_with_deadline(source, "channel" if kind == "channel" else kind, Filters(newest=FLAT_NEWEST),
                              ydl_opts, notes)


def list_source(sub: dict[str, Any], state: dict[str, Any], *, stable_s: float = 5.0,
                now: float | None = None) -> Listing:
    """One look at a subscription's source; ``state`` (the subscription's, stored) keeps the feed's validators
    and the folder's file sizes between looks."""
    source, kind = sub["source"], sub["kind"]
    if kind == "folder":
        return list_folder(Path(source), state, stable_s=stable_s, now=now)
    url = youtube_feed_url(source) if kind in ("channel", "playlist") else source
    note = None if url else "no channel id in the URL for its feed"
    if url:
        try:
            data = fetch(url, state)
        except errors.PermanentError as exc:
            if kind == "feed":
                raise
            data, note = b"", str(exc)
        if data is None:
            return Listing(requests=1, via="unchanged")
        entries = parse_feed(url, data) if data else None
        if entries is not None:
            return Listing(entries=entries, requests=1)
        note = note or "not an RSS or Atom feed"
    entries = flat_listing(source, kind)
    return Listing(entries=entries, requests=1 + (url is not None), via="yt-dlp", note=note)


def list_folder(root: Path, state: dict[str, Any], *, stable_s: float = 5.0, now: float | None = None) -> Listing:
    """Media files of ``root`` (recursively) whose size and mtime held still for ``stable_s`` seconds.

    ``state["sizes"]`` remembers (size, mtime, first seen unchanged) per path; a file is ready
    when a later look finds the same size and mtime at least ``stable_s`` after the first.
    """
    now = time.time() if now is None else now
    if not root.is_dir():
        raise errors.PermanentError(f"folder {root} is gone or unreadable")
    sizes: dict[str, list[float]] = state.setdefault("sizes", {})
    handled: dict[str, list[float]] = state.setdefault("handled", {})
    out, waiting, present = [], 0, set()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.rsplit(".", 1)[-1].lower() not in MEDIA_EXTS:
                continue
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            key, sig = str(p), [st.st_size, st.st_mtime_ns]
            present.add(key)
            if handled.get(key) == sig:
                continue
            if state.get("baseline"):  # a new subscription's first look: what is there already is old
                handled[key] = sig
                continue
            seen = sizes.get(key)
            if not seen or seen[:2] != sig:
                sizes[key] = [*sig, now]
                waiting += 1
                continue
            if now - seen[2] < stable_s:
                waiting += 1
                continue
            try:
                cid = local_id(p)
            except OSError:
                continue
            handled[key] = sig
            sizes.pop(key, None)
            out.append(Entry(source=str(root), url=None, id=cid, archive_id=f"local {cid}",
                             title=clean_title(p.stem), title_from="file name", local_path=key, extractor="local"))
    for key in [k for k in sizes if k not in present]:
        sizes.pop(key)
    return Listing(entries=out, via="folder", waiting=waiting)

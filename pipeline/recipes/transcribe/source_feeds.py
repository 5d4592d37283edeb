"""RSS feeds that strict XML refuses, read again and repaired.

An RSS feed that XML forbids (a NUL or ESC in one title, a bare "&") makes yt-dlp's generic extractor
give up on the whole feed ("Unsupported URL"). We read such a feed again ourselves, drop what XML 1.0
cannot hold, and keep every entry the way yt-dlp's own ``_extract_rss`` would have listed it.
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from typing import Any

FEED_MAX_BYTES = 20 << 20
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_CHAR_REF = re.compile(r"&#(x[0-9A-Fa-f]+|[0-9]+);")
_BARE_AMP = re.compile(r"&(?!(?:#[0-9]+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9._-]*);)")
_ITUNES = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"


def _legal_char_ref(m: re.Match[str]) -> str:
    ref = m.group(1)
    try:
        code = int(ref[1:], 16) if ref[0] in "xX" else int(ref)
        ok = not _XML_ILLEGAL.match(chr(code))
    except (ValueError, OverflowError):
        ok = False
    return m.group(0) if ok else ""


def repair_feed(data: bytes) -> ET.Element | None:
    """Parse RSS that strict XML refuses (forbidden characters, bare ``&``); ``None`` if it is no RSS at all.

    Entity declarations are refused outright: a feed has no use for them, and they are
    how a small document expands into gigabytes.
    """
    if not re.search(rb"<rss[\s>]", data[:4096]):
        return None
    m = re.match(rb"\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)[\"']", data.lstrip(b"\xef\xbb\xbf"))
    try:
        text = data.decode(m.group(1).decode() if m else "utf-8", "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    if "<!ENTITY" in text:
        return None
    text = re.sub(r"^\ufeff?\s*<\?xml[^>]*\?>", "", text)
    text = _XML_ILLEGAL.sub("", text)
    text = _XML_CHAR_REF.sub(_legal_char_ref, text)
    text = _BARE_AMP.sub("&amp;", text)
    try:
        doc = ET.fromstring(text)
    except ET.ParseError:
        return None
    return doc if doc.tag == "rss" else None


def feed_info(url: str, doc: ET.Element) -> dict[str, Any]:
    """A repaired feed as yt-dlp's flat playlist: the same entry URLs, so ids match a clean listing."""
    from yt_dlp.utils import parse_duration, unified_timestamp

    entries = []
    for it in doc.findall("./channel/item"):
        enclosure = next((e.attrib.get("url") for e in it.findall("./enclosure") if e.attrib.get("url")), None)
        link = enclosure or (it.findtext("link") or "").strip()
        if not link:
            continue
        entries.append({
            "_type": "url_transparent",
            "url": urllib.parse.urljoin(url, link.strip()),
            "title": it.findtext("title"),
            "timestamp": unified_timestamp(it.findtext("pubDate")),
            "duration": parse_duration(it.findtext(f"{_ITUNES}duration")),
        })  # fmt: skip
    return {"_type": "playlist", "title": doc.findtext("./channel/title"), "webpage_url": url,
            "extractor_key": "Generic", "entries": entries}


def reread_feed(ydl: Any, url: str) -> dict[str, Any] | None:
    """Fetch ``url`` through the same YoutubeDL (proxy, headers, cookies) and repair it, if it is RSS."""
    import yt_dlp

    try:
        with ydl.urlopen(url) as resp:
            data = resp.read(FEED_MAX_BYTES + 1)
    except (yt_dlp.utils.YoutubeDLError, OSError, ValueError):
        return None
    if len(data) > FEED_MAX_BYTES:
        return None
    doc = repair_feed(data)
    return feed_info(url, doc) if doc is not None else None

"""Media or not: a response judged by its content type and first bytes, so an HTML page, an archive, a
PDF or an image is refused as "not media" after at most one block instead of downloaded to the cap.

Pure byte logic, no yt-dlp: :mod:`.ytdlp_guard` applies it once a call's download has started.
"""

from __future__ import annotations

import re
from typing import Any

# Content types that are never audio or video; refused from the headers alone once the download started.
NON_MEDIA_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "application/zip", "application/x-zip-compressed", "application/pdf",
    "application/x-rar-compressed", "application/vnd.rar", "application/x-7z-compressed", "application/gzip",
    "application/x-gzip", "application/x-tar", "application/x-msdownload", "application/x-executable",
    "application/java-archive", "application/x-bzip2", "application/x-xz",
})
# Types a page, feed or API answer has: fine while extracting, but not the media itself.
PAGE_TYPE = re.compile(r"^(?:text/|application/(?:[\w.+-]*\+)?(?:xml|json|javascript)$|application/xhtml)")
_HTML_START = re.compile(rb"^\s*<(?:!doctype\s+html|html|head|body|meta|title|script|div|!--)", re.I)
_NON_MEDIA_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"), (b"PK\x05\x06", "a ZIP archive"), (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!\x1a\x07", "a RAR archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ\x00", "an xz archive"), (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
_MEDIA_MAGIC = (b"ID3", b"OggS", b"fLaC", b"RIFF", b"\x1a\x45\xdf\xa3", b"FLV", b"#EXTM3U", b"#!AMR", b"FORM",
                b"caff", b"MAC ", b"wvpk", b".snd", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"\x00\x00\x01\xba",
                b"\x00\x00\x01\xb3", b"WEBVTT")
_MP4_BOXES = (b"ftyp", b"moof", b"styp", b"sidx", b"moov", b"mdat", b"free", b"skip", b"wide", b"emsg")


def sniff(head: bytes) -> tuple[str, str]:
    """("media" | "nonmedia" | "unknown", what it looks like) from a response's first bytes."""
    if _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")):
        return "nonmedia", "an HTML page"
    if head.lstrip().startswith(b"<?xml"):
        return "unknown", "XML"
    for magic, what in _NON_MEDIA_MAGIC:
        if head.startswith(magic):
            return "nonmedia", what
    if head.startswith(_MEDIA_MAGIC) or head[4:8] in _MP4_BOXES:
        return "media", "media"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "media", "MPEG audio"  # an MP3 frame or ADTS AAC
    if head[:1] == b"\x47":
        return "media", "an MPEG transport stream"
    return "unknown", "unknown bytes"


def content_type(headers: Any) -> str:
    """A response's media type, lower case, without its parameters (``text/html; charset=…`` → ``text/html``)."""
    return str(headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

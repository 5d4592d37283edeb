r"""Input parsing, classification and expansion into one entry per video.

A line is a URL (video, playlist, channel, RSS feed, HTML page, direct media file) or
a local media file or folder. Blank lines and ``#`` comments are skipped; a line that
cannot be a source is reported with its line number and skipped, and the rest of the
batch runs. Expansion uses yt-dlp's ``extract_flat`` so a 7,000-video channel lists
in one request per page instead of one per video.

Bad input never aborts a run: nothing a line says (a broken URL, an unreadable folder,
bytes that are not UTF-8, a hostile feed) may raise out of :func:`expand`. Lines are
split on ``\n`` only (``\r\n`` is one break), because ``str.splitlines()`` also breaks
on ``\v \f \x1c-\x1e \x85 \u2028 \u2029`` and a lone ``\r``, and every line number
after such a character would be wrong.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import stat
import unicodedata
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.lines import BIDI, InvalidLine, printable
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.ytdlp import YtdlpLogger, classify_ytdlp_error, common_options

log = logging.getLogger("tubemill.sources")

MEDIA_EXTS = frozenset(
    ["mp3", "m4a", "aac", "wav", "flac", "ogg", "oga", "opus", "wma", "webm", "mp4", "m4v", "mkv", "mov", "avi",
     "wmv", "mpg", "mpeg", "ts", "3gp"]
)
SMUGGLE = "#__youtubedl_smuggle"
MAX_LINE_CHARS = 4096
MAX_INPUT_BYTES = 64 << 20  # a list of 7,000 URLs is under 1 MB; /dev/zero must not fill memory
MAX_FOLDER_ENTRIES = 200_000  # `~` or a disk's root as a line must end with a reason, not a day-long walk
MAX_TITLE_CHARS = 500
# Folders whose files are the kernel's, not media: reading /proc/kcore "as a video" helps nobody.
SYSTEM_DIRS = ("/proc", "/sys", "/dev")
_BIDI = BIDI  # direction overrides and isolates (see common.lines)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_char(text: str) -> tuple[int, str] | None:
    r"""The first character no source can contain (column from 1, its code point), or ``None``.

    C0/C1 controls (NUL, ESC, ``\v``, ``\x85`` …), line and paragraph separators and
    direction overrides: a URL or path never needs them, and echoed to a terminal or a
    page they can rewrite what the user sees.
    """
    for col, c in enumerate(text, start=1):
        if c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp"):
            return col, f"U+{ord(c):04X}"
    return None


def numbered_lines(text: str) -> tuple[list[tuple[int, str]], list[InvalidLine]]:
    r"""Every candidate source with its true line number (repeats kept), and the lines refused as text.

    Splits on ``\n`` only: see the module docstring. A line holding bytes that were not
    UTF-8 (``read_input`` keeps them as surrogate escapes) is refused here with its
    number, so one bad byte costs one line, not the whole file.
    """
    lines: list[tuple[int, str]] = []
    invalid: list[InvalidLine] = []
    for no, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip().lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        if _SURROGATE.search(line):
            invalid.append(InvalidLine(no, printable(line), "not valid UTF-8 text (bad bytes shown as \ufffd)"))
            continue
        bad = _bad_char(line)
        if bad is not None:
            invalid.append(InvalidLine(no, printable(line), f"control characters in line ({bad[1]} at column "
                                                            f"{bad[0]})"))
            continue
        if len(line) > MAX_LINE_CHARS:
            invalid.append(InvalidLine(no, line[:120], f"line longer than {MAX_LINE_CHARS} characters"))
            continue
        lines.append((no, line))
    return lines, invalid


def parse_lines(text: str) -> tuple[list[str], list[InvalidLine]]:
    """Sources in order (first occurrence wins) and the lines that were rejected."""
    lines, invalid = numbered_lines(text)
    sources: list[str] = []
    seen: set[str] = set()
    for _, line in lines:
        if line not in seen:
            seen.add(line)
            sources.append(line)
    return sources, invalid


def drop_undecodable(text: str) -> tuple[str, list[InvalidLine]]:
    """``text`` with every line that held non-UTF-8 bytes blanked (numbering kept), and those lines reported.

    For readers of ``read_input``'s text other than :func:`numbered_lines` (topics): a
    surrogate escape must never reach the store, whose JSON is written as UTF-8.
    """
    out: list[str] = []
    invalid: list[InvalidLine] = []
    for no, raw in enumerate(text.split("\n"), start=1):
        if _SURROGATE.search(raw):
            invalid.append(InvalidLine(no, printable(raw.strip()), "not valid UTF-8 text (bad bytes shown as \ufffd)"))
            raw = ""
        out.append(raw)
    return "\n".join(out), invalid


def decode_input(data: bytes, name: str = "input") -> str:
    """The text of a sources file; bytes that are not UTF-8 stay as surrogate escapes for the line report.

    Only a file that is mostly not UTF-8 text (no good line at all, or more bad lines than
    good past ten) is refused as a whole, UTF-16 with the hint to save it as UTF-8: that
    is a binary file, not a list with a typo, and a report per line would bury the point.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput(f"cannot read input file {name!r}: not UTF-8 text (looks like UTF-16; save it as UTF-8)")
    text = data.decode("utf-8", "surrogateescape")
    if _SURROGATE.search(text):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        bad = sum(1 for ln in lines if _SURROGATE.search(ln))
        if bad == len(lines) or (bad >= 10 and bad * 2 > len(lines)):  # a picture, an archive: not a typo
            raise InvalidInput(f"cannot read input file {name!r}: not UTF-8 text (is it a binary file?)")
    return text


def _exists(path: Path) -> bool:
    """``Path.exists`` that never raises: a path we may not even ``stat`` is no source of ours."""
    try:
        return path.exists()
    except (OSError, ValueError, RuntimeError):
        return False


def read_input(spec: str, stdin_text: str | bytes | None = None) -> str:
    """The text of an input: ``-`` for stdin, a URL or media path given directly, or a file of sources.

    Read as bytes and decoded here (not by ``read_text``), so one bad byte is reported
    on its line by :func:`numbered_lines` instead of refusing the file.
    """
    if spec == "-":
        if isinstance(stdin_text, bytes):
            if len(stdin_text) > MAX_INPUT_BYTES:
                raise InvalidInput(f"stdin is larger than {MAX_INPUT_BYTES >> 20} MB (is it a list of sources?)")
            return decode_input(stdin_text, "stdin")
        return stdin_text or ""
    try:
        path = Path(spec).expanduser()
    except RuntimeError:  # "~nosuchuser/…"
        return spec + "\n"  # the line report says why it is not a source
    if "://" in spec and not _exists(path):
        return spec + "\n"
    try:
        if path.is_dir() or (path.is_file() and path.suffix.lower().lstrip(".") in MEDIA_EXTS):
            return str(path.resolve()) + "\n"  # a folder or a media file is itself the source
        with open(path, "rb") as f:  # a FIFO (`<(grep …)`) is fine; /dev/zero stops at the cap
            data = f.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"cannot read input file {spec!r}: no such file") from None
    except (RuntimeError, ValueError) as exc:  # a symlink loop; a NUL in the name
        raise InvalidInput(f"cannot read input file {spec!r}: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read input file {spec!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInput(f"cannot read input file {spec!r}: larger than {MAX_INPUT_BYTES >> 20} MB "
                           "(is it a list of sources?)")
    return decode_input(data, spec)


# ---------------------------------------------------------------------- classification
_YT_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")
_HOST_LABEL = re.compile(r"^[\w-]{1,63}$")  # \w: internationalized names are labels too


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _check_local(line: str) -> str | None:
    """Why an existing path cannot be a source (``None`` when it can); raises nothing.

    ``FileNotFoundError`` comes back as ``"missing"`` so the caller can give the
    "no such file" hints; any other ``stat`` failure (permission, name too long, a
    symlink loop) is the reason itself.
    """
    try:
        p = Path(line).expanduser()
    except RuntimeError:
        return "cannot expand ~ here (no such user)"
    try:
        st = p.stat()
        real = p.resolve()
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return "missing"
    except RuntimeError:
        return "a symlink loop"
    except OSError as exc:
        return f"cannot read this path ({_os_reason(exc)})"
    if stat.S_ISDIR(st.st_mode) and real == Path(real.anchor):
        return "the filesystem root is not a media folder; name the folder that holds your media"
    for top in SYSTEM_DIRS:
        inside = real == Path(top) or Path(top) in real.parents
        if inside and (stat.S_ISDIR(st.st_mode) or top != "/dev"):
            return f"a system path ({top}), not media"
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return "not a regular file or folder (a device, pipe or socket)"
    return None


def _url_problem(u: urllib.parse.SplitResult) -> str | None:
    """Why a parsed http(s) URL cannot be fetched, or ``None``: caught here, not by a traceback in yt-dlp."""
    try:
        host, port = u.hostname, u.port  # .port raises for "99999" or "abc"
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if not host:
        return "malformed URL: no host name"
    if port == 0:
        return "malformed URL: port 0"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        return f"malformed URL: {host[:60]!r} is not a host name"
    return None


def classify(line: str) -> str:
    """``local`` | ``video`` | ``playlist`` | ``channel`` | ``media`` (direct file) | ``page`` (let yt-dlp decide).

    Raises ``InvalidInput`` (and nothing else) for text that is neither a fetchable URL
    nor a usable path. ``file:`` URLs are refused: a local file is given as its path,
    and a list of URLs that reaches into the disk by URL is more likely a trick than a typo.
    """
    if re.match(r"(?i)^file:", line):
        raise InvalidInput("file: URLs are refused; give the file's path instead (e.g. /home/me/talk.mp3)")
    if "://" not in line:
        problem = _check_local(line)
        if problem is None:
            return "local"
        if problem != "missing":
            raise InvalidInput(problem)
        if line.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:\\", line):
            raise InvalidInput("no such file or folder")
        if re.match(r"^[\w.-]+\.[a-z]{2,}(/|$)", line):
            raise InvalidInput("looks like a URL without http:// or https://")
        raise InvalidInput("not a URL or an existing file")
    try:
        u = urllib.parse.urlsplit(line)
    except ValueError as exc:  # "Invalid IPv6 URL" and friends
        raise InvalidInput(f"malformed URL ({exc})") from None
    if u.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"unsupported scheme {u.scheme[:20]!r} (use http or https)")
    if " " in line:
        raise InvalidInput("malformed URL (a space in it)")
    problem = _url_problem(u)
    if problem:
        raise InvalidInput(problem)
    host = (u.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in _YT_HOSTS):
        q = urllib.parse.parse_qs(u.query)
        if u.path.startswith(("/@", "/channel/", "/c/", "/user/")):
            return "channel"
        if "list" in q and "v" not in q or u.path.startswith("/playlist"):
            return "playlist"
        return "video"
    ext = u.path.rsplit(".", 1)[-1].lower() if "." in u.path.rsplit("/", 1)[-1] else ""
    if ext in MEDIA_EXTS:
        return "media"
    return "page"


# ---------------------------------------------------------------------- entries
@dataclass(frozen=True)
class Filters:
    """Which entries of a playlist/channel/feed to keep. Unknown values (no duration) pass."""

    min_duration: float | None = None
    max_duration: float | None = None
    date_after: date | None = None
    date_before: date | None = None
    newest: int | None = None
    match_title: str | None = None

    def __post_init__(self) -> None:
        if self.match_title:
            try:
                re.compile(self.match_title)
            except re.error as exc:
                raise InvalidInput(f"--match-title is not a valid regular expression: {exc}") from None
        if self.newest is not None and self.newest < 1:
            raise InvalidInput("--newest must be at least 1")


@dataclass
class Entry:
    """One video to process: what the store's item is created from."""

    source: str  # the input line it came from
    url: str | None  # what the download stage fetches (None for local files)
    id: str  # canonical id: unique across sources, stable across runs
    archive_id: str  # the line yt-dlp's --download-archive would write ("youtube abc123")
    title: str | None = None
    duration: float | None = None
    upload_date: str | None = None  # YYYYMMDD
    local_path: str | None = None
    extractor: str = "generic"
    parent: str | None = None  # playlist / channel / feed title
    subtitles: list[str] = field(default_factory=list)
    playlist_index: int | None = None  # which media of a multi-media page

    def to_item(self) -> dict[str, Any]:
        """Fields for ``Store.create_batch``: the item's source is what the stages fetch."""
        meta = {k: v for k, v in asdict(self).items() if k not in ("source", "id", "title", "duration") and v}
        meta["input"] = self.source
        return {
            "source": self.url or self.local_path or self.source,
            "id": self.id,
            "title": self.title,
            "duration": self.duration,
            "meta": meta,
        }


@dataclass
class Expansion:
    entries: list[Entry] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason) that could not be listed
    duplicates: int = 0
    filtered: int = 0


def strip_smuggle(url: str) -> str:
    return url.split(SMUGGLE, 1)[0]


def _short_hash(text: str, n: int = 10) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def local_id(path: Path) -> str:
    """Content-based: the same lecture file in two folders is one video."""
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read(1 << 20))
    return "local-" + h.hexdigest()[:16]


def clean_title(title: Any) -> str | None:
    """A title fit to store and show: no controls (a NUL, an ESC sequence), no direction overrides, bounded.

    Feeds and pages are written by strangers; one NUL must cost a character, never the entry.
    """
    if title is None:
        return None
    text = str(title).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(" " if c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)
    text = " ".join(text.split())[:MAX_TITLE_CHARS]
    return text or None


def _media_files(root: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """Media files under ``root``; what cannot be read is added to ``skipped`` as (path, reason), never raised.

    Directory symlinks are not followed (as ``rglob`` did not), so a link to ``/`` or a
    loop cannot make the walk endless; file symlinks are. ``MAX_FOLDER_ENTRIES`` bounds
    the walk with a reason instead of an hour of listing.
    """
    out: list[Path] = []
    stack, seen = [root], 0
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            skipped.append((printable(str(folder)), f"cannot list this folder ({_os_reason(exc)})"))
            continue
        for e in entries:
            seen += 1
            if seen > MAX_FOLDER_ENTRIES:
                raise InvalidInput(f"more than {MAX_FOLDER_ENTRIES:,} entries under this folder; name a smaller one")
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                    continue
                if Path(e.name).suffix.lower().lstrip(".") not in MEDIA_EXTS:
                    continue
                if _SURROGATE.search(e.path):
                    skipped.append((printable(e.path), "file name is not valid UTF-8; rename the file"))
                elif e.is_file():
                    out.append(Path(e.path))
                elif e.is_symlink() and not _exists(Path(e.path)):
                    skipped.append((printable(e.path), "broken symlink"))
                elif not e.is_dir():
                    skipped.append((printable(e.path), "not a regular file (a device, pipe or socket)"))
            except OSError as exc:
                skipped.append((printable(e.path), f"cannot read this file ({_os_reason(exc)})"))
    return sorted(out)


def local_entries(line: str, skipped: list[tuple[str, str]] | None = None) -> list[Entry]:
    """Entries for a local file or folder line (one per readable media file).

    A folder's unreadable entries go to ``skipped`` (path, reason) and the rest are
    listed; a file line that cannot be read raises ``InvalidInput``.
    """
    skipped = [] if skipped is None else skipped
    try:
        p = Path(line).expanduser().resolve()
        is_file = p.is_file()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InvalidInput(f"cannot read this path ({exc})") from None
    files = [p] if is_file else _media_files(p, skipped)
    out = []
    for f in files:
        try:
            cid = local_id(f)
        except OSError as exc:
            if is_file:
                raise InvalidInput(f"cannot read this file ({_os_reason(exc)})") from None
            skipped.append((printable(str(f)), f"cannot read this file ({_os_reason(exc)})"))
            continue
        out.append(Entry(source=line, url=None, id=cid, archive_id=f"local {cid}", title=clean_title(f.stem),
                         local_path=str(f), extractor="local"))
    return out


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
    if _SURROGATE.search(url) or _bad_char(url) is not None:
        raise InvalidInput("feed or page entry refused: control characters in its URL")
    ie = str(e.get("ie_key") or e.get("extractor_key") or extractor or "generic")
    raw_id = e.get("id")
    generic = ie.lower() in ("generic", "html5", "html5mediaembed")
    if not raw_id and url:
        raw_id = Path(urllib.parse.urlsplit(url).path).stem or None
    if not raw_id:
        return None
    # An id is stored and shown like a title: no controls, but otherwise exactly what the site said.
    raw_id = "".join(c for c in str(raw_id) if not (c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp")))
    if not raw_id.strip():
        return None
    # Generic ids are file names ("ep1", "page-1"): add a hash of the URL so two sites' "ep1" differ.
    cid = f"{raw_id}-{_short_hash(url + (f'#{index}' if index else ''), 8)}" if generic else str(raw_id)
    subs = e.get("subtitles") if isinstance(e.get("subtitles"), dict) else {}
    autos = e.get("automatic_captions") if isinstance(e.get("automatic_captions"), dict) else {}
    return Entry(
        source=line,
        url=url or line,
        id=cid,
        archive_id=f"{'generic' if generic else ie.lower()} {raw_id}",
        title=clean_title(e.get("title")),
        duration=_duration(e.get("duration")),
        upload_date=_upload_date(e),
        extractor="generic" if generic else ie.lower(),
        parent=clean_title((parent or {}).get("title")),
        subtitles=sorted(str(k) for k in set(subs) | set(autos)),
        playlist_index=index,
    )


def media_entry(url: str) -> Entry:
    """A direct media URL, listed without a request: yt-dlp would only report its base name (NOTES)."""
    stem = clean_title(Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).stem) or "media"
    return Entry(source=url, url=url, id=f"{stem}-{_short_hash(url, 8)}", archive_id=f"generic {stem}", title=stem)


# An RSS feed that XML forbids (a NUL or ESC in one title, a bare "&") makes yt-dlp's generic extractor
# give up on the whole feed ("Unsupported URL"). We read such a feed again ourselves, drop what XML 1.0
# cannot hold, and keep every entry the way yt-dlp's own _extract_rss would have listed it.
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


def _reread_feed(ydl: Any, url: str) -> dict[str, Any] | None:
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


LISTING_DEADLINE_S = 300.0


def _list_with_deadline(line: str, kind: str, filters: Filters, ydl_opts: dict[str, Any] | None,
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
                info = _reread_feed(ydl, line) if isinstance(err, errors.Unsupported) else None
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


def apply_filters(entries: list[Entry], f: Filters) -> list[Entry]:
    """Duration, date and title filters, then newest N (by upload date when known, else listing order)."""
    pat = re.compile(f.match_title, re.IGNORECASE) if f.match_title else None
    out = []
    for e in entries:
        if f.min_duration is not None and e.duration is not None and e.duration < f.min_duration:
            continue
        if f.max_duration is not None and e.duration is not None and e.duration > f.max_duration:
            continue
        d = datetime.strptime(e.upload_date, "%Y%m%d").date() if e.upload_date else None
        if f.date_after and d and d < f.date_after:
            continue
        if f.date_before and d and d > f.date_before:
            continue
        if pat and not pat.search(e.title or ""):
            continue
        out.append(e)
    if f.newest:
        if all(e.upload_date for e in out):
            out = sorted(out, key=lambda e: e.upload_date or "", reverse=True)
        out = out[: f.newest]
    return out


def expand(
    text: str,
    filters: Filters | None = None,
    *,
    ydl_opts: dict[str, Any] | None = None,
    on_source: Callable[[int, int, str], None] | None = None,
) -> Expansion:
    """Parse, classify, list and filter every source; deduplicate by canonical id.

    A source that cannot be listed (404 feed, unreachable page) is kept as one entry
    so the batch records why it failed instead of silently dropping it. A line that
    cannot be a source is reported once per occurrence, each with its own line number
    (a repeated good line is listed once); a folder's unreadable files and a feed's
    unusable entries are reported on the folder's or feed's line, and the rest of it runs.
    """
    filters = filters or Filters()
    lines, invalid = numbered_lines(text)
    result = Expansion(invalid=list(invalid))
    total = len({line for _, line in lines})
    verdicts: dict[str, str | InvalidInput] = {}
    listed: set[str] = set()
    seen: set[str] = set()
    for no, line in lines:
        if line not in verdicts:
            try:
                verdicts[line] = classify(line)
            except InvalidInput as exc:
                verdicts[line] = exc
        kind = verdicts[line]
        if isinstance(kind, InvalidInput):
            result.invalid.append(InvalidLine(no, line, str(kind)))
            continue
        if line in listed:
            continue
        listed.add(line)
        if on_source:
            on_source(len(listed), total, line)
        notes: list[tuple[str, str]] = []  # (path or entry URL, reason): skipped parts of this line
        if kind == "local":
            try:
                found = local_entries(line, notes)
            except InvalidInput as exc:
                result.invalid.append(InvalidLine(no, line, str(exc)))
                continue
        elif kind == "media":
            found = [media_entry(line)]
        else:
            try:
                found = _list_with_deadline(line, kind, filters, ydl_opts, notes)
            except errors.TubemillError as exc:
                result.failed.append((line, str(exc)))
                found = [Entry(source=line, url=line, id=f"unlisted-{_short_hash(line, 12)}",
                               archive_id=f"generic {_short_hash(line, 12)}", title=None)]
        result.invalid += [InvalidLine(no, what, why) for what, why in notes]
        kept = apply_filters(found, filters) if kind != "local" or filters != Filters() else found
        result.filtered += len(found) - len(kept)
        for e in kept:
            if e.id in seen:
                result.duplicates += 1
                continue
            seen.add(e.id)
            result.entries.append(e)
    result.invalid.sort(key=lambda bad: bad.line_no)
    return result


def summarize_expansion(x: Expansion) -> Iterable[str]:
    """Human lines for the CLI and the preview."""
    if x.entries:
        yield f"{len(x.entries)} video(s) to process"
    if x.duplicates:
        yield f"{x.duplicates} duplicate(s) skipped"
    if x.filtered:
        yield f"{x.filtered} filtered out"
    for bad in x.invalid:
        yield f"skipped invalid input, {bad}"
    for src, why in x.failed:
        yield f"could not list {src}: {why} (kept as one item; it will be retried or fail with this reason)"

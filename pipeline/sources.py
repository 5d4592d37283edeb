"""Input parsing, classification and expansion into one entry per video.

A line is a URL (video, playlist, channel, RSS feed, HTML page, direct media file) or
a local media file or folder. Blank lines and ``#`` comments are skipped; a line that
cannot be a source is reported with its line number and skipped, and the rest of the
batch runs. Expansion uses yt-dlp's ``extract_flat`` so a 7,000-video channel lists
in one request per page instead of one per video.
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.errors import InvalidInput
from pipeline.ytdlp import YtdlpLogger, classify_ytdlp_error, common_options

log = logging.getLogger("tubemill.sources")

MEDIA_EXTS = frozenset(
    ["mp3", "m4a", "aac", "wav", "flac", "ogg", "oga", "opus", "wma", "webm", "mp4", "m4v", "mkv", "mov", "avi",
     "wmv", "mpg", "mpeg", "ts", "3gp"]
)
SMUGGLE = "#__youtubedl_smuggle"


@dataclass(frozen=True)
class InvalidLine:
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}: {self.text[:120]!r}"


def parse_lines(text: str) -> tuple[list[str], list[InvalidLine]]:
    """Sources in order (first occurrence wins) and the lines that were rejected."""
    sources: list[str] = []
    invalid: list[InvalidLine] = []
    seen: set[str] = set()
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if any(ord(c) < 32 for c in line):
            invalid.append(InvalidLine(no, line, "control characters in line"))
            continue
        if len(line) > 4096:
            invalid.append(InvalidLine(no, line, "line longer than 4096 characters"))
            continue
        if line in seen:
            continue
        seen.add(line)
        sources.append(line)
    return sources, invalid


def read_input(spec: str, stdin_text: str | None = None) -> str:
    """The text of an input: ``-`` for stdin, a URL or media path given directly, or a file of sources."""
    if spec == "-":
        return stdin_text or ""
    path = Path(spec).expanduser()
    if "://" in spec and not path.exists():
        return spec + "\n"
    if path.is_dir() or (path.is_file() and path.suffix.lower().lstrip(".") in MEDIA_EXTS):
        return str(path.resolve()) + "\n"  # a folder or a media file is itself the source
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"cannot read input file {spec!r}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read input file {spec!r}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read input file {spec!r}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------- classification
_YT_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")


def classify(line: str) -> str:
    """``local`` | ``video`` | ``playlist`` | ``channel`` | ``media`` (direct file) | ``page`` (let yt-dlp decide).

    Raises ``InvalidInput`` for text that is neither a URL nor an existing path.
    """
    if line.startswith("file://"):
        line = urllib.parse.unquote(urllib.parse.urlparse(line).path)
    if "://" not in line:
        p = Path(line).expanduser()
        if p.exists():
            return "local"
        if line.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:\\", line):
            raise InvalidInput("no such file or folder")
        if re.match(r"^[\w.-]+\.[a-z]{2,}(/|$)", line):
            raise InvalidInput("looks like a URL without http:// or https://")
        raise InvalidInput("not a URL or an existing file")
    u = urllib.parse.urlparse(line)
    if u.scheme not in ("http", "https"):
        raise InvalidInput(f"unsupported scheme {u.scheme!r} (use http or https)")
    if not u.netloc or " " in line:
        raise InvalidInput("malformed URL")
    host = u.netloc.lower().split(":")[0]
    if host.endswith(_YT_HOSTS):
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


def local_entries(line: str) -> list[Entry]:
    p = Path(urllib.parse.unquote(urllib.parse.urlparse(line).path) if line.startswith("file://") else line)
    p = p.expanduser().resolve()
    files = [p] if p.is_file() else sorted(
        f for f in p.rglob("*") if f.is_file() and f.suffix.lower().lstrip(".") in MEDIA_EXTS
    )
    out = []
    for f in files:
        cid = local_id(f)
        out.append(Entry(source=line, url=None, id=cid, archive_id=f"local {cid}", title=f.stem,
                         local_path=str(f), extractor="local"))
    return out


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
    ie = str(e.get("ie_key") or e.get("extractor_key") or extractor or "generic")
    raw_id = e.get("id")
    generic = ie.lower() in ("generic", "html5", "html5mediaembed")
    if not raw_id and url:
        raw_id = Path(urllib.parse.urlparse(url).path).stem or None
    if not raw_id:
        return None
    # Generic ids are file names ("ep1", "page-1"): add a hash of the URL so two sites' "ep1" differ.
    cid = f"{raw_id}-{_short_hash(url + (f'#{index}' if index else ''), 8)}" if generic else str(raw_id)
    ts = e.get("timestamp") or e.get("release_timestamp")
    upload = e.get("upload_date") or (
        datetime.fromtimestamp(float(ts), tz=UTC).strftime("%Y%m%d") if ts else None
    )
    subs = sorted(set(e.get("subtitles") or {}) | set(e.get("automatic_captions") or {}))
    return Entry(
        source=line,
        url=url or line,
        id=cid,
        archive_id=f"{'generic' if generic else ie.lower()} {raw_id}",
        title=e.get("title") or None,
        duration=float(e["duration"]) if e.get("duration") else None,
        upload_date=upload,
        extractor="generic" if generic else ie.lower(),
        parent=(parent or {}).get("title"),
        subtitles=subs,
        playlist_index=index,
    )


def media_entry(url: str) -> Entry:
    """A direct media URL, listed without a request: yt-dlp would only report its base name (NOTES)."""
    stem = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).stem or "media"
    return Entry(source=url, url=url, id=f"{stem}-{_short_hash(url, 8)}", archive_id=f"generic {stem}", title=stem)


def list_url(line: str, kind: str, filters: Filters, ydl_opts: dict[str, Any] | None = None) -> list[Entry]:
    """Entries behind a URL via yt-dlp ``extract_flat`` (one request per playlist page, not per video)."""
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
            info = ydl.extract_info(line, download=False)
    except yt_dlp.utils.DownloadError as exc:
        raise classify_ytdlp_error(exc) from exc
    if info is None:
        raise errors.Unsupported("yt-dlp returned nothing for this URL")
    parent = info if info.get("entries") is not None else None
    raw_entries = list(info.get("entries") or []) if parent is not None else [info]
    out = []
    for position, e in enumerate(raw_entries, start=1):
        if not e:
            continue
        entry = _entry_from_info(line, e, parent, info.get("extractor_key") or "generic", position)
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
    so the batch records why it failed instead of silently dropping it.
    """
    filters = filters or Filters()
    lines, invalid = parse_lines(text)
    result = Expansion(invalid=list(invalid))
    line_nos = _line_numbers(text)
    seen: set[str] = set()
    for i, line in enumerate(lines, start=1):
        if on_source:
            on_source(i, len(lines), line)
        try:
            kind = classify(line)
        except InvalidInput as exc:
            result.invalid.append(InvalidLine(line_nos.get(line, 0), line, str(exc)))
            continue
        try:
            if kind == "local":
                found = local_entries(line)
            elif kind == "media":
                found = [media_entry(line)]
            else:
                found = list_url(line, kind, filters, ydl_opts)
        except errors.TubemillError as exc:
            result.failed.append((line, str(exc)))
            found = [Entry(source=line, url=line, id=f"unlisted-{_short_hash(line, 12)}",
                           archive_id=f"generic {_short_hash(line, 12)}", title=None)]
        kept = apply_filters(found, filters) if kind != "local" or filters != Filters() else found
        result.filtered += len(found) - len(kept)
        for e in kept:
            if e.id in seen:
                result.duplicates += 1
                continue
            seen.add(e.id)
            result.entries.append(e)
    return result


def _line_numbers(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for no, raw in enumerate(text.splitlines(), start=1):
        out.setdefault(raw.strip().lstrip("\ufeff"), no)
    return out


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

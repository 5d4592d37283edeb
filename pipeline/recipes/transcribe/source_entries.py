"""What a sources listing yields: one :class:`Entry` per video (what the store's item is made of), the
:class:`Filters` a playlist, channel or feed is narrowed by, and the :class:`Expansion` of a whole input.

Every lister (local folders, yt-dlp listings, repaired feeds) builds the same entries with the same
cleaning, so an id or a title means the same whatever the source was.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from pipeline.common.lines import InvalidLine
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.source_text import unsafe_char

SMUGGLE = "#__youtubedl_smuggle"
MAX_TITLE_CHARS = 500


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
    media_url: str | None = None  # the media file behind a page entry (playback, the duration probe)
    title_from: str | None = None  # "file name": a stand-in title that media tags or a feed may replace

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
    """Everything an input expanded to: the entries to process and what the user should hear about."""

    entries: list[Entry] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason) that could not be listed
    duplicates: int = 0
    filtered: int = 0


def merge_duplicate(kept: Entry, again: Entry) -> None:
    """What a repeat of ``kept`` knows better, taken into it: a feed's title over a file name, a duration.

    The same file given as a URL line and as a feed's enclosure is one video; whichever line came first,
    the batch should get the feed's "Episode 3: Sundials" and its ``itunes:duration``, not "ep3" and "?".
    """
    if again.title and (kept.title is None or (kept.title_from and not again.title_from)):
        kept.title, kept.title_from = again.title, again.title_from
    for name in ("duration", "upload_date", "parent", "media_url"):
        if getattr(kept, name) is None and getattr(again, name) is not None:
            setattr(kept, name, getattr(again, name))
    if again.subtitles and not kept.subtitles:
        kept.subtitles = list(again.subtitles)


def strip_smuggle(url: str) -> str:
    """``url`` without the data yt-dlp smuggles after ``#__youtubedl_smuggle`` (RSS entries carry it)."""
    return url.split(SMUGGLE, 1)[0]


def short_hash(text: str, n: int = 10) -> str:
    """A short, stable digest for ids made from URLs (not a security measure)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def clean_title(title: Any) -> str | None:
    """A title fit to store and show: no controls (a NUL, an ESC sequence), no direction overrides, bounded.

    Feeds and pages are written by strangers; one NUL must cost a character, never the entry.
    """
    if title is None:
        return None
    text = str(title).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(" " if unsafe_char(c) else c for c in text)
    text = " ".join(text.split())[:MAX_TITLE_CHARS]
    return text or None


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

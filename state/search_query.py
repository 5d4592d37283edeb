"""The pure half of :mod:`state.search`: its result shapes, the query language users type, transcripts as
chunks, and snippets.

No SQLite here: what a user's text becomes (always quoted FTS5 strings, so no input is query syntax), how
segments group into the rows the index holds, and how a marked-up snippet maps back to a segment's time.
Split from ``state.search`` to keep both under the layout's 400 lines; import from ``state.search``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHUNK_SECONDS = 60.0  # a chunk spans at most this much audio ...
CHUNK_CHARS = 2000  # ... and this much text
ITEM_BITS = 20  # chunk rowid = item key << ITEM_BITS | chunk number
MAX_TERMS = 16
MIN_PREFIX = 3  # "ab*" would merge the doclists of a large share of the vocabulary: searched as the word
OPEN, CLOSE, MARK_OPEN, MARK_CLOSE = "\x02", "\x03", "[", "]"  # SQLite's match markers; what users see
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_TERM = re.compile(r'"([^"]*)("?)(\*?)|(\S+)')


@dataclass(frozen=True)
class Hit:
    """One place a query matched: which item, from what second, and the words around the match."""

    batch: str  # the batch's name (batch_id: its id)
    batch_id: str
    n: int
    item_id: str | None
    title: str
    start: float  # seconds: where the segment holding the first match starts, and where the next one does
    end: float
    snippet: str  # the match marked with [ and ]
    score: float  # bm25: lower is better (SQLite's sign)
    workdir: str
    source: str
    parts: tuple[tuple[str, bool], ...] = ()  # the snippet as (text, matched) pieces, for a page to style

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("parts")
        return d


class Hits(list[Hit]):
    """The hits, best first, plus what the caller should tell the user (an index rebuilt, a capped ranking)."""

    def __init__(self, hits: Iterable[Hit] = (), messages: list[str] | None = None, capped: bool = False) -> None:
        super().__init__(hits)
        self.messages = list(messages or [])
        self.capped = capped


@dataclass
class IndexStats:
    """What the index holds; a reindex adds what it skipped (no readable transcript) and removed (gone)."""

    items: int = 0
    chunks: int = 0
    segments: int = 0
    batches: int = 0
    bytes: int = 0
    path: str = ""
    skipped: int = 0
    removed: int = 0
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def transcript_segments(workdir: str | Path) -> tuple[list[dict[str, Any]], str | None] | None:
    """The segments and language of ``workdir/transcript.json``; ``None`` when it is missing or unreadable."""
    try:
        data = json.loads((Path(workdir) / "transcript.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    segs = data.get("segments") if isinstance(data, dict) else None
    if not isinstance(segs, list):
        return None
    lang = data.get("language")
    return segs, lang if isinstance(lang, str) else None


def _quoted(words: str) -> str:
    return '"' + words.replace('"', '""') + '"'


def fts_query(text: str) -> str | None:
    """The user's text as a safe FTS5 expression (all terms ANDed), or ``None`` when nothing is searchable.

    ``"exact words"`` is a phrase, ``word*`` (and ``"two wo"*``) a prefix of at least :data:`MIN_PREFIX`
    characters; anything else is a word. Every term is a quoted string, so no input is FTS5 syntax.
    """
    terms: list[str] = []
    for m in _TERM.finditer(str(text or "")):
        phrase, _, star, word = m.groups()
        body = phrase if word is None else word
        prefix = bool(star) if word is None else body.endswith("*")
        body = _CONTROL.sub(" ", body.rstrip("*") if prefix and word is not None else body)
        if not any(ch.isalnum() for ch in body):
            continue  # '"', '-', ':' alone: nothing a tokenizer would index
        last = re.findall(r"\w+", body)[-1] if prefix else ""
        if prefix and len(last) < MIN_PREFIX:
            prefix = False
        terms.append(_quoted(body) + (" *" if prefix else ""))
    return " AND ".join(terms[:MAX_TERMS]) or None


def _finite(x: Any, default: float = 0.0) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def chunk_segments(segments: Iterable[dict[str, Any]]) -> list[tuple[str, float, float, list[float]]]:
    """Consecutive segments as ``(text, start, end, segment starts)`` chunks; text is one segment a line."""
    out: list[tuple[str, float, float, list[float]]] = []
    texts: list[str] = []
    starts: list[float] = []
    end = size = 0.0
    for seg in segments:
        if not isinstance(seg, dict):
            continue
        text = " ".join(_CONTROL.sub(" ", str(seg.get("text") or "")).split())
        if not text:
            continue
        start = max(0.0, _finite(seg.get("start")))
        if texts and (start - starts[0] >= CHUNK_SECONDS or size + len(text) > CHUNK_CHARS):
            out.append(("\n".join(texts), starts[0], end, starts))
            texts, starts, size = [], [], 0.0
        texts.append(text)
        starts.append(start)
        size += len(text) + 1
        end = max(start, _finite(seg.get("end"), start))
    if texts:
        out.append(("\n".join(texts), starts[0], end, starts))
    return out


def pieces(marked: str) -> tuple[tuple[str, bool], ...]:
    """SQLite's marked snippet as ``(text, matched)`` pieces, one line (a page styles them, a CLI brackets them)."""
    out: list[tuple[str, bool]] = []
    for i, part in enumerate(re.split(f"{OPEN}|{CLOSE}", marked)):
        if part:
            out.append((part.replace("\n", " "), i % 2 == 1))
    return tuple(out)


def segment_time(highlighted: str, start: float, starts: str, end: float) -> tuple[float, float]:
    """Start and end of the segment holding the first match: its line in the chunk's text."""
    at = highlighted.find(OPEN)
    line = highlighted.count("\n", 0, at) if at >= 0 else 0
    offsets = [int(x) / 10 for x in starts.split()] or [0.0]
    line = min(line, len(offsets) - 1)
    seg_end = start + offsets[line + 1] if line + 1 < len(offsets) else end
    return round(start + offsets[line], 3), round(seg_end, 3)


def marked(parts: Iterable[tuple[str, bool]]) -> str:
    """The pieces as one line with the matches in ``[`` ``]``."""
    return "".join(f"{MARK_OPEN}{t}{MARK_CLOSE}" if m else t for t, m in parts)

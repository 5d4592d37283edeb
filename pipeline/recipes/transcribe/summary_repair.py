"""Reading what models send: a summary answer coerced into :class:`~.summary_model.Summary`, repaired, said.

Used by the realtime summary (:mod:`.summary`) and by the Batch API ingest alike, so an
answer is judged the same way whichever path brought it. A soft-rule miss (too few key
points, a chapter past the end) raises ``llmcall.SoftMiss`` carrying the repaired summary
and what was adjusted; only an answer with no content at all is a ``ValueError`` (re-asked).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipeline.common.llmcall import SoftMiss, extract_json
from pipeline.recipes.transcribe import extractive
from pipeline.recipes.transcribe.summary_model import Chapter, ChunkNotes, Summary, timestamp

# Models get the shape wrong in ordinary ways: a string where a list was asked, {"point": …} objects, "MM:SS"
# chapter starts, comma-separated tags, placeholders echoed from the schema. These coercions keep every usable
# answer; what still misses a rule is repaired and said (SoftMiss), and only an answer with no content is re-asked.

_PLACEHOLDERS = {"", "string", "str", "text", "...", "…", "tldr", "tl;dr", "n/a", "none", "null", "todo",
                 "key point", "point", "tag", "title", "summary", "<tldr>", "<string>"}
_TEXT_KEYS = ("text", "point", "title", "summary", "content", "description", "name", "tag", "value")


def parse_json(content: str | None) -> dict[str, Any]:
    """The reply's JSON object (fences, prose around it and a cut-off end tolerated)."""
    return extract_json(content)[0]


class Backup:
    """The extractive summary of the same transcript, computed only if a repair needs it."""

    def __init__(self, transcript: Mapping[str, Any], title: str) -> None:
        self.transcript, self.title = transcript, title
        self._value: Summary | None = None

    def get(self) -> Summary:
        if self._value is None:
            self._value = extractive.summarize(self.transcript, self.title)
        return self._value


def _text(v: Any) -> str:
    if isinstance(v, dict):
        v = next((v[k] for k in _TEXT_KEYS if isinstance(v.get(k), str)), "")
    if not isinstance(v, str):  # a number or a list where text was asked is junk, not a summary
        return ""
    t = " ".join(v.split()).strip(" -*•\t")
    if t.lower() in _PLACEHOLDERS or not any(ch.isalnum() for ch in t):
        return ""  # "{", "}, {": what a grammar-constrained small model puts in a field it cannot fill
    return t


def _texts(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [p for p in re.split(r"\n+|(?:^|\s)[-*•]\s+|\s\d+[.)]\s+", v) if p.strip()]
    if not isinstance(v, list):
        return []
    out: list[str] = []
    for x in v:
        t = _text(x)
        if len(t) >= 2 and t not in out:
            out.append(t)
    return out


def _seconds(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        t = v.strip().strip("[]")
        if re.fullmatch(r"\d+(?:\.\d+)?", t):
            return float(t)
        if re.fullmatch(r"\d{1,3}(?::\d{1,2}){1,2}(?:\.\d+)?", t):
            secs = 0.0
            for part in t.split(":"):
                secs = secs * 60 + float(part)
            return secs
    return None


def _chapters(v: Any) -> list[Chapter]:
    out: list[Chapter] = []
    for c in v if isinstance(v, list) else []:
        if not isinstance(c, dict):
            continue
        start = _seconds(c.get("start", c.get("time", c.get("timestamp"))))
        title = _text(c.get("title", c.get("name", c.get("text"))))
        if start is not None and start >= 0 and title:
            out.append(Chapter(start=start, title=title))
    return out


def _tags(v: Any) -> list[str]:
    if isinstance(v, str):
        v = re.split(r"[,;\n#]+", v)
    out: list[str] = []
    for t in v if isinstance(v, list) else []:
        t = " ".join(_text(t).lower().lstrip("#").split())
        if t and t not in out:
            out.append(t)
    return out


def _within(values: list[str], lo: int, hi: int, what: str, misses: list[str], adjusted: list[str]
            ) -> tuple[list[str], bool]:
    """``values`` cut to ``hi`` (said), and whether there are fewer than ``lo`` (the caller repairs that)."""
    if lo <= len(values) <= hi:
        return values, False
    misses.append(f"{what} needs {lo} to {hi} entries, got {len(values)}")
    if len(values) > hi:
        adjusted.append(f"kept the first {hi} of {len(values)} {what.replace('_', ' ')}")
        return values[:hi], False
    return values, True


def as_summary(data: dict[str, Any], end: float, model: str, backup: Backup | None = None) -> Summary:
    """The model's answer as a Summary; ``SoftMiss`` (with the repaired summary) when it misses a soft rule.

    Raises ``ValueError`` only for an answer with nothing usable in it (re-asked).
    """
    tldr = _text(data.get("tldr") or data.get("tl;dr") or data.get("summary"))
    points = _texts(data.get("key_points") or data.get("keypoints") or data.get("points"))
    if not tldr and not points:
        raise ValueError("tldr and key_points are empty: write a tl;dr and 3 to 7 key points from the transcript")
    misses: list[str] = []
    adjusted: list[str] = []
    if not tldr:
        misses.append("tldr must not be empty")
        tldr = points[0]
        adjusted.append("tl;dr was empty: used the first key point")
    points, few = _within(points, 3, 7, "key_points", misses, adjusted)
    if few:
        adjusted.append(f"{len(points)} key point(s) where 3–7 were asked: kept as given")
    chapters = _chapters(data.get("chapters"))
    past = [c.start for c in chapters if c.start > end + 1.0]
    if past:
        misses.append(f"chapter starts {past} are past the end of the video ({end:.0f} s); every start must be "
                      f"between 0 and {end:.0f} seconds")
        adjusted.append(f"dropped {len(past)} chapter(s) starting past the end ({end:.0f} s)")
        chapters = [c for c in chapters if c.start <= end + 1.0]
    chapters.sort(key=lambda c: c.start)
    dedup: list[Chapter] = []
    for c in chapters:
        if not dedup or c.start > dedup[-1].start:
            dedup.append(c)
    if len(dedup) < len(chapters):
        adjusted.append(f"merged {len(chapters) - len(dedup)} chapter(s) with the same start")
    chapters = dedup
    if chapters and chapters[0].start > 1.0:
        adjusted.append(f"first chapter moved from {timestamp(chapters[0].start)} to 00:00")
        chapters[0] = Chapter(start=0.0, title=chapters[0].title)
    tags, few = _within(_tags(data.get("tags")), 3, 10, "tags", misses, adjusted)
    if few:
        extra = [t for t in (backup.get().tags if backup else []) if t not in tags][: 3 - len(tags)]
        adjusted.append(f"{len(tags)} tag(s) where 3–10 were asked" +
                        (f": added {len(extra)} from the transcript's keywords" if extra else ""))
        tags += extra
    summary = Summary(tldr=tldr, key_points=points, chapters=chapters, tags=tags, engine="llm", model=model)
    if misses:
        raise SoftMiss("; ".join(misses), summary, adjusted)
    return summary


def as_notes(data: dict[str, Any], end: float) -> ChunkNotes:
    """A map step's notes: anything usable is kept (the reduce step and its checks come after)."""
    tldr = _text(data.get("tldr") or data.get("summary"))
    points = _texts(data.get("key_points") or data.get("points"))
    if not tldr and not points:
        raise ValueError("tldr and key_points are empty: write notes on this part of the transcript")
    chapters = [c for c in _chapters(data.get("chapters")) if c.start <= end + 1.0]
    return ChunkNotes(tldr=tldr or points[0], key_points=points[:12], chapters=chapters, tags=_tags(
        data.get("tags"))[:15])

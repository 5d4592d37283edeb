"""Input of the generate recipe: topics one per line, or a CSV with per-row options.

CSV columns (header required, any order, all but ``topic`` optional): topic, voice, style,
length (seconds), aspect (9:16 or 16:9), privacy (public, unlisted, private), publish_at
(ISO 8601; implies private until then), pace (fast, normal, slow), music_dir (a folder of tracks
or one file), media_provider (none, openverse, pexels, pixabay), thumbnail (title, frame, none),
playlist_id. A bad row is reported
with its line number and skipped; the rest of the batch runs.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from pipeline.common.lines import InvalidLine
from pipeline.recipes.generate.options import parse_row

COLUMNS = ("topic", "voice", "style", "length", "aspect", "privacy", "publish_at", "pace", "music_dir",
           "media_provider", "thumbnail", "playlist_id")
_ROW_KEY = {"length": "length_s"}  # a column whose option has another name


@dataclass
class TopicList:
    items: list[dict[str, Any]]
    invalid: list[InvalidLine]


def _row_options(row: dict[str, str]) -> dict[str, Any]:
    """Validated per-row options, through the batch options' own parsers; raises ValueError with a reason a
    user can act on."""
    return parse_row({_ROW_KEY.get(col, col): row[col] for col in COLUMNS[1:] if row.get(col)})


def parse_topics(text: str) -> TopicList:
    """Items for ``Engine.submit``: one per topic, per-row options in the item's meta."""
    lines = [ln.removesuffix("\r") for ln in text.split("\n")]  # "\n" only: \v, \f, \x85… are not line ends
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    items: list[dict[str, Any]] = []
    invalid: list[InvalidLine] = []
    seen: set[str] = set()
    if "," in first and first.split(",")[0].strip().lower() == "topic":
        reader = csv.DictReader(io.StringIO(text))
        unknown = [c for c in reader.fieldnames or [] if c and c.strip().lower() not in COLUMNS]
        if unknown:
            invalid.append(InvalidLine(1, first, f"unknown column(s) {', '.join(unknown)}"))
        for row in reader:
            row = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            line_no = reader.line_num
            topic = row.get("topic", "").strip()
            if not topic or topic.startswith("#"):
                continue
            try:
                opts = _row_options(row)
            except ValueError as exc:
                invalid.append(InvalidLine(line_no, topic, str(exc)))
                continue
            if topic in seen:
                continue
            seen.add(topic)
            items.append({"source": topic, "title": topic, "meta": opts})
        return TopicList(items, invalid)
    for no, raw in enumerate(lines, start=1):
        topic = raw.strip()
        if not topic or topic.startswith("#"):
            continue
        if any(ord(c) < 32 for c in topic) or len(topic) > 500:
            invalid.append(InvalidLine(no, topic[:80], "control characters or longer than 500 characters"))
            continue
        if topic not in seen:
            seen.add(topic)
            items.append({"source": topic, "title": topic, "meta": {}})
    return TopicList(items, invalid)

"""The records the store keeps: item and batch shapes, the counters kept beside them, and the checks a
batch file must pass. Pure functions over plain data, shared by the store and the readers."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from state.models import SCHEMA_VERSION, TERMINAL, ItemStatus, empty_counts
from state.storage import AtomicJSONStorage

log = logging.getLogger("tubemill.state")

BATCHES_DIR = "batches"
CORRUPT_DIR = "corrupt"
INDEX_NAME = "index.json"

# Fields a caller may set on an item besides its status (which only transition() sets).
ITEM_FIELDS = frozenset(
    {
        "id",
        "title",
        "duration",
        "stage_index",
        "stage",
        "attempts",
        "next_attempt_at",
        "error",
        "timings",
        "artifacts",
        "meta",
        "progress",
        "parked",
        "done_ahead",
        "unmeasured",  # stages whose recorded seconds found their work done (left out of the stage's rate)
        "account",
        "flags",
        "workdir",
        "started_at",
        "finished_at",
    }
)


def new_item(n: int, source: str, **fields: Any) -> dict[str, Any]:
    item = {
        "n": n,
        "source": source,
        "id": fields.pop("id", None),
        "title": fields.pop("title", None),
        "status": ItemStatus.PENDING.value,
        "stage_index": 0,
        "stage": None,
        "attempts": 0,
        "next_attempt_at": None,
        "error": None,
        "timings": {},
        "artifacts": {},
        "meta": {},
        "progress": 0.0,
    }
    item.update(fields)
    return item


@dataclass
class _Batch:
    header: dict[str, Any]
    items: dict[int, dict[str, Any]]  # copy-on-write: replaced, never mutated, once stored
    storage: AtomicJSONStorage
    counts: dict[str, int] = field(default_factory=empty_counts)
    # non-terminal items per next stage index: remaining work without scanning items
    at_stage: dict[int, int] = field(default_factory=dict)
    stage_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    new: set[int] = field(default_factory=set)
    header_dirty: bool = False
    seq: int = 0
    durable_seq: int = 0
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.header["id"]


def _count_in(b: _Batch, item: dict[str, Any], sign: int) -> None:
    b.counts[item["status"]] = b.counts.get(item["status"], 0) + sign
    if item["status"] not in TERMINAL:
        k = int(item.get("stage_index", 0))
        b.at_stage[k] = b.at_stage.get(k, 0) + sign


def _stats_in(b: _Batch, timings: dict[str, float], media_s: Any = None) -> None:
    """Add stage runs to the batch's sums; with the item's media length also the seconds per media second
    (``media_s``, ``media_total_s``: a transcription's speed is per second of audio, not per run)."""
    try:
        media = float(media_s) if media_s is not None else 0.0
    except (TypeError, ValueError):
        media = 0.0
    for stage, secs in timings.items():
        st = b.stage_stats.setdefault(stage, {"n": 0, "total_s": 0.0})
        st["n"] += 1
        st["total_s"] += float(secs)
        if media > 0:
            st["media_s"] = st.get("media_s", 0.0) + media
            st["media_total_s"] = st.get("media_total_s", 0.0) + float(secs)


def batch_file_problem(data: dict[str, Any] | None) -> str | None:
    """Why a parsed file is not one of our batch files, or ``None`` when it is."""
    if data is None:
        return "empty file"
    header_table = data.get("batch")
    if not isinstance(header_table, dict) or "1" not in header_table:
        return "no batch header (not a Tubemill state file)"
    header = header_table["1"]
    if not isinstance(header, dict) or header.get("schema") != SCHEMA_VERSION:
        found = header.get("schema") if isinstance(header, dict) else None
        return f"schema {found!r}, expected {SCHEMA_VERSION}"
    for key in ("id", "name", "recipe"):
        if key not in header:
            return f"header lacks {key!r}"
    items = data.get("items", {})
    if not isinstance(items, dict) or any(not isinstance(v, dict) or "status" not in v for v in items.values()):
        return "items table is malformed"
    return None


def move_aside(path: Path, reason: str) -> Path:
    """Keep a file we cannot read for a human to inspect; never overwrite or delete it."""
    dest_dir = path.parent / CORRUPT_DIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    shutil.move(str(path), dest)
    log.warning("state file %s is unreadable (%s); moved to %s", path, reason, dest)
    return dest


def _document(header: dict[str, Any], items: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The batch as TinyDB lays out a database: tables of documents keyed by string ids."""
    return {"batch": {"1": header}, "items": {str(n): items[n] for n in sorted(items)}}

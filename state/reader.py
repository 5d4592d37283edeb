"""Snapshots for processes that do not own the home (``tubemill status``, a second UI).

The owner replaces files atomically, so each read here sees one consistent version
of a file; nothing here ever writes. The index is derived data (the owner rebuilds it
from the batch files at every start), so a reader that finds it unusable in any way —
torn, not JSON, valid JSON of the wrong shape, a folder where the file should be —
rebuilds the summaries from the batch files itself instead of failing, the same
tolerance ``Store.open`` has for a corrupt index.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from pipeline.errors import CorruptStateFile, UnknownBatch
from state.models import BatchSummary, empty_counts
from state.records import BATCHES_DIR, INDEX_NAME, batch_file_problem
from state.storage import read_json_file


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def summary_problem(row: Any) -> str | None:
    """Why an index row (or a batch header plus counts) cannot become a ``BatchSummary``; ``None`` if it can.

    Checked field by field because every reader (``status``, the app's pages, the
    follower engine) formats these values, and a string where a number belongs would
    fail there, far from the file that caused it.
    """
    if not isinstance(row, dict):
        return f"a row is a {type(row).__name__}, not an object"
    for key in ("id", "name"):
        if not isinstance(row.get(key), str) or not row[key]:
            return f"{key!r} is not a non-empty string"
    if "/" in row["id"] or "\\" in row["id"] or row["id"].startswith("."):
        return "'id' is not a batch id"  # it names a file under batches/: never a path out of it
    checks: dict[str, Any] = {
        "recipe": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "state": lambda v: isinstance(v, str),
        "counts": lambda v: isinstance(v, dict) and all(isinstance(k, str) and _number(n) for k, n in v.items()),
        "total": _number,
        "created_at": _number,
        "finished_at": lambda v: v is None or _number(v),
        "output_dir": lambda v: isinstance(v, str),
        "options": lambda v: isinstance(v, dict),
        "eta_s": lambda v: v is None or _number(v),
        "active": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
        "stage_stats": lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
        "held": lambda v: v is None or isinstance(v, str),
    }
    for key, ok in checks.items():
        if key in row and not ok(row[key]):
            return f"{key!r} has the wrong type"
    return None


def _index_summaries(home: Path) -> list[BatchSummary] | None:
    """The summaries the index holds, or ``None`` when there is no usable index."""
    try:
        data = read_json_file(home / INDEX_NAME)
    except (CorruptStateFile, OSError):
        return None
    rows = data.get("batches") if data else None
    if not isinstance(rows, list) or any(summary_problem(row) for row in rows):
        return None
    return [BatchSummary.from_dict(row) for row in rows]


def read_summaries(home: Path) -> list[BatchSummary]:
    """Every batch's summary from the index; rebuilt from the batch files if the index is unusable."""
    home = Path(home)
    summaries = _index_summaries(home)
    if summaries is not None:
        return summaries
    out = []
    try:
        paths = sorted((home / BATCHES_DIR).glob("*.json"))
    except OSError:
        paths = []
    for path in paths:
        try:
            header, items = _read_batch_path(path)
        except (CorruptStateFile, OSError):
            continue  # the owner moves it aside at its next start; a reader only skips it
        counts = empty_counts()
        for item in items:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        row = {**header, "counts": counts, "total": len(items)}
        if summary_problem(row) is None:
            out.append(BatchSummary.from_dict(row))
    return sorted(out, key=lambda s: s.created_at)


def find_summary(home: Path, ref: str) -> BatchSummary:
    """A batch by name, id or unique id prefix."""
    summaries = read_summaries(home)
    for s in summaries:
        if ref in (s.name, s.id):
            return s
    matches = [s for s in summaries if s.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    raise UnknownBatch(ref)


def read_batch(home: Path, batch_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and items of one batch as last flushed."""
    return _read_batch_path(Path(home) / BATCHES_DIR / f"{batch_id}.json")


def _read_batch_path(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = read_json_file(path)
    problem = batch_file_problem(data)
    if problem:
        raise CorruptStateFile(path, problem)
    assert data is not None
    items = list(data.get("items", {}).values())
    # What every reader indexes without a check: the number, the source and the status as a string.
    if any(not isinstance(it.get("n"), int) or not isinstance(it.get("source"), str)
           or not isinstance(it.get("status"), str) for it in items):
        raise CorruptStateFile(path, "an item lacks its number, source or status")
    return dict(data["batch"]["1"]), sorted(items, key=lambda it: it["n"])

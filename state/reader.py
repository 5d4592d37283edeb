"""Snapshots for processes that do not own the home (``tubemill status``, a second UI).

The owner replaces files atomically, so each read here sees one consistent version
of a file; nothing here ever writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from state.models import BatchSummary, empty_counts
from state.storage import CorruptStateFile, read_json_file
from state.store import BATCHES_DIR, INDEX_NAME, UnknownBatch, batch_file_problem


def read_summaries(home: Path) -> list[BatchSummary]:
    """Every batch's summary from the index; rebuilt from the batch files if the index is unusable."""
    home = Path(home)
    try:
        data = read_json_file(home / INDEX_NAME)
    except CorruptStateFile:
        data = None
    if data and isinstance(data.get("batches"), list):
        return [BatchSummary.from_dict(row) for row in data["batches"]]
    out = []
    for path in sorted((home / BATCHES_DIR).glob("*.json")):
        try:
            header, items = _read_batch_path(path)
        except CorruptStateFile:
            continue
        counts = empty_counts()
        for item in items:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
        out.append(
            BatchSummary.from_dict({**header, "counts": counts, "total": len(items)})
        )
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
    items = sorted(data.get("items", {}).values(), key=lambda it: it["n"])
    return dict(data["batch"]["1"]), items

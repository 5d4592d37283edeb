"""Batch outputs every recipe shares: ``manifest.json`` and ``manifest.csv``.

Written when a batch finishes (and on demand); each file is replaced atomically so
a reader never sees half a manifest.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from state.storage import atomic_write_bytes

MANIFEST_FIELDS = ("n", "source", "id", "title", "status", "stage", "attempts", "error", "workdir")


def manifest_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for it in items:
        err = it.get("error") or None
        rows.append(
            {
                "n": it["n"],
                "source": it["source"],
                "id": it.get("id"),
                "title": it.get("title"),
                "status": it["status"],
                "stage": it.get("stage"),
                "attempts": it.get("attempts", 0),
                "error": f"{err['type']}: {err['message']}" if err else None,
                "error_stage": err.get("stage") if err else None,
                "retryable": err.get("retryable") if err else None,
                "duration": it.get("duration"),
                "timings": it.get("timings") or {},
                "artifacts": it.get("artifacts") or {},
                "flags": it.get("flags") or [],
                "workdir": it.get("workdir"),
            }
        )
    return rows


def write_manifest(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
                   extra_path: Path | None = None) -> Path:
    """Write ``manifest.json``/``.csv`` into the batch folder (and a copy of the JSON at ``extra_path``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = manifest_rows(items)
    doc = {"batch": batch, "items": rows}
    payload = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    path = folder / "manifest.json"
    atomic_write_bytes(path, payload)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(folder / "manifest.csv", buf.getvalue().encode())
    if extra_path is not None:
        extra_path = Path(extra_path).expanduser()
        extra_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(extra_path, payload)
    return path

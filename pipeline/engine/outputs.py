"""Batch outputs every recipe shares: the manifest, the error report and the stats, then the recipe's own.

Written when a batch finishes (and on demand) into the batch folder, in this order: the
manifest, ``errors.md`` and ``stats.json`` first (cheap, most useful), then whatever the
batch's recipe adds through ``Recipe.outputs`` (the transcribe recipe's PDF, then its ZIP
last so it holds everything). Nothing here reads the store: the caller hands in the batch
header and item records, so a CLI, a page or a test can export the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.engine.archive import SECRET_NAME_PATTERNS, is_secret_file, write_zip, zip_members
from pipeline.engine.manifest import (
    MANIFEST_FIELDS,
    _dumps,
    _redact,
    batch_slug,
    batch_stats,
    llm_ledger,
    manifest_row,
    write_manifest,
)
from pipeline.engine.recipe import Outputs, Report, report_of
from pipeline.engine.report import DEFAULT_HINT, errors_markdown, hint_for
from state.storage import atomic_write_bytes

__all__ = [
    "DEFAULT_HINT", "MANIFEST_FIELDS", "SECRET_NAME_PATTERNS", "_redact", "batch_slug", "batch_stats",
    "errors_markdown", "export_batch", "hint_for", "is_secret_file", "llm_ledger", "manifest_row",
    "write_manifest", "write_zip", "zip_members",
]


def export_batch(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path, *,
                 extra_manifest: Path | None = None, extras: Outputs | None = None,
                 report: Report | None = None) -> dict[str, Path]:
    """Write every batch-level output into ``folder`` and return their paths by name.

    Keys: ``manifest``, ``manifest_csv``, ``errors``, ``stats``, ``extra_manifest`` when asked,
    and whatever ``extras`` (the recipe's outputs) wrote. ``report`` (default: the batch's
    recipe's) adds the recipe's manifest columns and errors.md sections.
    """
    report = report if report is not None else report_of(batch)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {"manifest": write_manifest(batch, items, folder, extra_manifest, report),
                            "manifest_csv": folder / "manifest.csv"}
    if extra_manifest is not None:
        out["extra_manifest"] = Path(extra_manifest).expanduser()
    out["errors"] = folder / "errors.md"
    atomic_write_bytes(out["errors"], errors_markdown(batch, items, folder, report).encode())
    out["stats"] = folder / "stats.json"
    atomic_write_bytes(out["stats"], _dumps(batch_stats(batch, items)))
    if extras is not None:
        out.update(extras(batch, items, folder, dict(out)))
    return out

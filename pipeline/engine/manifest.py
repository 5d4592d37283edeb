"""The manifest (``manifest.json``/``.csv``, one row per item with its files) and ``stats.json``.

Every text file is replaced atomically so a reader never sees half a manifest. Nothing
here reads the store: the caller hands in the batch header and item records.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pipeline.engine.recipe import NO_REPORT, Report, report_of
from pipeline.engine.stage import safe_name
from state.storage import atomic_files

log = logging.getLogger("pipeline")

MANIFEST_FIELDS = (
    "n", "source", "id", "title", "status", "stage", "attempts", "duration",
    "error_type", "error_message", "error_stage", "retryable", "flags",
)  # fmt: skip  (then the recipe's file_<kind> columns, workdir, and a t_<stage> column per stage)
_SECRET_KEY = re.compile(r"api[_-]?key|token|secret|passw(?:or)?d|cookie(?!_browsers)|credential|"
                         r"(?:^|[_-])auth(?:[_-]|$)|authorization|proxy|^user(?:name)?$|netrc", re.I)


# ---------------------------------------------------------------- small helpers


def batch_slug(batch: dict[str, Any]) -> str:
    """File-name stem for the batch's PDF and ZIP."""
    return safe_name(batch.get("name") or batch.get("id") or "", 60, "batch")


def _rel(path: str | os.PathLike[str] | None, folder: Path) -> str | None:
    """``path`` relative to ``folder`` (POSIX separators), or None when the file does not exist."""
    if not path:
        return None
    p = Path(path)
    if not p.is_file():
        return None
    return Path(os.path.relpath(p.resolve(), folder.resolve())).as_posix()


def _redact(obj: Any) -> Any:
    """Options may carry a key or cookie path by mistake; exports never repeat them."""
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v not in (None, "", False) else _redact(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact(v) for v in obj]
    return obj


def _num(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc, ensure_ascii=False, indent=1, default=str) + "\n").encode()


# ---------------------------------------------------------------- manifest


def _item_files(item: dict[str, Any], folder: Path, kinds: tuple[str, ...]) -> dict[str, str | None]:
    arts = item.get("artifacts") or {}
    workdir = Path(item["workdir"]) if item.get("workdir") else folder
    files: dict[str, str | None] = {}
    for name in (*kinds, *sorted(set(arts) - set(kinds))):
        p = arts.get(name)
        if p and not Path(p).is_absolute():
            p = workdir / p
        rel = _rel(p, folder)
        if rel is not None or name in kinds:
            files[name] = rel
    return files


def manifest_row(it: dict[str, Any], folder: Path, report: Report = NO_REPORT) -> dict[str, Any]:
    """One item record -> its manifest entry, file paths relative to ``folder`` (null where missing), with what
    the batch's recipe adds (``report``)."""
    wd = it.get("workdir")
    log_rel = _rel(Path(wd) / "log.txt", folder) if wd else None
    meta = {k: v for k, v in (it.get("meta") or {}).items()
            if isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 300)}
    return {
        "n": it.get("n"),
        "source": it.get("source"),
        "id": it.get("id"),
        "title": it.get("title"),
        "status": it.get("status"),
        "stage": it.get("stage"),
        "attempts": it.get("attempts", 0),
        "error": it.get("error") or None,
        "files": _item_files(it, folder, report.file_kinds),
        "log": log_rel,
        "duration": it.get("duration"),
        "timings": it.get("timings") or {},
        "flags": list(it.get("flags") or []),
        "meta": _redact(meta),
        "llm": llm_ledger(it),
        **(report.row(it) if report.row else {}),
        "workdir": Path(os.path.relpath(wd, folder)).as_posix() if wd else None,
    }


def llm_ledger(item: dict[str, Any]) -> dict[str, Any] | None:
    """Tokens and cost of an item's summary (realtime, or the Batch API at half price); None when offline."""
    meta = item.get("meta") or {}
    usage = meta.get("llm_usage") or {}
    if not usage and not meta.get("llm_cost_usd"):
        return None
    return {"mode": meta.get("llm_mode"), "model": meta.get("llm_model"),
            "input_tokens": int(usage.get("input_tokens") or 0), "output_tokens": int(usage.get("output_tokens") or 0),
            "cost_usd": float(meta.get("llm_cost_usd") or 0.0)}


def _csv_cell(v: Any) -> Any:
    """Titles come from the internet: neutralize spreadsheet formulas (``=cmd|…``) with a leading quote."""
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def _csv_row(r: dict[str, Any], kinds: tuple[str, ...]) -> dict[str, Any]:
    err = r.get("error") or {}
    flat = {k: r.get(k) for k in (*MANIFEST_FIELDS, "workdir") if k in r}
    flat.update(
        error_type=err.get("type"), error_message=err.get("message"), error_stage=err.get("stage"),
        retryable=err.get("retryable"), flags="; ".join(r.get("flags") or []),
        **{f"file_{k}": (r.get("files") or {}).get(k) for k in kinds},
        **{f"t_{s}": round(v, 3) for s, v in (r.get("timings") or {}).items() if _num(v) is not None},
    )
    return {k: _csv_cell(v) for k, v in flat.items()}


def _csv_fields(timing_keys: Iterable[str], stages: Sequence[str], kinds: tuple[str, ...]) -> list[str]:
    seen = list(dict.fromkeys([*stages, *timing_keys]))
    return [*MANIFEST_FIELDS, *(f"file_{k}" for k in kinds), "workdir", *(f"t_{s}" for s in seen)]


def write_manifest(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
                   extra_path: Path | None = None, report: Report | None = None) -> Path:
    """Write ``manifest.json``/``.csv`` into the batch folder (and a copy of the JSON at ``extra_path``).

    File paths in the manifest are relative to the batch folder. The copy at
    ``extra_path`` keeps them so (it is the same document, byte for byte, plus
    ``files_root`` naming the batch folder), so a script reading the copy joins
    ``files_root`` and a path.

    One pass over the items writes every file, one entry at a time: built whole, a
    7,000-item manifest (rows, then a string, then bytes) was what made a long batch's
    memory jump at its end (69 MB through the run, 105 MB while its outputs were written),
    and each entry checks its files on disk, so it is made once, not once per file.
    """
    report = report if report is not None else report_of(batch)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    roots = ["."]
    targets = [path, folder / "manifest.csv"]
    if extra_path is not None:
        extra_path = Path(extra_path).expanduser()
        extra_path.parent.mkdir(parents=True, exist_ok=True)
        roots.append(str(folder.resolve()))
        targets.append(extra_path)

    def nested(obj: Any, pad: str) -> str:
        return json.dumps(obj, ensure_ascii=False, indent=1, default=str).replace("\n", "\n" + pad)

    head = "{\n \"batch\": " + nested(_redact(dict(batch)), " ") + ",\n \"files_root\": "
    with atomic_files(*targets) as (json_file, csv_file, *extra):
        docs = [json_file, *extra]
        for f, root in zip(docs, roots, strict=True):
            f.write((head + json.dumps(root, ensure_ascii=False) + ",\n \"items\": [").encode())
        text = io.TextIOWrapper(csv_file, encoding="utf-8-sig", newline="", write_through=True)
        w = csv.DictWriter(text, fieldnames=_csv_fields((k for it in items for k in it.get("timings") or {}),
                                                        batch.get("recipe") or (), report.file_kinds),
                           extrasaction="ignore")
        w.writeheader()
        for i, it in enumerate(items):
            row = manifest_row(it, folder, report)
            entry = (("," if i else "") + "\n  " + nested(row, "  ")).encode()
            for f in docs:
                f.write(entry)
            w.writerow(_csv_row(row, report.file_kinds))
        text.flush()
        text.detach()  # the file is closed by atomic_files, after its fsync
        for f in docs:
            f.write(("\n ]\n}\n" if items else "]\n}\n").encode())
    return path


# ---------------------------------------------------------------- stats.json


def batch_stats(batch: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-stage busy time, mean and throughput from item timings; wall time, status counts, audio total.

    Throughput is items per hour of *busy* time (one worker's speed); comparing the sum of
    busy times with the wall time shows how much the pools overlapped.
    """
    order = list(batch.get("recipe") or [])
    busy: dict[str, float] = {}
    count: dict[str, int] = {}
    for it in items:
        for stage, secs in (it.get("timings") or {}).items():
            v = _num(secs)
            if v is None:
                continue
            busy[stage] = busy.get(stage, 0.0) + v
            count[stage] = count.get(stage, 0) + 1
    stages = {}
    for stage in dict.fromkeys([*(s for s in order if s in busy), *busy]):
        b, n = busy[stage], count[stage]
        stages[stage] = {
            "count": n,
            "busy_s": round(b, 3),
            "mean_s": round(b / n, 3) if n else None,
            "items_per_hour": round(n * 3600 / b, 2) if b > 0 else None,
        }
    by_status: dict[str, int] = {}
    for it in items:
        st = str(it.get("status") or "unknown")
        by_status[st] = by_status.get(st, 0) + 1
    created, finished = _num(batch.get("created_at")), _num(batch.get("finished_at"))
    wall = round(finished - created, 3) if created is not None and finished is not None else None
    durations = [d for d in (_num(it.get("duration")) for it in items) if d is not None]
    audio = round(sum(durations), 3) if durations else None
    return {
        "batch": {k: batch.get(k) for k in ("id", "name", "recipe")},
        "items": len(items),
        "by_status": by_status,
        "wall_s": wall,
        "busy_s": round(sum(busy.values()), 3),
        "audio_s": audio,
        "audio_items": len(durations),
        "audio_per_wall": round(audio / wall, 3) if audio and wall else None,
        "stages": stages,
        "llm": _llm_totals(items),
    }


def _llm_totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch's cost ledger: tokens and cost per summary mode."""
    totals: dict[str, dict[str, Any]] = {}
    for it in items:
        led = llm_ledger(it)
        if led is None:
            continue
        t = totals.setdefault(led["mode"] or "realtime", {"items": 0, "input_tokens": 0, "output_tokens": 0,
                                                           "cost_usd": 0.0})
        t["items"] += 1
        t["input_tokens"] += led["input_tokens"]
        t["output_tokens"] += led["output_tokens"]
        t["cost_usd"] = round(t["cost_usd"] + led["cost_usd"], 6)
    return {"by_mode": totals, "cost_usd": round(sum(t["cost_usd"] for t in totals.values()), 6)}



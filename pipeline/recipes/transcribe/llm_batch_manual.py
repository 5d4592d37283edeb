"""The four-step Batch API flow by hand: ``tubemill llm-batch prepare|submit|status|ingest``.

Summaries for items that are already finished (any batch), the way users ran it with four
scripts. State lives in ``<home>/llm-batches/<job>/state.json``, written after every step,
so each command is resumable and safe to run twice. The service that does the same for parked
items, unattended, is :class:`pipeline.recipes.transcribe.llm_batch.LLMBatchManager`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.llm import LLMConfig
from pipeline.recipes.transcribe.llm_batch_api import TERMINAL, BatchAPI
from pipeline.recipes.transcribe.llm_batch_lines import (
    BatchLimits,
    build_body,
    custom_id,
    request_line,
    split_lines,
    to_jsonl,
)
from pipeline.recipes.transcribe.llm_batch_results import batch_cost, parse_results
from pipeline.recipes.transcribe.summary import transcript_end

JOBS_DIR = "llm-batches"


def _jobs_root(home: Path) -> Path:
    return Path(home) / JOBS_DIR


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    from state.storage import atomic_write_bytes

    atomic_write_bytes(folder / "state.json", json.dumps(state, ensure_ascii=False, indent=1).encode())


def load_job(home: Path, name: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A prepared job by name, or the newest one."""
    root = _jobs_root(home)
    if name:
        folder = root / name
    else:
        found = sorted((p for p in root.glob("*/state.json")), key=lambda p: p.stat().st_mtime)
        if not found:
            raise errors.InvalidInput("no prepared LLM batch job; run `tubemill llm-batch prepare` first")
        folder = found[-1].parent
    try:
        return folder, json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise errors.InvalidInput(f"no LLM batch job named {folder.name!r}") from None


def prepare_job(home: Path, items: list[dict[str, Any]], config: LLMConfig, *, name: str | None = None,
                limits: BatchLimits | None = None, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """JSONL files for finished items without an LLM summary; items already in an open job are skipped."""
    root = _jobs_root(home)
    open_ids: set[str] = set()
    for st in root.glob("*/state.json"):
        prior = json.loads(st.read_text(encoding="utf-8"))
        if not all(f.get("ingested") for f in prior["files"]):
            open_ids |= set(prior["requests"])
    lines, requests = [], {}
    for it in items:
        wd = Path(it.get("workdir") or "")
        summary = wd / "summary.json"
        if not (wd / "transcript.json").exists():
            continue
        if summary.exists() and not force and json.loads(summary.read_text(encoding="utf-8")).get("engine") == "llm":
            continue
        transcript = json.loads((wd / "transcript.json").read_text(encoding="utf-8"))
        title = it.get("title") or it["source"]
        body = build_body(transcript, title, config)
        if body is None:
            continue
        cid = custom_id(it.get("batch_id", "x"), it["n"], "summarize", body)
        if cid in open_ids:
            continue
        lines.append(request_line(cid, body))
        requests[cid] = {"workdir": str(wd), "title": title, "end": transcript_end(transcript)}
    name = name or time.strftime("tag-%Y%m%d-%H%M%S")
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, part in enumerate(split_lines(lines, limits or BatchLimits()) if lines else [], start=1):
        path = folder / f"requests-{i:03d}.jsonl"
        path.write_bytes(to_jsonl(part))
        files.append({"path": path.name, "requests": len(part)})
    state = {"name": name, "model": config.model, "requests": requests, "files": files, "created_at": time.time()}
    _save_state(folder, state)
    return folder, state


def submit_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, Any]:
    """Upload and create what is not yet uploaded/created; ids are saved after each call."""
    for f in state["files"]:
        if not f.get("file_id"):
            f["file_id"] = api.upload(f"{state['name']}-{f['path']}", (folder / f["path"]).read_bytes())
            _save_state(folder, state)
        if not f.get("batch_id"):
            tag = f"{state['name']}/{f['path']}"
            found = api.find_by_job(tag)
            b = found or api.create(f["file_id"], {"tubemill_job": tag})
            f.update(batch_id=b.id, status=b.status)
            _save_state(folder, state)
    return state


def refresh_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, Any]:
    """Every open file's status, counts and result file ids from the API, saved (``tubemill llm-batch status``)."""
    for f in state["files"]:
        if f.get("batch_id") and not f.get("ingested"):
            b = api.retrieve(f["batch_id"])
            f.update(status=b.status, request_counts=b.request_counts.model_dump() if b.request_counts else None,
                     output_file_id=b.output_file_id, error_file_id=b.error_file_id)
    _save_state(folder, state)
    return state


def ingest_job(folder: Path, state: dict[str, Any], api: BatchAPI) -> dict[str, int]:
    """Write summaries for every finished file not yet ingested; failed lines are listed in the state."""
    from pipeline.recipes.transcribe.summary import write_summary
    from pipeline.recipes.transcribe.summary_model import SummaryResult

    refresh_job(folder, state, api)
    done = failed = 0
    for f in state["files"]:
        if f.get("ingested") or f.get("status") not in TERMINAL:
            continue
        out = api.content(f["output_file_id"]) if f.get("output_file_id") else ""
        err = api.content(f["error_file_id"]) if f.get("error_file_id") else ""
        ends = {cid: r["end"] for cid, r in state["requests"].items()}
        results = parse_results(out, err, ends, state["model"])
        failures = {}
        for line in (folder / f["path"]).read_text(encoding="utf-8").splitlines():
            cid = json.loads(line)["custom_id"]
            r, req = results.get(cid), state["requests"][cid]
            if r is not None and r.ok:
                usage = r.usage or {}
                res = SummaryResult(r.summary, usage, batch_cost(usage, api.config), state["model"], 1,
                                    [f"Batch API {f['batch_id']}"], outcome="repaired" if r.adjustments else "llm",
                                    adjustments=list(r.adjustments or []))
                write_summary(Path(req["workdir"]), req["title"], res, mode="batch")
                done += 1
            else:
                failures[cid] = r.error if r else f"no result (job {f.get('status')})"
                failed += 1
        f.update(ingested=True, failures=failures)
        _save_state(folder, state)
    return {"ingested": done, "failed": failed}

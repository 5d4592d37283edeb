"""What the Batch API service does to one parked item: read its request, write its result, send it elsewhere.

The summarize stage parks an item with its request in ``.llm_request.json``; from then on only
these moves touch it: its result written (and the item released to finish), another try in a
new job, realtime (a ``.llm_realtime`` marker the stage reads when released), or the offline
summary. Every path releases the item sooner or later, so nothing stays parked for good. The
service's loop (:class:`pipeline.recipes.transcribe.llm_batch.LLMBatchManager`) decides when.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.llm import LLMConfig
from pipeline.engine.stage import flag
from pipeline.recipes.transcribe.llm_batch_results import TRANSLATION_ID, LineResult, batch_cost

if TYPE_CHECKING:
    from pipeline.engine.core import Engine
    from state.store import Store

REQUEST_FILE = ".llm_request.json"
REALTIME_MARKER = ".llm_realtime"


def _store(engine: Engine) -> Store:
    store = engine.store
    assert store is not None  # the service runs only while the engine holds its store
    return store


def save_jobs(engine: Engine, bid: str, jobs: list[dict[str, Any]]) -> None:
    """Jobs are durable before the next network call: a restart resumes, never resubmits."""
    _store(engine).set_batch(bid, llm_jobs=jobs)
    _store(engine).flush()


def upstream(engine: Engine, bid: str, stage_index: int) -> int:
    """Items that may still reach the summarize stage (not finished, not parked)."""
    live = _store(engine).items(bid, status=["pending", "running", "waiting"])
    return sum(1 for it in live if int(it.get("stage_index") or 0) <= stage_index)


def request_of(engine: Engine, bid: str, n: int) -> dict[str, Any] | None:
    """The request the stage prepared for this item, or None (and the item released to prepare it again)."""
    item = _store(engine).item(bid, n)
    path = Path(item.get("workdir") or "") / REQUEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        engine.release(bid, n)  # the stage will prepare its request again
        return None


def to_realtime(engine: Engine, bid: str, n: int) -> None:
    """Released with the realtime marker: the stage summarizes it with a realtime call (and its fallbacks)."""
    item = _store(engine).item(bid, n)
    wd = Path(item.get("workdir") or "")
    if wd.is_dir():
        (wd / REALTIME_MARKER).write_text("1")
    engine.release(bid, n)


def offline(engine: Engine, bid: str, n: int, reason: str) -> None:
    """The item's summary becomes the offline fallback (with the reason) and the item goes on: never parked
    forever, never failed for want of a summary."""
    from pipeline.recipes.transcribe.summary import source_url, write_fallback

    item = _store(engine).item(bid, n)
    wd = Path(item.get("workdir") or "")
    try:
        transcript = json.loads((wd / "transcript.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        engine.release(bid, n)  # the stage runs again and finds what is missing
        return
    write_fallback(wd, item.get("title") or item["source"], transcript, reason, mode="batch",
                   source_url=source_url(item))
    engine.release(bid, n)


def retry_or_fail(engine: Engine, bid: str, n: int, why: str, retries: int) -> None:
    """A line that failed: once more in a new job, then realtime (or, with that off, the offline fallback)."""
    store = _store(engine)
    item = store.item(bid, n)
    meta = item.get("meta") or {}
    tries = int(meta.get("llm_batch_tries", 0)) + 1
    store.update_item(bid, n, meta={**meta, "llm_batch_tries": tries, "llm_batch_error": why})
    opts = store.header(bid).get("options", {})
    if tries <= retries:
        return  # stays parked; the next pass puts it in a new job
    if flag(opts.get("llm_fallback_realtime", True)):
        to_realtime(engine, bid, n)
    else:
        offline(engine, bid, n, f"Batch API: {why}")


def write_results(engine: Engine, bid: str, job: dict[str, Any], b: Any, results: Mapping[str, LineResult],
                  config: LLMConfig, retries: int) -> None:
    """A finished job's summary lines: a summary written for each good one, the others retried or sent on
    (translation chunks' lines are :func:`.llm_batch_translate.write_translations`' to ingest)."""
    from pipeline.recipes.transcribe.summary import source_url, write_summary
    from pipeline.recipes.transcribe.summary_model import SummaryResult

    store = _store(engine)
    for cid, n in job["items"].items():
        item = store.item(bid, n)
        if item["status"] != "parked" or TRANSLATION_ID.search(cid):
            continue
        r = results.get(cid)
        if r is not None and r.ok:
            usage = r.usage or {"input_tokens": 0, "output_tokens": 0}
            result = SummaryResult(r.summary, usage, batch_cost(usage, config), config.model, 1,
                                   [f"Batch API {b.id}"], outcome="repaired" if r.adjustments else "llm",
                                   adjustments=list(r.adjustments or []))
            write_summary(Path(item["workdir"]), item.get("title") or item["source"], result, mode="batch",
                          source_url=source_url(item))
            engine.release(bid, n)
            continue
        why = r.error if r is not None else f"no result: the Batch API job ended {b.status}" + (
            f" ({job['failure']})" if job.get("failure") else "")
        retry_or_fail(engine, bid, n, why, retries)

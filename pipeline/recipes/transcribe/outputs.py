"""The transcribe recipe's own batch outputs and actions: the combined PDF and the ZIP, and
"retry summaries" (reopen the items whose summary fell back, at the summarize stage)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from pipeline.engine.outputs import batch_slug, write_zip
from pipeline.engine.recipe import Reopen

log = logging.getLogger("pipeline")


def outputs(batch: dict[str, Any], items: list[dict[str, Any]], folder: Path,
            written: dict[str, Path], *, pdf: bool = True) -> dict[str, Path]:
    """The PDF of every transcript and summary, then the ZIP of the folder (last, so it holds the PDF)."""
    from pipeline.recipes.transcribe.pdf import write_pdf

    slug = batch_slug(batch)
    out: dict[str, Path] = {}
    if pdf:
        t0 = time.perf_counter()
        out["pdf"] = write_pdf(batch, items, folder / f"{slug}.pdf")
        log.info("export: %s written in %.1f s", out["pdf"].name, time.perf_counter() - t0)
    ours = [p for k, p in {**written, **out}.items() if k != "extra_manifest"]
    out["zip"] = write_zip(folder, folder / f"{slug}.zip", ours=ours)
    return out


def _forget_endpoint_failures() -> None:
    from pipeline.common import llmcall

    llmcall.clear_down()  # the user says the endpoint works now: ask it, do not trust the last failure


def retry_summaries() -> Reopen:
    from pipeline.recipes.transcribe import llm_batch
    from pipeline.recipes.transcribe.stages.summarize import FLAGS, SUMMARY_JSON, SUMMARY_MD

    return Reopen(flag=FLAGS["fallback"], stage="summarize",
                  remove=(SUMMARY_JSON, SUMMARY_MD, llm_batch.REQUEST_FILE, llm_batch.REALTIME_MARKER),
                  before=_forget_endpoint_failures, note="summary retry requested (transcript kept)")

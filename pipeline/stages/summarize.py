"""summarize: TL;DR, key points, chapters and tags → ``summary.json`` + ``summary.md``.

With an OpenAI-compatible endpoint (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; also
Ollama, vLLM, llama.cpp servers) the LLM writes it through a pydantic-checked schema;
without one, an offline extractive summary: no network, no error. Token usage and
estimated cost land in the item's meta (never the key).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.stages import register
from pipeline.stages.base import Stage, StageContext, StageResult
from state.storage import atomic_write_bytes

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def write_summary(workdir: Path, title: str, result: Any, mode: str) -> None:
    """summary.json (with usage and cost) and summary.md; shared by realtime and Batch API ingest."""
    from pipeline.formats import summary_markdown

    summary = result.summary.model_dump()
    doc = {**summary, "usage": result.usage, "cost_usd": result.cost_usd, "mode": mode, "notes": result.notes}
    atomic_write_bytes(workdir / SUMMARY_JSON, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    atomic_write_bytes(workdir / SUMMARY_MD, summary_markdown(title, summary).encode())


def _meta_of(out_json: Path) -> dict[str, Any]:
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    meta = {"summary_engine": doc.get("engine"), "tags": doc.get("tags", []), "llm_usage": doc.get("usage") or {},
            "llm_cost_usd": round(float(doc.get("cost_usd") or 0.0), 6), "llm_mode": doc.get("mode")}
    if doc.get("model"):
        meta["llm_model"] = doc["model"]
    return meta


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline import llm, llm_batch, secrets

    out_json, out_md = ctx.path(SUMMARY_JSON), ctx.path(SUMMARY_MD)
    artifacts = {"summary": str(out_md), "summary_json": str(out_json)}
    if out_json.exists() and out_md.exists():  # done before, or ingested from the Batch API
        return StageResult(artifacts=artifacts, meta=_meta_of(out_json))
    tr_path = ctx.path("transcript.json")
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to summarize yet")
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))
    title = item.get("title") or item["source"]
    mode = ctx.options.get("summarizer", "auto")
    # The key: the environment, else the Settings page's 0600 file; it only ever lives in memory here.
    config = secrets.llm_config_for(ctx.home, options=ctx.options)
    if mode == "llm" and not config.configured():
        raise errors.ConfigError("--summarizer llm needs OPENAI_API_KEY or OPENAI_BASE_URL")
    if mode == "offline" or (mode == "auto" and not config.configured()):
        write_summary(ctx.workdir, title, llm.summarize_offline(transcript, title), mode="offline")
        return StageResult(artifacts=artifacts, meta=_meta_of(out_json))
    realtime_forced = (ctx.workdir / llm_batch.REALTIME_MARKER).exists() or (
        ctx.workdir.parent / llm_batch.REALTIME_MARKER).exists()
    if ctx.options.get("llm_mode_effective") == "batch" and not realtime_forced:
        body = llm_batch.build_body(transcript, title, config)
        if body is not None:  # else too long for one request: realtime map-reduce below
            cid = llm_batch.custom_id(ctx.batch_id, ctx.item_n, ctx.stage, body)
            req = {"custom_id": cid, "body": body, "end": llm.transcript_end(transcript)}
            atomic_write_bytes(ctx.path(llm_batch.REQUEST_FILE), json.dumps(req, ensure_ascii=False).encode())
            raise llm_batch.AwaitLLMBatch("waiting for the Batch API")
    write_summary(ctx.workdir, title, llm.summarize(transcript, title, config), mode="realtime")
    return StageResult(artifacts=artifacts, meta=_meta_of(out_json))


register(Stage("summarize", run, resource="llm", doc="LLM or offline extractive summary and tags"))

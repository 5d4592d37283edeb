"""summarize: TL;DR, key points, chapters and tags → ``summary.json`` + ``summary.md``.

With an OpenAI-compatible endpoint (``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; also
Ollama, vLLM, llama.cpp servers) the LLM writes it through a pydantic-checked schema;
without one, an offline extractive summary: no network, no error. Token usage and
estimated cost land in the item's meta (never the key).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import errors
from pipeline.stages import register
from pipeline.stages.base import Stage, StageContext, StageResult
from state.storage import atomic_write_bytes

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline import llm
    from pipeline.formats import summary_markdown

    out_json, out_md = ctx.path(SUMMARY_JSON), ctx.path(SUMMARY_MD)
    if out_json.exists() and out_md.exists():
        return StageResult(artifacts={"summary": str(out_md), "summary_json": str(out_json)})
    tr_path = ctx.path("transcript.json")
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to summarize yet")
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))
    title = item.get("title") or item["source"]
    mode = ctx.options.get("summarizer", "auto")
    from pipeline import secrets

    # The key: the environment, else the Settings page's 0600 file; it only ever lives in memory here.
    from pipeline.settings import load_settings

    settings = load_settings(ctx.home)
    config = llm.LLMConfig.from_env(model=ctx.options.get("llm_model") or settings.llm_model or None,
                                    base_url=ctx.options.get("llm_base_url") or settings.llm_base_url or None,
                                    api_key=secrets.llm_api_key(ctx.home))
    if mode == "llm" and not config.configured():
        raise errors.ConfigError("--summarizer llm needs OPENAI_API_KEY or OPENAI_BASE_URL")
    if mode == "offline" or (mode == "auto" and not config.configured()):
        result = llm.summarize_offline(transcript, title)
    else:
        result = llm.summarize(transcript, title, config)
    summary = result.summary.model_dump()
    atomic_write_bytes(out_json, json.dumps({**summary, "usage": result.usage, "cost_usd": result.cost_usd,
                                            "notes": result.notes}, ensure_ascii=False, indent=1).encode())
    atomic_write_bytes(out_md, summary_markdown(title, summary).encode())
    meta = {"summary_engine": summary["engine"], "tags": summary["tags"], "llm_usage": result.usage,
            "llm_cost_usd": round(result.cost_usd, 6)}
    if result.model:
        meta["llm_model"] = result.model
    return StageResult(artifacts={"summary": str(out_md), "summary_json": str(out_json)}, meta=meta)


register(Stage("summarize", run, resource="llm", doc="LLM or offline extractive summary and tags"))

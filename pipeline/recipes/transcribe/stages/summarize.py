"""summarize: TL;DR, key points, chapters and tags → ``summary.json`` + ``summary.md``.

An enrichment: it never costs the item. The transcript files are on disk before this
stage runs (the transcript stages write them), and every way an LLM can fail ends in
one of three outcomes, recorded in ``summary.json``, the item's meta and its flags:

- ``llm``: the model's summary, as asked;
- ``repaired``: the model's summary with soft rules normalised (flag ``summary-repaired``,
  ``adjustments`` says what);
- ``fallback``: the offline extractive summary because the LLM could not give one (flag
  ``summary-fallback``, ``reason``: endpoint unreachable, key refused, answer invalid
  after re-asks, context too long…). ``tubemill retry-summaries BATCH`` asks again.

``offline`` (no LLM configured, or ``--summarizer offline``) is a choice, not a flag.
Transient trouble (a 5xx, a 429, a dropped connection) is retried by the runner a few
times first (``summary_retries``, default 2); an endpoint that refuses connections or
the key is remembered for a short while (``llmcall.mark_down``), so the rest of the
batch falls back at once instead of each item finding out on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import summary
from pipeline.recipes.transcribe.options import options_of
from pipeline.recipes.transcribe.summary import (
    SUMMARY_JSON,
    SUMMARY_MD,
    source_url,
    write_fallback,
    write_summary,
)
from state.storage import atomic_write_bytes

if TYPE_CHECKING:
    from pipeline.common.llm import LLMConfig

log = logging.getLogger("tubemill.summarize")

FLAGS = {"repaired": "summary-repaired", "fallback": "summary-fallback"}


class LLMRetry(errors.RetryableError):
    """A transient LLM failure the runner should retry (not before ``retry_after`` when the server said so)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def outcome_meta(doc: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    """Item meta and flags from a ``summary.json`` document (flags of an earlier outcome replaced)."""
    outcome = doc.get("outcome") or ("llm" if doc.get("engine") == "llm" else "offline")
    meta: dict[str, Any] = {"summary_engine": doc.get("engine"), "tags": doc.get("tags", []),
                            "llm_usage": doc.get("usage") or {},
                            "llm_cost_usd": round(float(doc.get("cost_usd") or 0.0), 6), "llm_mode": doc.get("mode"),
                            "summary_outcome": outcome, "summary_reason": doc.get("reason"),
                            "summary_adjustments": list(doc.get("adjustments") or [])}
    if doc.get("model"):
        meta["llm_model"] = doc["model"]
    kept = [f for f in flags if f not in FLAGS.values()]
    if outcome in FLAGS:
        kept.append(FLAGS[outcome])
    meta["flags"] = sorted(set(kept))
    return meta


def _meta_of(out_json: Path, item: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(out_json.read_text(encoding="utf-8"))
    return outcome_meta(doc, list(item.get("flags") or []))


def fallback_reason(exc: BaseException) -> str:
    """What a user should read about why the LLM gave no summary (no key, no URL with credentials)."""
    from pipeline.common.llmcall import InvalidAnswer

    msg = str(exc)
    low = msg.lower()
    if isinstance(exc, errors.AuthFailed):
        return f"the endpoint refused the API key ({msg})"
    if isinstance(exc, errors.RateLimited):
        return f"the endpoint kept rate-limiting (HTTP 429): {msg}"
    if isinstance(exc, errors.NetworkError):
        return f"endpoint unreachable or failing: {msg}"
    if isinstance(exc, InvalidAnswer):
        return f"answer invalid after re-asks: {msg}"
    if "context" in low and ("length" in low or "window" in low or "too long" in low or "maximum" in low):
        return f"context too long for the model: {msg}"
    if isinstance(exc, errors.ConfigError):
        return msg
    return f"{type(exc).__name__}: {msg}"


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.common import llmcall
    from pipeline.config import secrets
    from pipeline.recipes.transcribe.stages.export import ensure_transcript_files

    out_json, out_md = ctx.path(SUMMARY_JSON), ctx.path(SUMMARY_MD)
    artifacts = {"summary": str(out_md), "summary_json": str(out_json)}
    if out_json.exists() and out_md.exists():  # done before, or ingested from the Batch API
        return StageResult(artifacts=artifacts, meta=_meta_of(out_json, item))
    tr_path = ctx.path("transcript.json")
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to summarize yet")
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))
    ensure_transcript_files(item, ctx, transcript)  # batches started before this guarantee get them here
    title = item.get("title") or item["source"]
    url = source_url(item)
    opts = options_of(ctx)
    mode = opts.summarizer
    # The key: the environment, else the Settings page's 0600 file; it only ever lives in memory here. The
    # model and server: the batch's, else the engine's live settings (settings.toml is not read again here).
    config = secrets.llm_config_for(ctx.home, settings=ctx.settings, options=opts.llm_options())

    def done() -> StageResult:
        return StageResult(artifacts=artifacts, meta=_meta_of(out_json, item))

    def fallback(reason: str, **kw: Any) -> StageResult:
        write_fallback(ctx.workdir, title, transcript, reason, source_url=url, **kw)
        return done()

    if mode == "offline" or (mode == "auto" and not config.configured()):
        write_summary(ctx.workdir, title, summary.summarize_offline(transcript, title), mode="offline",
                      source_url=url)
        return done()
    if not config.configured():
        return fallback("no LLM configured: --summarizer llm needs OPENAI_API_KEY or OPENAI_BASE_URL "
                        "(or a key on the Settings page)")
    down = llmcall.down_reason(config.base_url) or llmcall.down_reason(llmcall.server_key(config.base_url,
                                                                                        config.model))
    if down:
        return fallback(down)
    _queue_for_batch_api(ctx, transcript, title, config)
    failed = _summarize_now(ctx, transcript, title, config, url, fallback)
    return failed if failed is not None else done()


def _queue_for_batch_api(ctx: StageContext, transcript: dict[str, Any], title: str, config: LLMConfig) -> None:
    """In Batch API mode, write this item's request and raise ``AwaitLLMBatch`` (the item is parked until the
    batch's results are ingested); return when the summary is to be asked for now instead (realtime mode, a
    realtime marker, or a transcript too long for one request: realtime map-reduce)."""
    from pipeline.recipes.transcribe import llm_batch

    realtime_forced = (ctx.workdir / llm_batch.REALTIME_MARKER).exists() or (
        ctx.workdir.parent / llm_batch.REALTIME_MARKER).exists()
    if options_of(ctx).llm_mode_effective == "batch" and not realtime_forced:
        body = llm_batch.build_body(transcript, title, config, home=ctx.home)
        if body is not None:  # else too long for one request: realtime map-reduce below
            cid = llm_batch.custom_id(ctx.batch_id, ctx.item_n, ctx.stage, body)
            req = {"custom_id": cid, "body": body, "end": summary.transcript_end(transcript)}
            atomic_write_bytes(ctx.path(llm_batch.REQUEST_FILE), json.dumps(req, ensure_ascii=False).encode())
            raise llm_batch.AwaitLLMBatch("waiting for the Batch API")


def _summarize_now(ctx: StageContext, transcript: dict[str, Any], title: str, config: LLMConfig, url: str | None,
                   fallback: Callable[..., StageResult]) -> StageResult | None:
    """The realtime summary, written to the workdir (``None``: the caller reads the outcome back), else
    ``fallback``'s result with the reason. Transient trouble is raised as :class:`LLMRetry` while
    ``summary_retries`` allows; an endpoint that refuses connections or the key is marked down."""
    from pipeline.common import llm, llmcall

    try:
        result = summary.summarize(transcript, title, config, home=ctx.home)
    except errors.Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - an enrichment never fails the item; the reason is kept and shown
        reason = llm_failure(exc, ctx, config, "summary")
        if isinstance(exc, llmcall.InvalidAnswer):
            return fallback(reason, usage=exc.usage, cost=llm.cost_usd(exc.usage, config)[0])
        return fallback(reason)
    llmcall.note_answer(config.base_url, config.model, usable=True)
    write_summary(ctx.workdir, title, result, mode="realtime", source_url=url)
    return None


def llm_failure(exc: Exception, ctx: StageContext, config: LLMConfig, what: str) -> str:
    """The one rule for a realtime LLM request that failed (a summary, a translation): the reason to record,
    after what the failure teaches. An answer that breaks the format counts against the model; transient
    trouble (a network error, a 429) is raised as :class:`LLMRetry` while ``summary_retries`` allows; an
    endpoint that refuses connections, or a refused key, is marked down for the rest of the batch."""
    from pipeline.common import llmcall

    if isinstance(exc, llmcall.InvalidAnswer):
        llmcall.note_answer(config.base_url, config.model, usable=False)
    elif isinstance(exc, errors.NetworkError | errors.RateLimited):
        refused = _refused(exc.__cause__)
        if refused:
            llmcall.mark_down(config.base_url, fallback_reason(exc))
        if ctx.attempt <= options_of(ctx).summary_retries and not (refused and ctx.attempt > 1):
            raise LLMRetry(f"{what}: {exc}", retry_after=getattr(exc, "retry_after", None)) from exc
    elif isinstance(exc, errors.AuthFailed):
        llmcall.mark_down(config.base_url, fallback_reason(exc), seconds=llmcall.AUTH_DOWN_FOR_S)
    else:
        log.debug("%s failed", what, exc_info=True)
    return fallback_reason(exc)


def _refused(cause: BaseException | None) -> bool:
    """Nothing listening (or DNS gone), as opposed to a slow answer: only that marks the endpoint down."""
    import openai

    return isinstance(cause, openai.APIConnectionError) and not isinstance(cause, openai.APITimeoutError)


register(Stage("summarize", run, resource="llm", doc="LLM or offline extractive summary and tags"))

"""translate: ``--translate-to LANG`` → ``transcript.<lang>.json/.txt/.srt/.vtt`` through the LLM, same timing.

An enrichment, like the summary: the transcript is on disk before this stage runs and nothing
here can cost the item. Outcomes, in the item's meta (``translation_outcome``) and flags:

- ``llm``: every segment translated; ``repaired``: some answer dropped or merged segments and
  was asked again (flag ``translation-repaired``, ``translation_adjustments`` says what);
- ``partial``: some segments kept their original text (flag ``translation-failed``: a retry asks
  only those); ``failed``: no translation, with ``translation_reason`` (flag ``translation-failed``);
- ``offline``: no LLM configured — the note says how to set one (flag ``translation-failed``, so
  ``retry_translations`` asks once a key or server is set); ``same``: already in that language.

Without ``translate_to`` the stage does nothing (``measured=False``: its zero seconds say nothing
about translating). Transient trouble is retried by the runner (``summary_retries``) and each
retry pays only for the chunks not translated yet. With ``--llm-mode batch`` the chunks go to the
Batch API first (:mod:`..llm_batch_translate`: the item parks, the answers fill the cache at the
Batch price, then this stage writes the same files); what it could not give is asked realtime.
Tokens and cost go to ``translation_usage`` / ``translation_cost_usd`` and are added to the item's
``llm_usage`` / ``llm_cost_usd`` (the manifest's ledger), on top of the summary's own, read from
``summary.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.transcribe import translate as tr
from pipeline.recipes.transcribe.options import options_of

log = logging.getLogger("tubemill.translate")

def _summary_spend(workdir: Path) -> tuple[dict[str, int], float]:
    """What the summary spent (its own ``summary.json``), so the ledger's sum never counts a translation twice."""
    try:
        doc = json.loads((workdir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, 0.0
    usage = doc.get("usage") or {}
    return ({k: int(usage.get(k) or 0) for k in ("input_tokens", "output_tokens")},
            float(doc.get("cost_usd") or 0.0))


def outcome_meta(item: dict[str, Any], workdir: Path, lang: str, outcome: str, *, reason: str | None = None,
                 usage: dict[str, int] | None = None, cost: float = 0.0, model: str | None = None,
                 adjustments: list[str] | None = None, missing: list[int] | None = None,
                 mode: str | None = None) -> dict[str, Any]:
    """The item's meta and flags for a translation outcome (the flags of an earlier outcome replaced).

    ``mode="batch"`` (answers from the Batch API) with a summary that spent nothing files the item's
    spend under ``batch`` in the ledger, not under the summary's ``offline``."""
    usage = {k: int((usage or {}).get(k) or 0) for k in ("input_tokens", "output_tokens")}
    meta: dict[str, Any] = {"translation_lang": lang, "translation_outcome": outcome, "translation_reason": reason,
                            "translation_adjustments": list(adjustments or []), "translation_usage": usage,
                            "translation_cost_usd": round(cost, 6), "translation_missing": len(missing or [])}
    if model:
        meta["translation_model"] = model
    s_usage, s_cost = _summary_spend(workdir)
    if any(usage.values()) or cost:
        meta["llm_usage"] = {k: s_usage.get(k, 0) + usage[k] for k in usage}
        meta["llm_cost_usd"] = round(s_cost + cost, 6)
        if mode == "batch" and not any(s_usage.values()) and not s_cost:
            meta["llm_mode"] = "batch"
    flags = [f for f in item.get("flags") or [] if f not in tr.FLAGS.values()]
    if outcome in ("failed", "partial", "offline"):
        flags.append(tr.FLAGS["failed"])
    elif outcome == "repaired":
        flags.append(tr.FLAGS["repaired"])
    meta["flags"] = sorted(set(flags))
    return meta


def _from_file(item: dict[str, Any], ctx: StageContext, lang: str, path: Path) -> StageResult | None:
    """An earlier run's complete translation into ``lang``: reused, not asked again."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    info = doc.get("translation") or {}
    if info.get("lang") != lang or info.get("outcome") not in ("llm", "repaired"):
        return None
    names = tr.file_names(lang)
    if not all(ctx.path(n).exists() for n in names.values()):
        return None
    meta = outcome_meta(item, ctx.workdir, lang, info["outcome"], usage=info.get("usage"),
                        cost=float(info.get("cost_usd") or 0.0), model=info.get("model"),
                        adjustments=info.get("adjustments"), mode=info.get("mode"))
    return StageResult(artifacts={f"translation_{k}": str(ctx.path(n)) for k, n in names.items()}, meta=meta,
                       measured=False)


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    from pipeline.common import llmcall
    from pipeline.config import secrets

    opts = options_of(ctx)
    lang = (opts.translate_to or "").strip()
    if not lang:
        return StageResult(measured=False)
    tr_path = ctx.path("transcript.json")
    if not tr_path.exists():
        raise errors.RetryableError("no transcript to translate yet")
    names = tr.file_names(lang)
    earlier = _from_file(item, ctx, lang, ctx.path(names["json"]))
    if earlier is not None:
        return earlier
    transcript = json.loads(tr_path.read_text(encoding="utf-8"))

    def ended(outcome: str, reason: str | None = None, **kw: Any) -> StageResult:
        if reason:
            log.warning("translation of %r into %s: %s: %s", item.get("title") or item["source"], lang, outcome,
                        reason)
        return StageResult(meta=outcome_meta(item, ctx.workdir, lang, outcome, reason=reason, **kw), measured=False)

    if tr.same_language(transcript, lang):
        return ended("same", f"the transcript is already in {lang}: nothing to translate")
    config = secrets.llm_config_for(ctx.home, settings=ctx.settings, options=opts.llm_options())
    if not config.configured():
        return ended("offline", tr.NEEDS_LLM)
    down = llmcall.down_reason(config.base_url) or llmcall.down_reason(llmcall.server_key(config.base_url,
                                                                                        config.model))
    cache = tr.Cache(ctx.path(tr.cache_name(lang)), lang)
    if down:
        return ended("failed", down, usage=cache.usage, cost=cache.cost)
    if opts.llm_mode_effective == "batch":  # parks the item until the Batch API's answers are in the cache
        from pipeline.recipes.transcribe import llm_batch
        from pipeline.recipes.transcribe.llm_batch_translate import prepare_for_batch

        waiting = prepare_for_batch(ctx, transcript, lang, config, cache)
        if waiting:
            raise llm_batch.AwaitLLMBatch(waiting)
    final = cache.batch.pop("final", None)  # the Batch API gave what it could, realtime is off: ask no more
    if final:
        cache.save()  # used once: a later retry_translations asks again
    try:
        result = tr.translate(transcript, lang, config, cache=cache, home=ctx.home, progress=ctx.progress,
                              cancelled=ctx.cancelled, ask_llm=not final)
    except errors.Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - an enrichment never fails the item; the reason is kept and shown
        from pipeline.recipes.transcribe.stages.summarize import llm_failure

        # The summary's rules (retry transient trouble; an endpoint or key refused is marked down); the cache
        # keeps the chunks already in for the retry.
        return ended("failed", llm_failure(exc, ctx, config, "translation"), usage=cache.usage, cost=cache.cost,
                     model=config.model)
    if final and not any(s.get("text") and not s.get("untranslated") for s in result.transcript["segments"]):
        return ended("failed", str(final), usage=cache.usage, cost=cache.cost, model=config.model)
    llmcall.note_answer(config.base_url, config.model, usable=True)
    by_batch = bool(cache.batch.get("jobs"))
    mode = "batch+realtime" if by_batch and result.chunks else "batch" if by_batch else "realtime"
    try:
        artifacts = tr.write_files(ctx.workdir, lang, result, mode=mode)
    except OSError as exc:  # a full disk costs the translation (kept in the cache for a retry), not the item
        return ended("failed", f"cannot write the translation: {exc}", usage=result.usage, cost=result.cost_usd,
                     model=result.model)
    meta = outcome_meta(item, ctx.workdir, lang, result.outcome, usage=result.usage, cost=result.cost_usd,
                        model=result.model, adjustments=result.adjustments, missing=result.missing,
                        mode=mode,
                        reason=(f"{len(result.missing)} segment(s) could not be translated"
                                + (f" ({final})" if final else "") if result.missing else None))
    return StageResult(artifacts=artifacts, meta=meta, measured=bool(result.chunks))


register(Stage("translate", run, resource="llm", doc="--translate-to: the LLM's translation, same timing"))

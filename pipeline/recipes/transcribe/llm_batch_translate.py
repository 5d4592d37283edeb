"""``--translate-to`` through the Batch API: one request line per chunk, ingested into the translation cache.

In batch mode the translate stage asks :func:`prepare_for_batch` for the chunks its realtime loop
would send (the same :func:`translate.pending` split, the same prompt, schema and ladder rung), writes
them as one line each into ``.llm_request.translate.json`` and parks the item. The Batch API
service (:mod:`.llm_batch`) sends those lines with the summaries' (custom ids
``tm-<batch>-<item>-translate-<chunk>-<digest>``) and, once a job ends, :func:`write_translations`
puts every usable answer into ``translation.<lang>.cache.json`` at the Batch price and releases the
item: the stage runs again, finds every chunk cached and writes the files exactly as realtime does.
A batch answer cannot be re-asked, so what is still missing (a failed or expired line, a dropped
segment) goes out once more in a new job, then realtime (paying only for what is missing), or,
with ``llm_fallback_realtime`` off, stays in the original language with the reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.llm import LLMConfig
from pipeline.engine.stage import flag
from pipeline.recipes.transcribe import translate as tr
from pipeline.recipes.transcribe.llm_batch_results import TRANSLATION_ID, LineResult, batch_cost
from state.storage import atomic_write_bytes

if TYPE_CHECKING:
    from pipeline.engine.core import Engine
    from pipeline.engine.stage import StageContext

TRANSLATE_REQUEST = ".llm_request.translate.json"
STAGE = "translate"


def custom_id(batch_id: str, n: int, chunk: int, body: Mapping[str, Any]) -> str:
    """Stable and unique within a job: batch, item, stage and chunk index, plus a digest of the body."""
    digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"tm-{batch_id}-{n}-{STAGE}-{chunk}-{digest}"


def is_translation_id(cid: str) -> bool:
    """A translation chunk's line (its answer is a segments object, not a summary)."""
    return bool(TRANSLATION_ID.search(cid))


def chunk_body(segments: list[Mapping[str, Any]], ids: list[int], lang: str, config: LLMConfig,
               home: Path | None = None) -> dict[str, Any]:
    """The chat-completions body a realtime call would send for this chunk (rung, schema, token cap)."""
    from pipeline.common.llm import count_tokens
    from pipeline.common.llm_ladder import capability, response_format, system_prompt

    cap = capability(home, config.base_url, config.model)
    body: dict[str, Any] = {"model": config.model, "messages": [
        {"role": "system", "content": system_prompt(cap.rung, tr.SYSTEM_PROMPT, tr.WIRE_SCHEMA)},
        {"role": "user", "content": tr.prompt(segments, ids, lang)}]}
    if "max_tokens" not in cap.drop_params:
        src_tokens = sum(count_tokens(" ".join(str(segments[i].get("text") or "").split()), config.model)
                         for i in ids)
        body[cap.tokens_param] = min(16000, 3 * src_tokens + 12 * len(ids) + 200)  # as the realtime loop
    fmt = response_format(cap.rung, "translation", tr.WIRE_SCHEMA)
    if fmt is not None:
        body["response_format"] = fmt
    if config.temperature is not None and "temperature" not in cap.drop_params:
        body["temperature"] = config.temperature
    return body


def realtime_forced(workdir: Path) -> bool:
    """The service sent this item (or the whole batch) to realtime: no more parking for the Batch API."""
    from pipeline.recipes.transcribe.llm_batch_items import REALTIME_MARKER

    return (workdir / REALTIME_MARKER).exists() or (workdir.parent / REALTIME_MARKER).exists()


def prepare_for_batch(ctx: StageContext, transcript: Mapping[str, Any], lang: str, config: LLMConfig,
                      cache: tr.Cache) -> str | None:
    """Write this item's chunk requests and return the reason to park it with; None when nothing is left to
    ask (every chunk in the cache: the stage writes the files) or the Batch API is not to be used for it."""
    if realtime_forced(ctx.workdir) or cache.batch.get("final"):
        return None
    segments, _, chunks = tr.pending(transcript, cache, model=config.model)
    if not chunks:
        return None
    lines = []
    for k, ids in enumerate(chunks):
        body = chunk_body(segments, ids, lang, config, ctx.home)
        lines.append({"custom_id": custom_id(ctx.batch_id, ctx.item_n, k, body), "body": body, "ids": ids})
    req = {"lang": lang, "lines": lines}
    atomic_write_bytes(ctx.path(TRANSLATE_REQUEST), json.dumps(req, ensure_ascii=False).encode())
    return f"waiting for the Batch API (translation, {len(lines)} chunk(s))"


def requests_of(engine: Engine, bid: str, n: int) -> list[dict[str, Any]]:
    """A parked item's request lines, whichever stage parked it (``[]``: released to prepare them again)."""
    from pipeline.recipes.transcribe.llm_batch_items import request_of

    store = engine.store
    assert store is not None
    item = store.item(bid, n)
    if item.get("stage") != STAGE:
        req = request_of(engine, bid, n)
        return [req] if req is not None else []
    try:
        doc = json.loads((Path(item.get("workdir") or "") / TRANSLATE_REQUEST).read_text(encoding="utf-8"))
        return [{"custom_id": ln["custom_id"], "body": ln["body"]} for ln in doc["lines"]]
    except (OSError, ValueError, KeyError, TypeError):
        engine.release(bid, n)
        return []


def batch_stage_index(header: Mapping[str, Any]) -> int:
    """The last stage that may park for the Batch API: the service waits until no item can still reach it,
    so a batch's requests go out as one job, not one per item."""
    recipe = list(header.get("recipe") or [])
    want = STAGE if (header.get("options") or {}).get("translate_to") and STAGE in recipe else "summarize"
    return recipe.index(want) if want in recipe else 0


def without_llm(engine: Engine, bid: str, n: int, reason: str) -> None:
    """A parked item goes on without the LLM: a summary becomes the offline fallback, a translation keeps what
    its cache holds; the reason is said either way."""
    from pipeline.recipes.transcribe.llm_batch_items import offline

    store = engine.store
    assert store is not None
    item = store.item(bid, n)
    if item.get("stage") != STAGE:
        offline(engine, bid, n, reason)
        return
    wd = Path(item.get("workdir") or "")
    lang = str((store.header(bid).get("options") or {}).get("translate_to") or "").strip()
    if lang and wd.is_dir():
        cache = tr.Cache(wd / tr.cache_name(lang), lang)
        cache.batch["final"] = reason
        cache.save()
    engine.release(bid, n)


def write_translations(engine: Engine, bid: str, job: dict[str, Any], b: Any, results: Mapping[str, LineResult],
                       config: LLMConfig, retries: int) -> None:
    """A finished job's translation lines: usable answers into each item's cache at the Batch price; an item
    with everything in is released to write its files, one with something missing tries again."""
    store = engine.store
    assert store is not None
    by_item: dict[int, list[str]] = {}
    for cid, n in job["items"].items():
        if is_translation_id(cid):
            by_item.setdefault(int(n), []).append(cid)
    for n, cids in by_item.items():
        item = store.item(bid, n)
        if item["status"] != "parked" or item.get("stage") != STAGE:
            continue
        wd = Path(item.get("workdir") or "")
        try:
            req = json.loads((wd / TRANSLATE_REQUEST).read_text(encoding="utf-8"))
            transcript = json.loads((wd / "transcript.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            engine.release(bid, n)  # the stage prepares what is missing again
            continue
        why = _ingest_item(req, transcript, cids, b, job, results, config, tr.Cache(wd / tr.cache_name(req["lang"]),
                                                                                  req["lang"]))
        if why is None:
            engine.release(bid, n)
        elif why:  # "": some of its lines are still in another open job (the request was split): it waits
            _retry_or_fall_back(engine, bid, n, req["lang"], wd, why, retries)


def _ingest_item(req: Mapping[str, Any], transcript: Mapping[str, Any], cids: list[str], b: Any,
                 job: Mapping[str, Any], results: Mapping[str, LineResult], config: LLMConfig,
                 cache: tr.Cache) -> str | None:
    """One item's lines into its cache (saved); None when every chunk it asked for is in, ``""`` while some
    of its lines are still in another job, else why not (the problems of every job it was in)."""
    from pipeline.common.llmcall import SoftMiss, extract_json

    segments = list(transcript.get("segments") or [])
    lines = {ln["custom_id"]: ln for ln in req.get("lines") or []}
    problems: list[str] = []
    spent = {"input_tokens": 0, "output_tokens": 0}
    dropped = 0
    for cid in cids:
        ln, r = lines.get(cid), results.get(cid)
        if ln is None:
            continue
        if r is None or not r.ok:
            problems.append(r.error if r is not None else f"no result: the Batch API job ended {b.status}"
                            + (f" ({job['failure']})" if job.get("failure") else ""))
            continue
        usage = r.usage or {"input_tokens": 0, "output_tokens": 0}
        for k in spent:
            spent[k] += int(usage.get(k) or 0)
        cache.spend(usage, batch_cost(usage, config))
        try:
            data, _ = extract_json(r.content)
            got = tr.validate(data, ln["ids"])
        except SoftMiss as miss:  # some segments dropped: kept what came, the rest asked again
            got = miss.repaired
            problems.append(str(miss))
            dropped += len([i for i in ln["ids"] if i not in got])
        except ValueError as exc:
            problems.append(f"invalid translation: {str(exc)[:300]}")
            continue
        cache.put(segments, got)
    info = cache.batch
    if dropped:  # as realtime's repair says it: the outcome becomes "repaired"
        info["adjustments"] = [*(info.get("adjustments") or []), f"{dropped} segment(s) dropped by the model were "
                               "asked again"]
    if any(spent.values()):  # the jobs that answered something: the translation's "mode" says batch
        info["jobs"] = [*[j for j in info.get("jobs") or [] if j != b.id], b.id]
    info["usage"] = {k: int((info.get("usage") or {}).get(k) or 0) + spent[k] for k in spent}
    info["cost_usd"] = round(float(info.get("cost_usd") or 0.0) + batch_cost(spent, config), 8)
    seen = {*(c for c in info.get("seen") or [] if c in lines), *(c for c in cids if c in lines)}
    problems = [*(info.get("problems") or []), *problems]
    if set(lines) - seen:  # a split request: the rest of its lines come with another job
        info.update(seen=sorted(seen), problems=problems)
        cache.save()
        return ""
    info.pop("seen", None)
    info.pop("problems", None)
    asked = [i for ln in lines.values() for i in ln["ids"]]
    missing = [i for i in asked if cache.get(i, " ".join(str(segments[i].get("text") or "").split())) is None]
    if missing and not problems:
        problems.append(f"{len(missing)} segment(s) not answered")
    why = "; ".join(dict.fromkeys(problems))[:500] if missing else None
    if why:
        info["error"] = why
    else:
        info.pop("tries", None)  # all in: a later retry_translations starts with its full tries
    cache.save()
    return why


def _retry_or_fall_back(engine: Engine, bid: str, n: int, lang: str, wd: Path, why: str, retries: int) -> None:
    """What is missing goes out in a new job (``retries`` times), then realtime (or, with that off, never)."""
    from pipeline.recipes.transcribe.llm_batch_items import to_realtime

    store = engine.store
    assert store is not None
    cache = tr.Cache(wd / tr.cache_name(lang), lang)
    tries = cache.batch["tries"] = int(cache.batch.get("tries") or 0) + 1
    cache.save()
    if tries <= retries:
        engine.release(bid, n)  # the stage parks again with only the missing chunks
    elif flag((store.header(bid).get("options") or {}).get("llm_fallback_realtime", True)):
        to_realtime(engine, bid, n)
    else:
        without_llm(engine, bid, n, f"Batch API: {why}")

"""Batch API results: output and error files read back by ``custom_id``, each answer validated like realtime.

Pure (no network, no store), shared by the service and the by-hand flow: a result line becomes a
:class:`LineResult` holding the same summary a realtime call would have kept (soft misses repaired
and listed, since a batch cannot re-ask), or the reason it is unusable; the bill is half price.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.common.llm import LLMConfig, cost_usd
from pipeline.common.llmcall import SoftMiss
from pipeline.recipes.transcribe.summary_repair import as_summary, parse_json

log = logging.getLogger("tubemill.llm_batch")

BATCH_DISCOUNT = 0.5
TRANSLATION_ID = re.compile(r"-translate-\d+-[0-9a-f]{12}$")  # llm_batch_translate.custom_id


@dataclass
class LineResult:
    custom_id: str
    ok: bool
    summary: Any = None
    usage: dict[str, int] | None = None
    error: str = ""
    adjustments: list[str] | None = None  # soft rules the answer missed, repaired (as realtime does)
    content: str | None = None  # a translation chunk's raw answer (validated against its ids by the ingester)


def parse_results(output_text: str, error_text: str, ends: Mapping[str, float], model: str) -> dict[str, LineResult]:
    """Output and error lines by custom_id (order is not guaranteed), bodies validated like realtime."""
    out: dict[str, LineResult] = {}
    for text in (output_text, error_text):
        for raw in (text or "").splitlines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                cid = line["custom_id"]
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable batch result line skipped: %.120s", raw)
                continue
            out[cid] = _line_result(cid, line, ends.get(cid, 1e12), model)
    return out


def _line_result(cid: str, line: Mapping[str, Any], end: float, model: str) -> LineResult:
    """One result line: an error (the API's or the server's), an unusable answer, or the kept summary."""
    resp, err = line.get("response") or {}, line.get("error")
    if err or resp.get("status_code") != 200:
        msg = (err or {}).get("message") or json.dumps((resp.get("body") or {}).get("error") or resp)[:300]
        return LineResult(cid, False, error=f"{(err or {}).get('code') or resp.get('status_code')}: {msg}")
    body = resp.get("body") or {}
    usage = body.get("usage") or {}
    u = {"input_tokens": int(usage.get("prompt_tokens") or 0),
         "output_tokens": int(usage.get("completion_tokens") or 0)}
    adjustments: list[str] = []
    if TRANSLATION_ID.search(cid):  # a chunk's segments: only its ingester knows the ids it must map back to
        try:
            return LineResult(cid, True, usage=u, content=str(body["choices"][0]["message"]["content"] or ""))
        except (KeyError, IndexError, TypeError) as exc:
            return LineResult(cid, False, usage=u, error=f"invalid translation: {str(exc)[:300]}")
    try:
        content = body["choices"][0]["message"]["content"]
        try:
            summary = as_summary(parse_json(content), end, model)
        except SoftMiss as miss:  # one answer, no re-ask in a batch: keep it repaired, say what changed
            summary, adjustments = miss.repaired, list(miss.adjustments)
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
        return LineResult(cid, False, usage=u, error=f"invalid summary: {str(exc)[:300]}")
    return LineResult(cid, True, summary=summary, usage=u, adjustments=adjustments)


def batch_cost(usage: Mapping[str, int], config: LLMConfig) -> float:
    """The Batch API bills half the realtime price."""
    return round(cost_usd(usage, config)[0] * BATCH_DISCOUNT, 8)

"""Batch API request lines: the body, its stable ``custom_id``, the checks the API would make, the split into files.

Pure (no network, no store): the service and the by-hand flow both prepare requests here, so
the same item gets the same id and the same body whichever way it is sent, and a line the API
would refuse is refused before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.common.llm import LLMConfig, count_tokens
from pipeline.recipes.transcribe.llm_batch_api import ENDPOINT
from pipeline.recipes.transcribe.summary import SYSTEM_PROMPT, chunk_transcript, single_prompt, transcript_end
from pipeline.recipes.transcribe.summary_model import WIRE_SCHEMA


@dataclass(frozen=True)
class BatchLimits:
    """Where a job's requests are split into several files (the API's limits, or a configured token cap)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 2**20
    max_enqueued_tokens: int | None = None


def custom_id(batch_id: str, n: int, stage: str, body: Mapping[str, Any]) -> str:
    """Unique and stable: the same request for the same item always gets the same id."""
    digest = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    return f"tm-{batch_id}-{n}-{stage}-{digest}"


def build_body(transcript: Mapping[str, Any], title: str, config: LLMConfig, max_tokens: int = 100_000,
               home: Path | None = None) -> dict[str, Any] | None:
    """One chat-completions body summarizing the whole transcript, or None when it does not fit one request.

    The request format is the server's learned rung of the capability ladder (json_schema
    unless the server is known to refuse it), like a realtime call.
    """
    from pipeline.common.llm_ladder import capability, response_format, system_prompt

    chunks = chunk_transcript(transcript, max_tokens, config.model)
    if len(chunks) != 1:
        return None
    cap = capability(home, config.base_url, config.model)
    body: dict[str, Any] = {
        "model": config.model,
        "messages": [{"role": "system", "content": system_prompt(cap.rung, SYSTEM_PROMPT, WIRE_SCHEMA)},
                     {"role": "user", "content": single_prompt(title, transcript_end(transcript), chunks[0])}],
    }
    fmt = response_format(cap.rung, "summary", WIRE_SCHEMA)
    if fmt is not None:
        body["response_format"] = fmt
    if config.temperature is not None and "temperature" not in cap.drop_params:
        body["temperature"] = config.temperature
    return body


def request_line(cid: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One line of a Batch API input file: the chat-completions ``body`` under its ``custom_id``."""
    return {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": dict(body)}


def validate_line(line: Mapping[str, Any]) -> None:
    """What the API would refuse, refused here before anything is uploaded."""
    if set(line) != {"custom_id", "method", "url", "body"}:
        raise ValueError(f"request line has keys {sorted(line)}, expected custom_id, method, url, body")
    if not isinstance(line["custom_id"], str) or not line["custom_id"] or len(line["custom_id"]) > 512:
        raise ValueError("custom_id must be a non-empty string of at most 512 characters")
    if line["method"] != "POST" or line["url"] != ENDPOINT:
        raise ValueError(f"{line['custom_id']}: method must be POST and url {ENDPOINT}")
    body = line["body"]
    if not isinstance(body, Mapping) or not body.get("model") or not body.get("messages"):
        raise ValueError(f"{line['custom_id']}: body needs model and messages")
    json.dumps(body)


def line_tokens(line: Mapping[str, Any]) -> int:
    """The prompt tokens of one line, as the API counts them against an enqueued-token limit."""
    return sum(count_tokens(str(m.get("content", "")), line["body"]["model"]) for m in line["body"]["messages"])


def split_lines(lines: list[dict[str, Any]], limits: BatchLimits) -> list[list[dict[str, Any]]]:
    """Files of at most max_requests lines, max_bytes bytes and (when set) max_enqueued_tokens tokens."""
    ids = [ln["custom_id"] for ln in lines]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate custom_id in one job")
    files: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = tokens = 0
    for ln in lines:
        validate_line(ln)
        b = len(json.dumps(ln, ensure_ascii=False).encode()) + 1
        t = line_tokens(ln) if limits.max_enqueued_tokens else 0
        if cur and (len(cur) >= limits.max_requests or size + b > limits.max_bytes
                    or (limits.max_enqueued_tokens and tokens + t > limits.max_enqueued_tokens)):
            files.append(cur)
            cur, size, tokens = [], 0, 0
        cur.append(ln)
        size += b
        tokens += t
    if cur:
        files.append(cur)
    return files


def to_jsonl(lines: Iterable[Mapping[str, Any]]) -> bytes:
    """The input file's bytes: one JSON object a line, UTF-8."""
    return "".join(json.dumps(ln, ensure_ascii=False) + "\n" for ln in lines).encode("utf-8")

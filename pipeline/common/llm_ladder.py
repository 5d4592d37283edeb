"""The capability ladder: which request format (rung) and optional parameters each server and model accept.

Learned once per (base_url, model) from the server's refusals and remembered in memory and in
``<home>/llm-capabilities.json``, so the next item starts on the rung that worked. Also here:
what a request on each rung sends (``response_format``, the schema in the prompt below strict
``json_schema``) and how a refusal is told apart from a bad item. The caller that climbs down is
:class:`pipeline.common.llmcall.JSONCaller`; the Batch API builds its bodies from the same rungs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("tubemill.llm")

RUNGS = ("json_schema", "json_object_schema", "json_object", "text")
CAPS_FILE = "llm-capabilities.json"
DEFAULT_BASE = "https://api.openai.com/v1"
_FORMAT_WORDS = ("response_format", "json_schema", "json schema", "literal_error", "json_object", "grammar",
                 "structured output", "guided_json", "schema")


# -- the remembered ladder ---------------------------------------------------------------------------------------


@dataclass
class Capability:
    """What one (server, model) accepts; learned from its answers."""

    rung: str = RUNGS[0]
    drop_params: list[str] = field(default_factory=list)  # optional parameters the server refused by name
    tokens_param: str = "max_tokens"
    why: str = ""
    learned_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "drop_params": list(self.drop_params), "tokens_param": self.tokens_param,
                "why": self.why, "learned_at": self.learned_at}


_CACHE: dict[tuple[str, str], Capability] = {}  # (home or "", key) -> capability, this process
_CACHE_LOCK = threading.Lock()


def server_key(base_url: str | None, model: str) -> str:
    """``<base_url>|<model>``: what is learned is learned per server and model (one server serves several)."""
    return f"{(base_url or DEFAULT_BASE).rstrip('/')}|{model}"


def _caps_path(home: Path | None) -> Path | None:
    return Path(home) / CAPS_FILE if home else None


def _read_caps(home: Path | None) -> dict[str, Any]:
    path = _caps_path(home)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def capability(home: Path | None, base_url: str | None, model: str) -> Capability:
    """The known capability of this server and model (memory, then the home's file, else the top rung)."""
    key = server_key(base_url, model)
    ck = (str(home or ""), key)
    with _CACHE_LOCK:
        if ck in _CACHE:
            return _CACHE[ck]
    raw = _read_caps(home).get(key)
    cap = Capability()
    if isinstance(raw, dict):
        rung = raw.get("rung")
        cap = Capability(rung=rung if rung in RUNGS else RUNGS[0],
                         drop_params=[p for p in raw.get("drop_params") or [] if p in ("temperature", "max_tokens")],
                         tokens_param=raw.get("tokens_param") if raw.get("tokens_param") in (
                             "max_tokens", "max_completion_tokens") else "max_tokens",
                         why=str(raw.get("why") or "")[:300], learned_at=float(raw.get("learned_at") or 0.0))
    with _CACHE_LOCK:
        return _CACHE.setdefault(ck, cap)


def remember(home: Path | None, base_url: str | None, model: str, cap: Capability) -> None:
    """Keep what was learned, in memory and (with a home) on disk, so the next item skips the failed rungs."""
    key = server_key(base_url, model)
    cap.learned_at = time.time()
    with _CACHE_LOCK:
        _CACHE[(str(home or ""), key)] = cap
        path = _caps_path(home)
        if path is None:
            return
        data = _read_caps(home)
        data[key] = cap.to_dict()
        try:
            from state.storage import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.warning("cannot save LLM capabilities to %s: %s", path, exc)


def forget(home: Path | None = None) -> None:
    """Drop what this process learned (tests; ``retry-summaries`` after the user changed the server)."""
    with _CACHE_LOCK:
        for k in [k for k in _CACHE if home is None or k[0] == str(home)]:
            del _CACHE[k]


def known_capabilities(home: Path) -> dict[str, Any]:
    """Every (server|model) → learned capability in the home, for ``tubemill doctor`` and the System page."""
    return _read_caps(home)


# -- what each rung sends, and what a refusal means ----------------------------------------------------------------


def _status_body(exc: Any) -> str:
    parts = [str(getattr(exc, "message", "") or ""), str(getattr(exc, "body", "") or "")]
    try:
        parts.append(exc.response.text)
    except Exception:  # noqa: BLE001 - any response object shape: we only want its text if there is one
        pass
    return " ".join(parts).lower()


def refuses_format(exc: Any) -> bool:
    """A 400/422/500 that names response_format/json_schema/validation: the rung is unsupported, not the item bad."""
    status = getattr(exc, "status_code", None)
    if status not in (400, 422, 500):
        return False
    body = _status_body(exc)
    return any(w in body for w in _FORMAT_WORDS) or (status in (422, 500) and "validation" in body)


def refused_param(exc: Any, params: tuple[str, ...]) -> str | None:
    """The optional parameter a 400/422 names as unsupported (o-series models refuse temperature/max_tokens)."""
    if getattr(exc, "status_code", None) not in (400, 422):
        return None
    body = _status_body(exc)
    if "unsupported" not in body and "not support" not in body and "unrecognized" not in body \
            and "extra" not in body and "invalid" not in body:
        return None
    for p in params:
        if f"'{p}'" in body or f'"{p}"' in body or f" {p} " in f" {body} ":
            return p
    return None


def system_prompt(rung: str, system: str, schema: dict[str, Any]) -> str:
    """The system message for ``rung``: below strict json_schema the schema is only in the prompt."""
    if rung == "json_schema":
        return system
    return (system + "\nThe JSON object must match this JSON Schema:\n" + json.dumps(schema)
            + "\nReply with the JSON object only: no prose, no Markdown.")


def response_format(rung: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` a request on ``rung`` sends (None on the text rung)."""
    if rung == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if rung == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if rung == "json_object":
        return {"type": "json_object"}
    return None

"""Endpoint health: endpoints that refuse connections or the key, and models whose answers stay unusable.

When an endpoint refuses connections or the key, every item would spend its own retries finding
out. The first failure marks it for a short while; summaries meanwhile fall back at once and say
why (``retry-summaries`` later). The last rung of the ladder is "offline": a model whose answers
stay unusable item after item is not asked again for a while. Process memory only.
"""

from __future__ import annotations

import threading
import time

from pipeline.common.llm_ladder import DEFAULT_BASE, server_key

_DOWN: dict[str, tuple[float, str]] = {}
_DOWN_LOCK = threading.Lock()
DOWN_FOR_S = 30.0
AUTH_DOWN_FOR_S = 300.0


def mark_down(base_url: str | None, reason: str, seconds: float = DOWN_FOR_S) -> None:
    """Mark the endpoint (or a ``server_key``: one model) as not answering for ``seconds``, with the reason."""
    with _DOWN_LOCK:
        _DOWN[(base_url or DEFAULT_BASE).rstrip("/")] = (time.monotonic() + seconds, reason)


def down_reason(base_url: str | None) -> str | None:
    """Why this endpoint is known not to answer right now, or None."""
    key = (base_url or DEFAULT_BASE).rstrip("/")
    with _DOWN_LOCK:
        entry = _DOWN.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del _DOWN[key]
            return None
        return entry[1]


def clear_down() -> None:
    """Forget every mark and count (tests; ``retry-summaries``: the user says the endpoint works now)."""
    with _DOWN_LOCK:
        _DOWN.clear()
        _INVALID.clear()


# A 135M model that writes prose or junk whatever it is asked is not asked again for a while; each item still
# says why.
_INVALID: dict[str, int] = {}
UNUSABLE_AFTER = 3
UNUSABLE_FOR_S = 600.0


def note_answer(base_url: str | None, model: str, usable: bool) -> None:
    """Count consecutive unusable answers of a model; at ``UNUSABLE_AFTER`` it is marked down for a while."""
    key = server_key(base_url, model)
    with _DOWN_LOCK:
        n = 0 if usable else _INVALID.get(key, 0) + 1
        _INVALID[key] = n
    if n >= UNUSABLE_AFTER:
        mark_down(key, f"model {model!r} gave unusable answers for {n} items in a row; not asked again for "
                       f"{UNUSABLE_FOR_S / 60:.0f} min (a larger model, or retry-summaries later)", UNUSABLE_FOR_S)

"""One delivery attempt per channel: a signed webhook POST (httpx) or Apprise when it is installed.

An attempt returns an :class:`Attempt`, never raises: the dispatcher decides on retrying from
``retryable`` (a timeout, a refused connection, 5xx, 408 and 429 are; another 4xx or 3xx is not:
asking again will not change the answer). Messages say what happened without the URL's path or
query and never a secret: webhook and Apprise URLs may carry tokens.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipeline.notify.keys import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign


@dataclass(frozen=True)
class Attempt:
    ok: bool
    detail: str
    retryable: bool = False
    retry_after_s: float | None = None


def redact_url(url: str) -> str:
    """``https://host:port/…``: where it goes, not the token a path or query may hold."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"
    except ValueError:
        return "(unparsable URL)"


def body_of(record: dict[str, Any]) -> bytes:
    """The exact bytes signed and sent (compact, sorted: the same record always makes the same body)."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


_client: Any = None
_client_lock = threading.Lock()


def _http() -> Any:
    """One pooled client for every delivery (a client per request spent ~30 ms building its TLS context)."""
    global _client
    with _client_lock:
        if _client is None:
            import httpx  # here, not at the top: the engine imports this package and most homes set no webhook

            _client = httpx.Client(follow_redirects=False, limits=httpx.Limits(max_connections=8))
        return _client


def send_webhook(url: str, secret: str, record: dict[str, Any], timeout_s: float) -> Attempt:
    import httpx

    body = body_of(record)
    ts = str(int(time.time()))  # signed afresh per attempt, so a retry is inside the receiver's window
    headers = {"Content-Type": "application/json", "User-Agent": "tubemill-notify/1",
               "X-Tubemill-Event": str(record.get("event")), "X-Tubemill-Delivery": str(record.get("id")),
               TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(secret, body, ts)}
    try:
        # Status and headers are all we need: the body is never read, so a receiver cannot make us wait on it.
        with _http().stream("POST", url, content=body, headers=headers, timeout=timeout_s) as resp:
            code = resp.status_code
            retry_after = resp.headers.get("Retry-After")
    except httpx.TimeoutException as exc:
        return Attempt(False, f"timed out after {timeout_s:g}s ({type(exc).__name__})", retryable=True)
    except httpx.HTTPError as exc:
        return Attempt(False, f"{type(exc).__name__}: {_scrub(str(exc), url)}", retryable=True)
    except Exception as exc:  # an invalid URL, a TLS library error: said, never raised into the dispatcher
        return Attempt(False, f"{type(exc).__name__}: {_scrub(str(exc), url)}", retryable=False)
    if 200 <= code < 300:
        return Attempt(True, f"HTTP {code}")
    wait = None
    if retry_after:
        try:
            wait = max(0.0, float(retry_after))
        except ValueError:
            wait = None
    retryable = code >= 500 or code in (408, 429)
    return Attempt(False, f"HTTP {code}" + ("" if retryable else " (not retried)"), retryable, wait)


def _scrub(text: str, url: str) -> str:
    return text.replace(url, redact_url(url))[:300]


def apprise_module() -> Any | None:
    """The ``apprise`` module when it is installed, else None (it is an optional extra)."""
    try:
        return importlib.import_module("apprise")
    except ImportError:
        return None


def send_apprise(urls: list[str], title: str, text: str) -> Attempt:
    mod = apprise_module()
    if mod is None:
        return Attempt(False, "apprise is not installed (pip install apprise)", retryable=False)
    try:
        ap = mod.Apprise()
        added = sum(1 for u in urls if ap.add(u))
        if not added:
            return Attempt(False, f"apprise accepted none of the {len(urls)} URL(s)", retryable=False)
        ok = ap.notify(title=title, body=text)
    except Exception as exc:  # its messages may quote a URL: the type only
        return Attempt(False, f"apprise raised {type(exc).__name__}", retryable=True)
    return Attempt(bool(ok), f"apprise, {added} URL(s): " + ("sent" if ok else "not sent"), retryable=not ok)


def describe(record: dict[str, Any]) -> tuple[str, str]:
    """A title and one line for people (Apprise, toasts); the webhook gets the whole record."""
    event, p = record.get("event", ""), record.get("payload") or {}
    name = p.get("name") or p.get("batch_id") or "batch"
    counts = p.get("counts") or {}
    tally = ", ".join(f"{counts[k]} {k}" for k in ("done", "failed", "skipped", "cancelled") if counts.get(k))
    if event == "batch.done":
        return f"Tubemill: {name} done", f"Batch {name} finished: {tally or 'nothing to do'}."
    if event == "batch.failed":
        why = p.get("reason") or f"finished with {counts.get('failed', 0)} failed item(s)"
        return f"Tubemill: {name} failed", f"Batch {name} {why}" + (f" ({tally})." if tally else ".")
    if event == "batch.held":
        mins = float(p.get("held_s") or 0) / 60
        return f"Tubemill: {name} held", f"Batch {name} has waited {mins:.0f} min: {p.get('reason') or 'held'}."
    if event == "subscription.new_items":
        n = p.get("count", len(p.get("items") or ()))
        src = p.get("source") or p.get("sub_id") or "a subscription"
        return "Tubemill: new items", f"{n} new item(s) from {src}" + (f" into {p['batch']}" if p.get("batch") else "")
    if event == "test":
        return "Tubemill: test notification", "Notifications from Tubemill reach you here."
    return f"Tubemill: {event}", json.dumps(p)[:200]

"""The notification secrets: the webhook's signing key and the Apprise URLs, both 0600 files under
``<home>/secrets`` (:mod:`pipeline.config.secrets`), never in settings.toml, the log or an event.

The signature is HMAC-SHA256 over ``"<timestamp>.<raw body>"``: signing the timestamp with the body
lets a receiver refuse a replayed request (an old timestamp) without trusting an unsigned header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random
import threading
import time
from pathlib import Path

from pipeline.config import secrets

WEBHOOK_SECRET = "webhook_secret"
APPRISE_URLS = "apprise_urls"
SIGNATURE_HEADER = "X-Tubemill-Signature"
TIMESTAMP_HEADER = "X-Tubemill-Timestamp"
_lock = threading.Lock()  # two first deliveries must not each generate (and one lose) a key


def webhook_secret(home: Path) -> str:
    """The signing key, generated (32 random bytes, hex) and stored 0600 on first use."""
    with _lock:
        value = secrets.get_secret(home, WEBHOOK_SECRET)
        if not value:
            value = _random.token_hex(32)
            secrets.set_secret(home, WEBHOOK_SECRET, value)
        return value


def rotate_webhook_secret(home: Path) -> str:
    """A new signing key; receivers must be given it (the old one stops verifying at once)."""
    with _lock:
        value = _random.token_hex(32)
        secrets.set_secret(home, WEBHOOK_SECRET, value)
        return value


def sign(secret: str, body: bytes, timestamp: str) -> str:
    """The signature header's value: ``sha256=<hex>`` of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance_s: float = 300.0,
           now: float | None = None) -> bool:
    """What a receiver runs: the signature matches (constant-time) and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, body, timestamp), signature or "")


def apprise_urls(home: Path) -> list[str]:
    """The stored Apprise URLs (one secret, separated by spaces: each may carry a token)."""
    return (secrets.get_secret(home, APPRISE_URLS) or "").split()


def set_apprise_urls(home: Path, urls: list[str] | str) -> list[str]:
    """Store the URLs (a list, or text with one per line or separated by spaces); none removes the secret."""
    items = urls.split() if isinstance(urls, str) else [u.strip() for u in urls if u.strip()]
    if items:
        secrets.set_secret(home, APPRISE_URLS, " ".join(items))
    else:
        secrets.delete_secret(home, APPRISE_URLS)
    return items

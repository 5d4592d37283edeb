"""Who may talk to the API: a bearer token on every route, a Host allowlist, and slowed bad guesses.

The token is a named secret (``<home>/secrets/api_token``, 0600), made on first start and rotatable;
it is compared in constant time. The Host check is the DNS-rebinding defence: a web page the user
visits can make the browser send requests to 127.0.0.1 under the attacker's own host name, so a
request whose Host is not one of ours is refused (421) before the token is even looked at.
Pure ASGI, not ``BaseHTTPMiddleware``: streamed ZIPs pass through untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.config.private_files import SECRETS_DIR
from pipeline.config.secrets import get_secret, set_secret

TOKEN_NAME = "api_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
BASE_DELAY_S = 0.25  # first bad token; doubles with each further one from the same client
MAX_DELAY_S = 4.0
FORGET_S = 600.0  # a client quiet this long starts over
MAX_CLIENTS = 4096  # remembered clients (oldest forgotten first): the table cannot grow without bound

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
                   Awaitable[None]]


# ---------------------------------------------------------------------- the token
def ensure_token(home: Path, *, rotate: bool = False) -> tuple[str, bool]:
    """The stored token, or a fresh one stored now (first start, or ``rotate``); True when it is new."""
    current = None if rotate else get_secret(home, TOKEN_NAME)
    if current:
        return current, False
    token = secrets.token_urlsafe(32)
    set_secret(home, TOKEN_NAME, token)
    return token, True


class TokenSource:
    """The stored token, re-read when its file changes: ``--rotate-token`` in another shell takes effect
    on a running server without a restart (the old token stops working at once)."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._stamp: tuple[int, int] | None = None
        self._token: str | None = None

    def __call__(self) -> str | None:
        path = self.home / SECRETS_DIR / TOKEN_NAME
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self._stamp or self._token is None:
            self._token, self._stamp = get_secret(self.home, TOKEN_NAME), stamp
        return self._token


def token_matches(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (``hmac.compare_digest``): the answer's timing says nothing about the token."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            return rest.strip() if scheme.lower() == "bearer" else None
    return None


# ---------------------------------------------------------------------- the Host allowlist
def allowed_hosts(address: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, the bound address (unless it is a wildcard) and the names given with ``--allow-host``."""
    names = {*LOOPBACK_NAMES, *(h.strip().lower() for h in extra if h.strip())}
    if address not in ("0.0.0.0", "::", ""):
        names.add(address.lower().strip("[]"))
    return frozenset(names)


def host_of(header: str) -> str:
    """``example.com:8600`` → ``example.com``; ``[::1]:8600`` → ``::1``; lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- slowing bad tokens
class Throttle:
    """Per client: each bad token in a row waits longer before its 401 (0.25 s, 0.5 s, … at most 4 s); a good
    one resets it. Guesses from one address cannot go faster than the delays allow, however they are sent."""

    def __init__(self, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.base_s, self.max_s, self.clock = base_s, max_s, clock
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failed(self, client: str) -> float:
        """Count one bad token; the seconds to wait before answering it."""
        now = self.clock()
        n, last = self._fails.pop(client, (0, now))
        n = 1 if now - last > FORGET_S else n + 1
        self._fails[client] = (n, now)
        while len(self._fails) > MAX_CLIENTS:
            self._fails.popitem(last=False)
        return min(self.max_s, self.base_s * 2 ** (n - 1))

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)

    def failures(self, client: str) -> int:
        return self._fails.get(client, (0, 0.0))[0]


class Guard:
    """ASGI middleware: Host first (421), then the bearer token (401 with ``WWW-Authenticate``)."""

    def __init__(self, app: ASGIApp, *, token: Callable[[], str | None], hosts: frozenset[str],
                 throttle: Throttle | None = None) -> None:
        self.app, self.token, self.hosts = app, token, hosts
        self.throttle = throttle or Throttle()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        host = next((v.decode("latin-1") for k, v in headers if k.lower() == b"host"), "")
        if host_of(host) not in self.hosts:
            await _reply(send, 421, {"detail": f"Host {host!r} is not served here (allowed: "
                                               f"{', '.join(sorted(self.hosts))}; see --allow-host)"})
            return
        client = (scope.get("client") or ("?", 0))[0]
        if token_matches(bearer(headers), self.token()):
            self.throttle.succeeded(client)
            await self.app(scope, receive, send)
            return
        await asyncio.sleep(self.throttle.failed(client))
        await _reply(send, 401, {"detail": "missing or wrong bearer token (see `tubemill serve --help`)"},
                     [(b"www-authenticate", b'Bearer realm="tubemill"')])


async def _reply(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})

"""Download accounts: per-account pacing, adaptive backoff, cooldown, and the queue-aware pace.

Why: a logged-in cookie jar that downloads faster than a person would gets flagged,
and a flagged account is worse than a slow one. So every download is bound to one
account, one at a time, spaced by a *random* delay (a fixed period looks scripted),
and the site's pushback (429, bot checks) makes that account slower — not the batch.

Spacing is start to start: an account's next download starts no earlier than
``last_start + delay`` and never while its previous one runs. The delay is drawn
from ``[min, max]`` (cookies: 180–300 s, anonymous: 10–20 s), then:

- multiplied by the account's multiplier: ×``backoff_factor`` per 429/bot check
  (a ``Retry-After`` is honoured on top), decaying back to 1 by ``success_decay``
  per successful download;
- account-level trouble cools it down for ``cooldown_s``: ``failure_run`` rate limits or
  bot checks in a row, or ``failure_run`` transient failures in a row spread over that
  many items *and* at least two hosts. One bad URL retried, or one flaky host, is the
  item's (or the host's) problem and never cools the account: its retries are the
  item's, and the account's other downloads go on;
- an authentication failure disables it until its cookie file changes; the
  engine gives its queue to the others;
- queue-aware: with fewer than ``min_buffer`` items downloaded but not yet
  transcribed the delay is the fast end of the range (the transcriber is starving),
  from ``target_buffer`` up the slow half, and at ``max_buffer`` downloads hold;
- optionally the first ``fast_start_items`` downloads of each account run at
  ``fast_start_factor`` of the delay to build the buffer (off by default: it is the
  riskiest part of the batch for the account).

The pool is plain data driven by ``now`` values: the engine, the tests and the plan
simulator all run it on their own clocks. The engine persists ``snapshot()`` to
``<home>/accounts.json`` (names and counters only; never cookie contents or paths),
so ``tubemill status`` in another process and a restarted engine see the same pacing.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.settings import PacingSettings
from pipeline.config.ytdlp_options import proxy_address
from pipeline.errors import CorruptStateFile
from state.storage import atomic_write_bytes, read_json_file

ACCOUNTS_FILE = "accounts.json"
ANONYMOUS = "anonymous"


@dataclass
class Account:
    """One download identity: a cookie file (a path handed to yt-dlp, never stored or shown), or a
    browser whose cookie store yt-dlp reads (``browser``: ``"firefox"``, ``"chrome:Profile 1"``), or
    neither (anonymous); optionally behind its own ``proxy`` (a secret: shown only as ``shown_proxy``).
    One IP per identity is the point: a site that sees two accounts on one address links them."""

    name: str
    cookiefile: str | None = field(default=None, repr=False)
    browser: str | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)
    multiplier: float = 1.0
    next_ready_at: float = 0.0
    cooldown_until: float = 0.0
    last_start: float | None = None
    last_delay: float = 0.0
    busy: bool = False
    downloads: int = 0
    failures: int = 0
    rate_limits: int = 0
    failure_run: int = 0
    disabled: str | None = None
    disabled_at: float | None = None
    cool_reason: str | None = None  # why the last cooldown started, for "waiting until … because …"
    cookie_mtime: float | None = None
    source: str = "anonymous"  # what the identity is, for display: "cookies file", "browser firefox", "anonymous"
    shown_proxy: str | None = None  # the proxy without its user and password, for display
    recent: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (host, item) of the failure run

    @property
    def cookies(self) -> bool:
        """Signed in (cookie file or browser): paced as a person, and refused cookies disable it."""
        return self.cookiefile is not None or self.browser is not None

    def describe(self) -> None:
        """Refresh the display fields from the identity (no secret reaches them)."""
        if self.cookiefile is not None:
            self.source = "cookies file"
        elif self.browser is not None:
            self.source = f"browser {self.browser.split(':', 1)[0].split('+', 1)[0].strip().lower()}"
        else:
            self.source = "anonymous"
        self.shown_proxy = proxy_address(self.proxy)

    def state(self, now: float) -> tuple[str, float]:
        """(state, seconds until ready) for display."""
        if self.disabled:
            return "disabled", 0.0
        if self.busy:
            return "downloading", 0.0
        if self.cooldown_until > now:
            return "cooling down", self.cooldown_until - now
        if self.next_ready_at > now:
            return "waiting", self.next_ready_at - now
        return "ready", 0.0


_PERSISTED = ("multiplier", "next_ready_at", "cooldown_until", "last_start", "last_delay", "downloads", "failures",
              "rate_limits", "failure_run", "disabled", "disabled_at", "cookie_mtime", "source", "shown_proxy",
              "cool_reason")


class AccountPool:
    """Every download account the engine knows, with its pacing state. Thread-safe."""

    def __init__(self, settings: PacingSettings | None = None, *, rng: random.Random | None = None) -> None:
        self.settings = settings or PacingSettings()
        self.rng = rng or random.Random()
        self._accounts: dict[str, Account] = {}
        self._lock = threading.RLock()
        self.version = 0  # bumped on every change; the engine persists when it moves
        self.held: str | None = None

    # -------------------------------------------------------------- membership
    def ensure(self, name: str, cookiefile: str | None = None, cookie_mtime: float | None = None, *,
               browser: str | None = None, proxy: str | None = None) -> Account:
        """Add the account or refresh its identity (cookie path or browser, proxy); a changed cookie file
        re-enables a disabled account."""
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None:
                acct = self._accounts[name] = Account(name, cookiefile, browser=browser, proxy=proxy,
                                                      cookie_mtime=cookie_mtime)
                acct.describe()
                self.version += 1
                return acct
            before = (acct.source, acct.shown_proxy)
            acct.cookiefile, acct.browser, acct.proxy = cookiefile, browser, proxy
            acct.describe()
            if (acct.source, acct.shown_proxy) != before:
                self.version += 1
            if cookie_mtime is not None and cookie_mtime != acct.cookie_mtime:
                if acct.disabled and acct.cookie_mtime is not None:
                    acct.disabled, acct.disabled_at = None, None
                    acct.failure_run, acct.multiplier = 0, 1.0
                acct.cookie_mtime = cookie_mtime
                self.version += 1
            return acct

    def get(self, name: str) -> Account | None:
        with self._lock:
            return self._accounts.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def enabled(self, names: list[str]) -> list[str]:
        with self._lock:
            return [n for n in names if n in self._accounts and not self._accounts[n].disabled]

    def enable(self, name: str) -> bool:
        """Re-enable by hand (``tubemill accounts enable``): the user says the cookies are good again."""
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None or not acct.disabled:
                return False
            acct.disabled, acct.disabled_at, acct.failure_run, acct.multiplier = None, None, 0, 1.0
            self.version += 1
            return True

    # -------------------------------------------------------------- pacing
    def acquire(self, names: list[str], now: float) -> Account | None:
        """A ready account among ``names`` (the one idle longest), marked busy; None if all wait."""
        with self._lock:
            best: Account | None = None
            for n in names:
                a = self._accounts.get(n)
                if a is None or a.disabled or a.busy or a.cooldown_until > now or a.next_ready_at > now:
                    continue
                if best is None or (a.last_start or 0.0) < (best.last_start or 0.0):
                    best = a
            if best is not None:
                best.busy = True
                best.last_start = now
                self.version += 1
            return best

    def next_ready(self, names: list[str], now: float) -> float | None:
        """When the earliest of ``names`` that is waiting becomes ready (None: one is busy or none usable)."""
        with self._lock:
            times = []
            for n in names:
                a = self._accounts.get(n)
                if a is None or a.disabled or a.busy:
                    continue
                times.append(max(a.next_ready_at, a.cooldown_until, now))
            return min(times) if times else None

    def draw_delay(self, acct: Account, buffer: int | None = None) -> float:
        """The spacing before this account's next download, from its range, multiplier and the buffer."""
        s = self.settings
        lo, hi = s.delay_range(acct.cookies)
        if s.queue_aware and buffer is not None and buffer < s.min_buffer:
            base = lo  # the transcriber is starving: the fast end of the safe range
        elif s.queue_aware and buffer is not None and buffer >= s.target_buffer:
            base = self.rng.uniform((lo + hi) / 2, hi)
        else:
            base = self.rng.uniform(lo, hi)
        if acct.downloads < s.fast_start_items:
            base *= s.fast_start_factor
        return base * acct.multiplier

    def _pace(self, acct: Account, now: float, buffer: int | None) -> None:
        delay = self.draw_delay(acct, buffer)
        start = acct.last_start if acct.last_start is not None else now
        acct.last_delay = delay
        acct.next_ready_at = max(start + delay, now)

    def success(self, name: str, now: float, buffer: int | None = None) -> None:
        with self._lock:
            a = self._accounts[name]
            a.busy = False
            a.downloads += 1
            a.failure_run = 0
            a.recent = []
            a.multiplier = max(1.0, a.multiplier * self.settings.success_decay)
            self._pace(a, now, buffer)
            self.version += 1

    def rate_limited(self, name: str, now: float, retry_after: float | None = None) -> None:
        """429 or a bot check: slower from now on (×backoff), and not before ``Retry-After``."""
        with self._lock:
            a = self._accounts[name]
            a.busy = False
            a.rate_limits += 1
            a.failures += 1
            a.failure_run += 1
            a.multiplier = min(self.settings.max_multiplier, a.multiplier * self.settings.backoff_factor)
            a.last_start = now  # the spacing restarts from the refusal
            self._pace(a, now, None)
            if retry_after:
                a.next_ready_at = max(a.next_ready_at, now + retry_after)
            a.recent.append(("*", "*"))  # a refusal is the site talking to this account, whatever the item
            if a.failure_run >= self.settings.failure_run:
                self._cool(a, now, f"{a.failure_run} rate limits or bot checks in a row")
            self.version += 1

    def failure(self, name: str, now: float, *, counts: bool = True, host: str | None = None,
                item: str | None = None) -> None:
        """Any other failed download: paced as usual. A transient one (``counts``) joins the failure run,
        which cools the account only when it spans ``failure_run`` items and two hosts."""
        with self._lock:
            a = self._accounts[name]
            a.busy = False
            if counts:
                a.failures += 1
                a.failure_run += 1
                a.recent = [*a.recent, (host or "?", item or "?")][-max(1, self.settings.failure_run):]
                hosts = {h for h, _ in a.recent}
                items = {i for _, i in a.recent}
                if (a.failure_run >= self.settings.failure_run and len(items) >= self.settings.failure_run
                        and (len(hosts) >= 2 or "*" in hosts)):
                    self._cool(a, now, f"{a.failure_run} transient failures in a row on {len(items)} items and "
                                       f"{len(hosts)} hosts")
            else:
                a.failure_run = 0
                a.recent = []
            self._pace(a, now, None)
            self.version += 1

    def auth_failed(self, name: str, now: float, reason: str) -> None:
        with self._lock:
            a = self._accounts[name]
            a.busy = False
            a.failures += 1
            a.disabled, a.disabled_at = reason[:200], now
            self.version += 1

    def unused(self, name: str, now: float) -> None:
        """The stage stopped (cancel, shutdown) or sent no request: free the account, keep its spacing."""
        with self._lock:
            a = self._accounts[name]
            a.busy = False
            self._pace(a, now, None)
            self.version += 1

    def _cool(self, a: Account, now: float, why: str) -> None:
        a.cooldown_until = now + self.settings.cooldown_s
        a.cool_reason = why
        a.failure_run = 0
        a.recent = []

    def wait_reason(self, names: list[str], now: float) -> tuple[float, str] | None:
        """(seconds, why) the queue of ``names`` waits before an account is free, or None when one is ready
        now (or busy: then the wait is the running download, not pacing)."""
        with self._lock:
            best: tuple[float, str] | None = None
            for n in names:
                a = self._accounts.get(n)
                if a is None or a.disabled:
                    continue
                if a.busy:
                    return None
                state, wait = a.state(now)
                if state == "ready":
                    return None
                why = f"{a.name} {state}" + (f" ({a.cool_reason})" if state == "cooling down" and a.cool_reason
                                             else "")
                if best is None or wait < best[0]:
                    best = (wait, why)
            return best

    # -------------------------------------------------------------- buffer
    def hold_reason(self, buffer: int, disk_free_mb: float | None = None, floor_mb: float = 0.0,
                    download_mb: float | None = None) -> str | None:
        """Why downloads wait now (buffer full, disk nearly full), or None."""
        s = self.settings
        reason = None
        if s.queue_aware and buffer >= s.max_buffer:
            reason = f"{buffer} downloaded item(s) wait for transcription (max_buffer {s.max_buffer})"
        elif disk_free_mb is not None:
            need = floor_mb + (download_mb if download_mb is not None else s.est_download_mb)
            if disk_free_mb < need:
                reason = (f"free disk {disk_free_mb:.0f} MB would not hold another download "
                          f"(keeping {floor_mb:.0f} MB free)")
        if reason != self.held:
            self.held = reason
            self.version += 1
        return reason

    # -------------------------------------------------------------- visibility and persistence
    def snapshot(self, now: float) -> list[dict[str, Any]]:
        """One row per account: identity kind, proxy address, state, wait, multiplier, counters. No cookie path
        or content, no proxy credentials."""
        with self._lock:
            rows = []
            for a in self._accounts.values():
                state, wait = a.state(now)
                rows.append({
                    "account": a.name, "cookies": a.cookies or a.source != "anonymous", "source": a.source,
                    "proxy": a.shown_proxy,
                    "state": state, "wait_s": round(wait, 1),
                    "multiplier": round(a.multiplier, 3), "downloads": a.downloads, "failures": a.failures,
                    "rate_limits": a.rate_limits, "last_delay_s": round(a.last_delay, 1),
                    "disabled": a.disabled,
                })
            return rows

    def to_dict(self, now: float) -> dict[str, Any]:
        with self._lock:
            return {
                "saved_at": now,
                "held": self.held,
                "accounts": {a.name: {k: v for k, v in asdict(a).items() if k in _PERSISTED}
                             for a in self._accounts.values()},
            }

    def load(self, data: dict[str, Any]) -> None:
        """Pacing state of a previous run (a restart does not make a cooled-down account hot again)."""
        with self._lock:
            for name, fields in (data.get("accounts") or {}).items():
                acct = self._accounts.get(name) or Account(str(name))
                for k in _PERSISTED:
                    if k in fields:
                        setattr(acct, k, fields[k])
                acct.busy = False
                self._accounts[acct.name] = acct
            self.version += 1


def save_accounts(home: Path, pool: AccountPool, now: float) -> None:
    atomic_write_bytes(Path(home) / ACCOUNTS_FILE, json.dumps(pool.to_dict(now), indent=1).encode())


def load_accounts(home: Path) -> dict[str, Any] | None:
    """The saved pacing state, or None when there is none (or it is unreadable: pacing starts afresh)."""
    try:
        data = read_json_file(Path(home) / ACCOUNTS_FILE)
    except (CorruptStateFile, OSError):
        return None
    return data if isinstance(data, dict) else None


def read_account_rows(home: Path, now: float) -> tuple[list[dict[str, Any]], str | None]:
    """Account rows for a process that does not own the engine (``tubemill status``, a follower page)."""
    data = load_accounts(home)
    if not data:
        return [], None
    pool = AccountPool()
    pool.load(data)
    return pool.snapshot(now), data.get("held")

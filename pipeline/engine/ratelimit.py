"""Download accounts: pacing per (account, site), adaptive backoff, cooldown, and the queue-aware pace.

Why: a logged-in cookie jar that downloads faster than a person would gets flagged,
and a flagged account is worse than a slow one. So every download is bound to one
account and one site (:mod:`~pipeline.engine.sites`), one at a time there, spaced by a
*random* delay (a fixed period looks scripted), and the site's pushback (429s, bot checks)
makes that account slower *on that site* — not the batch, and not its other sites.

Spacing is start to start: an account's next download from a site starts no earlier than
``last_start + delay`` and never while its previous one there runs. The delay is drawn
from the site's range (``PacingSettings.delay_range``: sites known to rate-limit 180–300 s
with cookies, 10–20 s anonymous; other web hosts 0–1 s; the local network and files none
at all, any number at once), then:

- multiplied by the (account, site) multiplier: ×``backoff_factor`` per 429/bot check
  (a ``Retry-After`` is honoured on top), decaying back to 1 by ``success_decay``
  per successful download there; ``failure_run`` refusals in a row cool that site down;
- account-level trouble cools the whole account for ``cooldown_s``: ``failure_run``
  transient failures in a row spread over that many items *and* at least two hosts.
  One bad URL retried, or one flaky host, is the item's (or the host's) problem;
- an authentication failure disables it until its cookie file changes; the
  engine gives its queue to the others;
- queue-aware: with fewer than ``min_buffer`` items downloaded but not yet
  transcribed the delay is the fast end of the range (the transcriber is starving),
  from ``target_buffer`` up the slow half, and at ``max_buffer`` downloads hold;
- optionally the first ``fast_start_items`` downloads of each account run at
  ``fast_start_factor`` of the delay to build the buffer (off by default).

The pool is plain data driven by ``now`` values (the engine, tests and plan simulator run it on their
own clocks). Names handed to it may be :class:`Lease` s (a name bound to a site; a plain name: site
``"*"``). ``<home>/accounts.json`` holds ``to_dict()`` (names and counters, never cookie contents or
paths) for ``tubemill status`` and a restarted engine; a file from before sites seeds the strict sites.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

from pipeline.config.settings import ANY_SITE, PacingSettings
from pipeline.engine import account
from pipeline.engine.account import ANONYMOUS, Account, Lease, SitePace, split
from pipeline.engine.sites import shown
from pipeline.errors import CorruptStateFile
from state.storage import atomic_write_bytes, read_json_file

ACCOUNTS_FILE = "accounts.json"
__all__ = ["ANONYMOUS", "Account", "AccountPool", "Lease", "SitePace"]


class AccountPool:
    """Every download account the engine knows, with its pacing state per site. Thread-safe."""

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
                    acct.reenable()
                acct.cookie_mtime = cookie_mtime
                self.version += 1
            return acct

    def get(self, name: str) -> Account | None:
        with self._lock:
            return self._accounts.get(str(name))

    def names(self) -> list[str]:
        with self._lock:
            return list(self._accounts)

    def enabled(self, names: list[str]) -> list[str]:
        with self._lock:
            return [n for n in names if str(n) in self._accounts and not self._accounts[str(n)].disabled]

    def enable(self, name: str) -> bool:
        """Re-enable by hand (``tubemill accounts enable``): the user says the cookies are good again."""
        with self._lock:
            acct = self._accounts.get(name)
            if acct is None or not acct.disabled:
                return False
            acct.reenable()
            self.version += 1
            return True

    # -------------------------------------------------------------- pacing
    def _site(self, a: Account, site: str, *, keep: bool = True) -> SitePace:
        """The account's pacing on ``site``; a strict site never seen before starts from a pre-sites file's."""
        s = a.sites.get(site)
        if s is None:
            s = SitePace(**a.legacy) if a.legacy and self.settings.strict(site) else SitePace()
            if keep:
                a.sites[site] = s
        return s

    def acquire(self, names: list[str], now: float) -> Account | None:
        """A ready account among ``names`` (the one idle longest on the site), marked busy; None if all wait."""
        with self._lock:
            best: tuple[Account, SitePace, str] | None = None
            for n in names:
                name, site = split(n)
                a = self._accounts.get(name)
                if a is None or a.disabled or a.cooldown_until > now:
                    continue
                s = self._site(a, site, keep=False)
                if (s.busy and self.settings.paced(site)) or s.cooldown_until > now or s.next_ready_at > now:
                    continue
                if best is None or (s.last_start or 0.0) < (best[1].last_start or 0.0):
                    best = (a, s, site)
            if best is None:
                return None
            a, _, site = best
            s = self._site(a, site)
            s.busy += 1
            s.last_start = now
            a.last_site = site
            self.version += 1
            return a

    def next_ready(self, names: list[str], now: float) -> float | None:
        """When the earliest of ``names`` that is waiting becomes ready (None: one is busy or none usable)."""
        with self._lock:
            times = []
            for n in names:
                name, site = split(n)
                a = self._accounts.get(name)
                if a is None or a.disabled:
                    continue
                s = self._site(a, site, keep=False)
                if s.busy and self.settings.paced(site):
                    continue
                times.append(max(s.next_ready_at, s.cooldown_until, a.cooldown_until, now))
            return min(times) if times else None

    def draw_delay(self, acct: Account, buffer: int | None = None, site: str | None = None) -> float:
        """The spacing before this account's next download on ``site`` (None: its last), from the site's range,
        its multiplier there and the buffer."""
        s = self.settings
        site = acct.last_site if site is None else site
        lo, hi = s.delay_range(acct.cookies, site)
        if s.queue_aware and buffer is not None and buffer < s.min_buffer:
            base = lo  # the transcriber is starving: the fast end of the safe range
        elif s.queue_aware and buffer is not None and buffer >= s.target_buffer:
            base = self.rng.uniform((lo + hi) / 2, hi)
        else:
            base = self.rng.uniform(lo, hi)
        if acct.downloads < s.fast_start_items:
            base *= s.fast_start_factor
        return base * self._site(acct, site, keep=False).multiplier

    def _take(self, name: str) -> tuple[Account, SitePace, str]:
        """The account and site a download ran on, freed."""
        name, site = split(name)
        a = self._accounts[name]
        s = self._site(a, site)
        s.busy = max(0, s.busy - 1)
        a.last_site = site
        return a, s, site

    def _pace(self, a: Account, s: SitePace, site: str, now: float, buffer: int | None) -> None:
        delay = self.draw_delay(a, buffer, site)
        start = s.last_start if s.last_start is not None else now
        s.last_delay = delay
        s.next_ready_at = max(start + delay, now)

    def success(self, name: str, now: float, buffer: int | None = None) -> None:
        with self._lock:
            a, s, site = self._take(name)
            a.downloads += 1
            s.downloads += 1
            a.failure_run, s.rate_run = 0, 0
            a.recent = []
            s.multiplier = max(1.0, s.multiplier * self.settings.success_decay)
            self._pace(a, s, site, now, buffer)
            self.version += 1

    def rate_limited(self, name: str, now: float, retry_after: float | None = None) -> None:
        """429 or a bot check: slower on that site from now on (×backoff), and not before ``Retry-After``."""
        with self._lock:
            a, s, site = self._take(name)
            a.rate_limits += 1
            a.failures += 1
            s.rate_limits += 1
            s.rate_run += 1
            s.multiplier = min(self.settings.max_multiplier, s.multiplier * self.settings.backoff_factor)
            s.last_start = now  # the spacing restarts from the refusal
            self._pace(a, s, site, now, None)
            if retry_after:
                s.next_ready_at = max(s.next_ready_at, now + retry_after)
            if s.rate_run >= self.settings.failure_run and self.settings.paced(site):
                s.cooldown_until = now + self.settings.cooldown_s
                s.cool_reason = f"{s.rate_run} rate limits or bot checks in a row on {shown(site)}"
                s.rate_run = 0
            self.version += 1

    def failure(self, name: str, now: float, *, counts: bool = True, host: str | None = None,
                item: str | None = None) -> None:
        """Any other failed download: paced as usual. A transient one (``counts``) joins the failure run,
        which cools the account only when it spans ``failure_run`` items and two hosts (the local network's
        failures are its own servers' and never count)."""
        with self._lock:
            a, s, site = self._take(name)
            if counts:
                a.failures += 1
            if counts and self.settings.paced(site):
                a.failure_run += 1
                a.recent = [*a.recent, (host or "?", item or "?")][-max(1, self.settings.failure_run):]
                hosts = {h for h, _ in a.recent}
                items = {i for _, i in a.recent}
                if (a.failure_run >= self.settings.failure_run and len(items) >= self.settings.failure_run
                        and len(hosts) >= 2):
                    a.cooldown_until = now + self.settings.cooldown_s
                    a.cool_reason = (f"{a.failure_run} transient failures in a row on {len(items)} items and "
                                     f"{len(hosts)} hosts")
                    a.failure_run, a.recent = 0, []
            elif not counts:
                a.failure_run = 0
                a.recent = []
            self._pace(a, s, site, now, None)
            self.version += 1

    def auth_failed(self, name: str, now: float, reason: str) -> None:
        with self._lock:
            a, _, _ = self._take(name)
            a.failures += 1
            a.disabled, a.disabled_at = reason[:200], now
            self.version += 1

    def unused(self, name: str, now: float) -> None:
        """The stage stopped (cancel, shutdown) or sent no request: free the account, keep its spacing."""
        with self._lock:
            a, s, site = self._take(name)
            self._pace(a, s, site, now, None)
            self.version += 1

    def soonest(self, names: list[str], now: float) -> tuple[str, str, float, str | None, str] | None:
        """(account, state, ready at, cooldown cause, site) of the first of ``names`` ready on its site (state
        "ready" when one is now), or None when one is downloading there (the wait is that download) or none is
        usable."""
        with self._lock:
            best: tuple[str, str, float, str | None, str] | None = None
            for n in names:
                name, site = split(n)
                a = self._accounts.get(name)
                if a is None or a.disabled:
                    continue
                state, wait, why = a.why(now, site, paced=self.settings.paced(site),
                                         pace=self._site(a, site, keep=False))
                if state == "downloading":
                    return None
                if best is None or now + wait < best[2]:
                    best = (a.name, state, now + wait, why, site)
            return best

    def wait_reason(self, names: list[str], now: float) -> tuple[float, str] | None:
        """(seconds, why) the queue of ``names`` waits before an account is free, or None when one is ready
        now (or busy: then the wait is the running download, not pacing)."""
        soon = self.soonest(names, now)
        if soon is None or soon[1] == "ready":
            return None
        name, state, until, why, site = soon
        where = f" on {shown(site)}" if site != ANY_SITE and state == "waiting" else ""
        return until - now, f"{name} {state}{where}" + (f" ({why})" if state == "cooling down" and why else "")

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
        """One row per account: identity kind, proxy address, state, wait, multiplier (the highest of its sites),
        counters, and one row per site it has pacing on. No cookie path or content, no proxy credentials."""
        with self._lock:
            rows = []
            for a in self._accounts.values():
                state, wait = a.state(now)
                sites = []
                for key, s in sorted(a.sites.items()):
                    if s.idle(now) and not s.downloads and not s.rate_limits:
                        continue
                    s_state, s_wait = a.state(now, key, paced=self.settings.paced(key))
                    sites.append({"site": key, "state": s_state, "wait_s": round(s_wait, 1),
                                  "until": round(now + s_wait, 1) if s_wait else None,
                                  "multiplier": round(s.multiplier, 3), "downloads": s.downloads,
                                  "rate_limits": s.rate_limits})
                rows.append({
                    "account": a.name, "cookies": a.cookies or a.source != "anonymous", "source": a.source,
                    "proxy": a.shown_proxy,
                    "state": state, "wait_s": round(wait, 1),
                    "multiplier": round(max([a.multiplier, *(s.multiplier for s in a.sites.values())]), 3),
                    "downloads": a.downloads, "failures": a.failures,
                    "rate_limits": a.rate_limits, "last_delay_s": round(a.last_delay, 1),
                    "disabled": a.disabled, "sites": sites,
                })
            return rows

    def to_dict(self, now: float) -> dict[str, Any]:
        """What ``accounts.json`` holds: per account its counters and its pacing per site (sites back to a
        fresh state are left out, so a batch over thousands of hosts does not grow the file for good)."""
        with self._lock:
            out: dict[str, Any] = {}
            for a in self._accounts.values():
                row: dict[str, Any] = {k: getattr(a, k) for k in account.PERSISTED}
                row["sites"] = {key: {k: getattr(s, k) for k in account.SITE_FIELDS} for key, s in a.sites.items()
                                if key == a.last_site or not s.idle(now)}
                if a.legacy and not SitePace(**a.legacy).idle(now):
                    row["legacy"] = a.legacy
                out[a.name] = row
            return {"saved_at": now, "held": self.held, "accounts": out}

    def load(self, data: dict[str, Any]) -> None:
        """Pacing state of a previous run (a restart does not make a cooled-down account hot again). A file
        from before sites kept one pace per account: it seeds each strict site the account meets."""
        with self._lock:
            for name, fields in (data.get("accounts") or {}).items():
                if not isinstance(fields, dict):
                    continue
                acct = self._accounts.get(name) or Account(str(name))
                for k in account.PERSISTED:
                    if k in fields:
                        setattr(acct, k, fields[k])
                sites = fields.get("sites")
                if isinstance(sites, dict):
                    acct.sites = {str(key): SitePace(**{k: v for k, v in s.items() if k in account.SITE_FIELDS})
                                  for key, s in sites.items() if isinstance(s, dict)}
                    legacy = fields.get("legacy")
                    acct.legacy = dict(legacy) if isinstance(legacy, dict) else None
                else:
                    acct.legacy = {k: fields[k] for k in account.LEGACY_FIELDS if k in fields} or None
                    acct.last_site = ANY_SITE
                    acct.sites = {ANY_SITE: SitePace(**acct.legacy)} if acct.legacy else {}
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

"""Download accounts as the scheduler sees them: which accounts a batch may use, when downloads hold, and
which download starts next on which (account, site).

The pacing rules themselves (delays, backoff, cooldowns) live in
:class:`~pipeline.engine.ratelimit.AccountPool`; this part feeds it what only the engine
knows — the home's cookie files (rescanned so a replaced file re-enables its account), a
batch's own ``--cookies`` accounts, each download's site, how many items sit downloaded but
not yet transcribed, the mean download size against the disk floor — and persists its state.
A batch's downloads queue per site, so a site whose accounts all wait holds only its own.
"""

from __future__ import annotations

import heapq
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.config.settings import PacingSettings, Settings
from pipeline.engine import ratelimit
from pipeline.engine.ratelimit import ANONYMOUS, AccountPool, Lease
from pipeline.engine.sites import site_of
from pipeline.engine.stage import Stage

if TYPE_CHECKING:
    from pipeline.engine.scheduler import BatchRun, Scheduler

log = logging.getLogger("tubemill.engine")

ACCOUNT_SCAN_S = 5.0
PACED = "paced"  # the ready queue of account-bound stages (they run in the net pool)


class Pacing:
    """The engine's account pool plus the facts it steers by."""

    def __init__(self, home: Path, accounts: AccountPool) -> None:
        self.home = home
        self.accounts = accounts
        self.home_accounts: list[str] = []
        self.last_scan = float("-inf")
        self._saved_version = -1
        self._download_mb = [0.0, 0.0]  # sum, count of downloaded audio sizes

    def load(self) -> None:
        saved = ratelimit.load_accounts(self.home)
        if saved:
            self.accounts.load(saved)

    def save(self, now: float, *, only_if_changed: bool = False) -> None:
        if only_if_changed and self.accounts.version == self._saved_version:
            return
        self._saved_version = self.accounts.version
        try:
            ratelimit.save_accounts(self.home, self.accounts, now)
        except OSError as exc:
            log.warning("cannot save account pacing state: %s", exc)

    def scan(self, settings: Settings) -> None:
        """Pick up cookie files added or replaced on the Settings page (a replaced file re-enables its account)."""
        from pipeline.config.secrets import list_cookie_files

        self.last_scan = time.monotonic()
        names = []
        try:
            files = list_cookie_files(self.home, count=False)
        except OSError as exc:
            log.warning("cannot list cookie files: %s", exc)
            files = []
        conf = settings.accounts  # [accounts.NAME] of settings.toml: a proxy, or a browser's cookies
        for c in files:
            self.accounts.ensure(c.name, str(c.path), c.mtime, proxy=(conf.get(c.name) or {}).get("proxy"))
            names.append(c.name)
        for name, a in conf.items():
            if name not in names and (a.get("cookies_from_browser") or a.get("proxy")):
                self.accounts.ensure(name, browser=a.get("cookies_from_browser"), proxy=a.get("proxy"))
                names.append(name)
        self.home_accounts = names
        if not names:
            self.accounts.ensure(ANONYMOUS)

    def batch_accounts(self, options: dict[str, Any], settings: Settings) -> list[str] | None:
        """A batch's own accounts (``--cookies FILE``, ``--cookies-from-browser``); None: the home's."""
        cookie_files = options.get("cookie_files") or {}
        browsers = options.get("cookie_browsers") or {}
        if not (cookie_files or browsers):
            return None
        names: list[str] = []
        conf = settings.accounts
        for name, path in cookie_files.items():  # a path; the content is read by yt-dlp
            try:
                mtime = Path(path).stat().st_mtime
            except OSError:
                mtime = None
            self.accounts.ensure(name, str(path), mtime, proxy=(conf.get(name) or {}).get("proxy"))
            names.append(name)
        for name, spec in browsers.items():
            self.accounts.ensure(name, browser=spec, proxy=(conf.get(name) or {}).get("proxy"))
            names.append(name)
        return names

    def of(self, batch_accounts: list[str] | None) -> list[str]:
        if batch_accounts is not None:
            return batch_accounts
        return self.home_accounts or [ANONYMOUS]

    @staticmethod
    def site(item: dict[str, Any], settings: PacingSettings) -> str:
        """The site an item's download talks to (its pacing key)."""
        return site_of(item.get("source"), settings)

    def hold_reason(self, buffer: int, disk_free_mb: float | None, min_free_disk_mb: float) -> str | None:
        mean = self._download_mb[0] / self._download_mb[1] if self._download_mb[1] else None
        return self.accounts.hold_reason(buffer, disk_free_mb, min_free_disk_mb, mean)

    def note_download_size(self, path: str | None) -> None:
        if path:
            try:
                self._download_mb[0] += Path(path).stat().st_size / 2**20
                self._download_mb[1] += 1
            except OSError:
                pass


def dispatch_paced(sched: Scheduler, runs: list[BatchRun], now: float) -> None:
    """Start account-bound stages: each takes an account of its batch that is ready on its site, one
    download per (account, site) — any number on the local network, which is never paced.

    A batch whose accounts are all disabled has its waiting downloads failed with a
    clear error (refresh the cookies, then retry-failed); other batches go on.
    """
    pool, pacing = "net", sched.e.pacing
    free = sched.e.pool_sizes[pool] - sched.busy[pool]
    if free <= 0 or sched.pacing_hold():
        return
    for run in runs:
        if run.paced and not pacing.accounts.enabled(pacing.of(run.accounts)):
            _fail_paced(sched, run, now)
    i, idle_rounds = sched.rr[PACED], 0
    while free > 0 and idle_rounds < len(runs):
        run = runs[i % len(runs)]
        i += 1
        if not run.alone(now) and _start_paced(sched, run, now):
            idle_rounds = 0
            free -= 1
        else:
            idle_rounds += 1
    sched.rr[PACED] = i % max(1, len(runs))


def _start_paced(sched: Scheduler, run: BatchRun, now: float) -> bool:
    """Start one of the batch's downloads, from the site whose first item is furthest along and has a
    ready account; False when every site waits."""
    accounts = sched.e.pacing.accounts
    for site, heap in sorted(run.paced.items(), key=lambda kv: kv[1][0] if kv[1] else (0, 0)):
        acct = accounts.acquire(on_site(sched.e.pacing.of(run.accounts), site), now) if heap else None
        if acct is None:
            continue
        lease = Lease(acct.name, site)
        while heap:
            _, n = heapq.heappop(heap)
            if sched.start_item(run, n, "net", now, account=acct, lease=lease):
                break
        else:
            accounts.unused(lease, now)
            del run.paced[site]
            continue
        if not heap:
            del run.paced[site]
        return True
    return False


def _fail_paced(sched: Scheduler, run: BatchRun, now: float) -> None:
    store = sched.e.store
    assert store is not None
    names = ", ".join(sched.e.pacing.of(run.accounts))
    err = errors.AuthFailed(f"every download account of this batch is disabled ({names}): refresh the "
                            "cookie file(s), then retry the failed items")
    for heap in run.paced.values():
        for _, n in heap:
            item = store.item(run.batch_id, n)
            sched.e.outcomes.fail_item(run.batch_id, item, err, run.stages[int(item.get("stage_index", 0))].name,
                                      now)
    run.paced.clear()
    sched.e.outcomes.check_finished(run.batch_id)


def on_site(names: list[str], site: str) -> list[str]:
    """The accounts ``names`` as leases on ``site``: what the pool paces by."""
    return [Lease(n, site) for n in names]


def buffer_stages(stages: list[Stage], pool_for: Callable[[Stage], str]) -> tuple[int, ...]:
    """Next-stage indexes that mean "downloaded, not yet through the heavy stage": after the first
    account-bound stage, up to and including the first cpu/gpu stage after it."""
    first = next((i for i, st in enumerate(stages) if st.account_bound), None)
    if first is None:
        return ()
    for j in range(first + 1, len(stages)):
        if pool_for(stages[j]) in ("cpu", "gpu"):
            return tuple(range(first + 1, j + 1))
    return ()


def buffered(remaining: Iterable[tuple[dict[int, int], tuple[int, ...]]]) -> int:
    """Items downloaded but not yet transcribed, from each batch's (remaining_by_stage, buffer_stages)."""
    return sum(sum(at.get(k, 0) for k in ks) for at, ks in remaining if ks)


def host_of(source: Any) -> str:
    """The host a source URL points at (a local file: "local"), for telling a flaky host from a flagged account."""
    text = str(source or "")
    if "://" not in text:
        return "local"
    try:
        return (urllib.parse.urlsplit(text).hostname or "?").lower()
    except ValueError:
        return "?"

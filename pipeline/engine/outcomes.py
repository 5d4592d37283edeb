"""What a finished stage attempt does to its item: done, next stage, retry at T, wait, park, skip or fail.

Every retry is a scheduling decision made here, never a sleep in a worker: a transient
error waits out its backoff (or the server's Retry-After) without holding a worker; a
rate limit, a full disk, a stream not yet live wait without spending an attempt; an
account refused moves the item to another account; a service's ``Park`` leaves the item
parked (no worker, no timer) until the service releases it. When nothing of a batch is
left to run, its outputs are written off the scheduler thread and only then is it done.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pipeline import errors, notify
from pipeline.engine.pacing import host_of
from pipeline.engine.scheduler import BatchRun
from pipeline.engine.stage import Stage, flag
from pipeline.engine.worker import Outcome, item_log, remove_tmp
from state.models import BatchState, ItemError, ItemStatus

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipeline.engine.core import Engine

log = logging.getLogger("tubemill.engine")


class Outcomes:
    """Turns outcomes into item transitions and finished batches into their outputs."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine
        self.finished_hooks: list[Callable[[str], None]] = []
        self.exporting: set[str] = set()
        # The state a batch being exported will have once its outputs exist (its manifest says so already).
        self.finishing: dict[str, str] = {}
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tubemill-export")

    def record(self, run: BatchRun, n: int, k: int, out: Outcome) -> None:
        store, e = self.e.store, self.e
        assert store is not None
        bid, now = run.batch_id, e.clock.now()
        item = store.item(bid, n)
        stage = run.stages[k]
        account = run.in_use.pop(n, None)
        if out.ok:
            self._succeeded(run, item, k, out, account, now)
            return
        exc = out.exc
        assert exc is not None
        if isinstance(exc, errors.Park) and not run.cancel.is_set():
            # Parked, not failed: the service that asked brings it back (or fails it) later.
            store.transition(bid, n, ItemStatus.PARKED, stage=stage.name, progress=0.0,
                             parked={"by": exc.service, "reason": str(exc)})
            e.kick_services(exc.service)
            return
        if isinstance(exc, errors.Cancelled) or run.cancel.is_set() or e.interrupt.is_set():
            self._stopped(run, item, stage, account, now)
            return
        etype, message, retryable = errors.describe(exc)
        error = ItemError(etype, message, stage.name, retryable, int(item.get("attempts", 0)) + 1, now)
        if isinstance(exc, errors.NotYetLive) and not run.cancel.is_set():
            self._not_yet_live(run, item, stage, exc, error, account, now)
            return
        if account and self._account_refused(run, n, item, account, exc, error, now):
            return
        if isinstance(exc, errors.DiskFull):
            # Our disk, not the item's nor the account's fault: hold it without spending an attempt.
            if account:
                e.pacing.accounts.unused(account, now)
            due = now + float(exc.retry_after or 600.0)
            self.wait_until(bid, item, due, error, f"{stage.name}: {message}; waiting {due - now:.0f}s for disk "
                                                   "space (no attempt spent)", stage=None)
            return
        if account:
            e.pacing.accounts.failure(account, now, counts=retryable, host=host_of(item.get("source")),
                                      item=f"{bid}:{n}")
        if isinstance(exc, errors.RateLimited):
            wait = exc.retry_after or e.settings.retry.rate_limit_wait_s
            self.wait_until(bid, item, now + wait, error, f"{stage.name}: {message}; waiting {wait:.0f}s "
                                                          "(no attempt spent)")
            return
        self._failed(run, item, stage, exc, error, retryable, now)

    def _succeeded(self, run: BatchRun, item: dict[str, Any], k: int, out: Outcome, account: str | None,
                   now: float) -> None:
        assert out.result is not None
        fields = _result_fields(item, {}, run.stages[k].name, out)
        done = set(item.get("done_ahead") or ())
        self._moved_on(run, item, fields, k + 1, done, now)
        if account:
            self.e.pacing.note_download_size(out.result.artifacts.get("audio"))
            self.e.pacing.accounts.success(account, now, self.e.scheduler.buffer())
        self.check_finished(run.batch_id)

    def record_group(self, run: BatchRun, n: int, group: dict[int, Outcome]) -> None:
        """Stages of one item that ran at once (a recipe DAG's independent stages) have all finished.

        Every success is kept — a finished stage never runs again, even when its sibling
        failed — and the first failure (in recipe order) then takes the normal path.
        """
        store, now = self.e.store, self.e.clock.now()
        assert store is not None
        bid, item = run.batch_id, store.item(run.batch_id, n)
        account = run.in_use.pop(n, None)
        ks = sorted(group)
        fields: dict[str, Any] = {}
        for k in ks:
            if group[k].ok:
                fields = _result_fields(item, fields, run.stages[k].name, group[k])
        done = set(item.get("done_ahead") or ()) | {run.stages[k].name for k in ks if group[k].ok}
        failed = [k for k in ks if not group[k].ok]
        if not failed:
            self._moved_on(run, item, fields, ks[0], done, now)
            self.check_finished(bid)
            return
        nk, rest = _advance(run.stages, ks[0], done)
        store.transition(bid, n, ItemStatus.PENDING, stage_index=nk, done_ahead=sorted(rest), stage=None, **fields)
        store.transition(bid, n, ItemStatus.RUNNING, stage=run.stages[failed[0]].name)
        if account:
            run.in_use[n] = account
        self.record(run, n, failed[0], group[failed[0]])

    def _moved_on(self, run: BatchRun, item: dict[str, Any], fields: dict[str, Any], k: int, done: set[str],
                  now: float) -> None:
        """The item's next stage is the first from ``k`` on that is not done yet (or the item is done)."""
        store, e = self.e.store, self.e
        assert store is not None
        bid, n = run.batch_id, item["n"]
        if done:
            k, rest = _advance(run.stages, k, done)
            fields["done_ahead"] = sorted(rest)
        if k >= len(run.stages):
            store.transition(bid, n, ItemStatus.DONE, stage=None, stage_index=k, finished_at=now, **fields)
            remove_tmp(item.get("workdir"))
        elif run.cancel.is_set():
            store.transition(bid, n, ItemStatus.CANCELLED, stage_index=k, stage=None, **fields)
        else:
            seq = store.transition(bid, n, ItemStatus.PENDING, stage_index=k, stage=None, **fields)
            if not store.durable:  # nothing is fsynced, so there is nothing to wait for
                e.scheduler.ready(run, store.item(bid, n))
            elif not e.interrupt.is_set():
                e.scheduler.gate(run, seq, n)

    def _stopped(self, run: BatchRun, item: dict[str, Any], stage: Stage, account: str | None, now: float) -> None:
        store, e = self.e.store, self.e
        assert store is not None
        bid, n = run.batch_id, item["n"]
        if account:
            e.pacing.accounts.unused(account, now)
        if not run.cancel.is_set() and (e.interrupt.is_set() or run.pause.is_set()):
            # Stopped, not failed: back in the queue with no attempt spent (paused: it runs on resume).
            store.transition(bid, n, ItemStatus.PENDING, progress=0.0, stage=None)
            why = "paused" if run.pause.is_set() else "shutdown"
            item_log(item.get("workdir"), f"{stage.name}: stopped ({why}); it runs again from here")
            if not e.interrupt.is_set():
                e.scheduler.ready(run, store.item(bid, n))
        else:
            store.transition(bid, n, ItemStatus.CANCELLED, stage=None)
        self.check_finished(bid)

    def _failed(self, run: BatchRun, item: dict[str, Any], stage: Stage, exc: BaseException, error: ItemError,
                retryable: bool, now: float) -> None:
        store, e = self.e.store, self.e
        assert store is not None
        bid, n = run.batch_id, item["n"]
        attempts = int(item.get("attempts", 0)) + 1
        permanent = not retryable and run.on_error != "retry"
        if permanent or attempts > run.policy.limit:
            store.transition(bid, n, ItemStatus.FAILED, attempts=attempts, error=error.to_dict(), stage=None)
            remove_tmp(item.get("workdir"))
            item_log(item.get("workdir"), f"{stage.name}: failed for good after {attempts} attempt(s)")
            if run.on_error == "stop":
                store.set_batch(bid, state=BatchState.PAUSED, stopped_by={"item": n, "error": error.to_dict()})
                if e.durable:  # a throw-away simulation (the plan) notifies nobody
                    notify.batch_finished(e.home, store.summary(bid).to_dict(), f"stopped: item {n} failed")
                run.pause.set()
                log.warning("batch %s paused: item %d failed (%s: %s)", run.name, n, error.type, error.message)
            self.check_finished(bid)
            return
        # A server that said when to come back (Retry-After on an LLM 429) is not asked sooner.
        due = now + max(run.policy.delay(attempts, e.rng), float(getattr(exc, "retry_after", None) or 0.0))
        self.wait_until(bid, item, due, error, f"{stage.name}: attempt {attempts} failed; retry in {due - now:.1f}s",
                        attempts=attempts, stage=None)

    def wait_until(self, bid: str, item: dict[str, Any], due: float, error: ItemError, line: str,
                   **fields: Any) -> None:
        """The item waits, without a worker, until ``due`` (a retry, a rate limit, a full disk, a stream's start)."""
        store = self.e.store
        assert store is not None
        store.transition(bid, item["n"], ItemStatus.WAITING, next_attempt_at=due, error=error.to_dict(), **fields)
        self.e.scheduler.wait_until(bid, item["n"], due)
        item_log(item.get("workdir"), line)

    def _not_yet_live(self, run: BatchRun, item: dict[str, Any], stage: Stage, exc: errors.NotYetLive,
                      error: ItemError, account: str | None, now: float) -> None:
        """An upcoming stream or premiere: skipped (with its start time), or with ``--wait-for-live``
        scheduled for when it starts; neither spends an attempt nor the account's pacing."""
        store = self.e.store
        assert store is not None
        bid, n = run.batch_id, item["n"]
        if account:
            self.e.pacing.accounts.unused(account, now)
        if flag(run.options.get("wait_for_live")):
            self.wait_until(bid, item, exc.retry_at(now), error, f"{stage.name}: {error.message}; waiting until "
                                                                "it starts (no attempt spent)", stage=None)
            return
        store.transition(bid, n, ItemStatus.SKIPPED, error=error.to_dict(), stage=None)
        item_log(item.get("workdir"), f"{stage.name}: skipped: {error.message}")
        self.check_finished(bid)

    def _account_refused(self, run: BatchRun, n: int, item: dict[str, Any], account: str,
                         exc: BaseException, error: ItemError, now: float) -> bool:
        """A 429/bot check slows the account, bad cookies disable it; either way the item goes back to the
        download queue for any ready account, without spending an attempt. True when handled here."""
        store, accounts = self.e.store, self.e.pacing.accounts
        assert store is not None
        acct = accounts.get(account)
        if isinstance(exc, errors.RateLimited):
            accounts.rate_limited(account, now, exc.retry_after)
            note = f"{account} slowed to x{acct.multiplier:.2f}" if acct else account
        elif isinstance(exc, errors.AuthFailed) and acct is not None and acct.cookies:
            accounts.auth_failed(account, now, str(exc))
            note = f"account {account} disabled (cookies refused); its downloads move to the other accounts"
            log.warning("download account %s disabled: %s", account, exc)
        else:
            return False
        due = accounts.next_ready(self.e.pacing.of(run.accounts), now)  # shown as "next try"; None: busy/none
        store.transition(run.batch_id, n, ItemStatus.WAITING, stage=None, next_attempt_at=due, error=error.to_dict())
        item_log(item.get("workdir"), f"{run.stages[item.get('stage_index', 0)].name}: {error.message}; {note} "
                                      "(no attempt spent)")
        if not run.cancel.is_set():
            self.e.scheduler.ready(run, store.item(run.batch_id, n))
        return True

    def fail_item(self, bid: str, item: dict[str, Any], exc: errors.TubemillError, stage: str, now: float) -> None:
        """Fail an item that is not running (parked or queued) with ``exc``: record, log, no retry."""
        store = self.e.store
        assert store is not None
        etype, message, retryable = errors.describe(exc)
        err = ItemError(etype, message, stage, retryable, int(item.get("attempts", 0)) + 1, now)
        store.transition(bid, item["n"], ItemStatus.FAILED, error=err.to_dict(), stage=None, parked=None)
        item_log(item.get("workdir"), f"{stage}: {message}")

    # ------------------------------------------------------------------ finishing
    def check_finished(self, bid: str) -> None:
        """When nothing is left to run: write the batch outputs (off the scheduler thread), then mark it done.

        ``done`` is set only after the manifest, error report, PDF and ZIP exist, so a
        user (or ``wait``) who sees ``done`` finds every file in place. A crash while
        exporting leaves the batch active with every item finished; the next start
        exports again.
        """
        store = self.e.store
        assert store is not None
        s = store.summary(bid)
        live = s.total - s.finished
        run = self.e.scheduler.runs.get(bid)
        if live or (run and run.running) or bid in self.exporting:
            return
        if s.state in (BatchState.ACTIVE, BatchState.CANCELLED, BatchState.PAUSED):
            if s.finished_at is None:
                store.set_batch(bid, finished_at=self.e.clock.now())
            self.e.scheduler.runs.pop(bid, None)
            self.exporting.add(bid)
            self.finishing[bid] = str(BatchState.DONE if s.state != BatchState.CANCELLED else s.state)
            store.set_runtime(bid, active=[], eta_s=0.0, held="writing batch outputs")
            self._hooks.submit(self._finish, bid, s.state != BatchState.CANCELLED)

    def _finish(self, bid: str, mark_done: bool) -> None:
        try:
            for fn in self.finished_hooks:
                try:
                    fn(bid)
                except Exception:  # an export bug must not leave the batch unfinished forever
                    log.exception("batch-finished hook failed for %s", bid)
        finally:
            with self.e.lock:
                self.exporting.discard(bid)
                self.finishing.pop(bid, None)
                store = self.e.store
                if store is not None:
                    if mark_done and store.header(bid)["state"] != BatchState.CANCELLED:
                        store.set_batch(bid, state=BatchState.DONE)
                        if self.e.durable:  # a throw-away simulation (the plan) notifies nobody
                            notify.batch_finished(self.e.home, store.summary(bid).to_dict())
                    store.set_runtime(bid, held=None)
            self.e.kick()

    def close(self) -> None:
        """Batch outputs being written finish first."""
        self._hooks.shutdown(wait=True)


def _result_fields(item: dict[str, Any], fields: dict[str, Any], stage: str, out: Outcome) -> dict[str, Any]:
    """``fields`` plus what one successful stage adds to its item: its timing, artifacts, facts."""
    assert out.result is not None
    fields = dict(fields)
    fields["timings"] = {**(fields.get("timings") or item.get("timings") or {}), stage: round(out.seconds, 4)}
    fields.update(progress=1.0, attempts=0, error=None)
    if not out.result.measured:
        fields["unmeasured"] = sorted({*(fields.get("unmeasured") or item.get("unmeasured") or ()), stage})
    if out.result.artifacts:
        fields["artifacts"] = {**(fields.get("artifacts") or item.get("artifacts") or {}), **out.result.artifacts}
    meta = dict(out.result.meta)
    for key in ("id", "title", "duration", "flags"):
        if key in meta and meta[key] is not None:
            fields[key] = meta.pop(key)
    if meta:
        fields["meta"] = {**(fields.get("meta") or item.get("meta") or {}), **meta}
    return fields


def _advance(stages: list[Stage], k: int, done: set[str]) -> tuple[int, set[str]]:
    """The first stage from ``k`` on not done yet, and the done stages still ahead of it."""
    rest = set(done)
    while k < len(stages) and stages[k].name in rest:
        rest.discard(stages[k].name)
        k += 1
    return k, rest

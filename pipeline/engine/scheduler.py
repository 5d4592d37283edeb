"""The scheduler: the only code that decides what runs next.

Each pass (``tick``) takes control requests from other processes, records finished
stages, releases items whose retry time has come or whose last completion is now
durable, and fills free pool slots round-robin across batches (fair sharing). Heavy
pools ask the governor first; account-bound stages wait in their own ``paced`` queue
for a ready account. A fresh batch's first item starts alone; the rest when its first stage ends or
after :data:`FIRST_ALONE_S`: it is the result a user watches for (and the check that the set-up works),
and on two cores four first calls started together took 3–4× longer each. Workers run exactly one stage
and return an :class:`~pipeline.engine.worker.Outcome`; they never touch scheduling state.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.settings import RetryPolicy
from pipeline.engine import ratelimit
from pipeline.engine.pacing import PACED, buffer_stages, buffered, dispatch_paced, on_site
from pipeline.engine.recipe import companions
from pipeline.engine.runtime import publish_runtime
from pipeline.engine.stage import Stage, StageContext, safe_name
from pipeline.engine.worker import Outcome, execute
from state.models import BatchState, ItemStatus

if TYPE_CHECKING:
    from pipeline.engine.core import Engine

RUNTIME_EVERY_S = 1.0


@dataclass
class BatchRun:
    """Scheduling state of one active batch (owner only; touched by the scheduler thread)."""

    batch_id: str
    name: str
    stages: list[Stage]
    options: dict[str, Any]
    policy: RetryPolicy
    on_error: str
    output_dir: Path
    ready: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # heaps of (-stage_index, n)
    paced: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # site -> heap of its downloads
    gated: deque[tuple[int, int]] = field(default_factory=deque)
    running: dict[int, str] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Paused: nothing new starts, and a download stops at its next check (a stalled read would hold its account
    # for minutes); it goes back to the queue, resuming from its .part. Other running stages finish.
    pause: threading.Event = field(default_factory=threading.Event)
    accounts: list[str] | None = None  # the batch's own cookie files; None: the home's accounts
    in_use: dict[int, str] = field(default_factory=dict)  # item -> account (a Lease: with its site) downloading
    buffer_stages: tuple[int, ...] = ()  # next-stage indexes of items downloaded but not yet transcribed
    opts: Any = None  # the recipe's parsed options (ctx.opts)
    # The recipe's DAG: after[k] = later stages that need nothing from stage k on, so they may start with it.
    after: list[tuple[int, ...]] = field(default_factory=list)
    group: dict[int, dict[int, Outcome | None]] = field(default_factory=dict)  # item -> its stages running at once
    costs: dict[str, float] = field(default_factory=dict)  # the recipe's stage costs, for stages not measured yet
    first_alone_until: float | None = None  # see FIRST_ALONE_S

    def alone(self, now: float) -> bool:
        """True while the batch's first item runs alone (nothing else of this batch may start)."""
        if self.first_alone_until is not None and now >= self.first_alone_until:
            self.first_alone_until = None
        return self.first_alone_until is not None and bool(self.running)


FIRST_ALONE_S = 3.0  # a batch with any finished stage starts all at once


class Scheduler:
    """Queues, timers, the durability gate and dispatch, for the engine that owns the home.

    One class on purpose: every method reads or writes the same ready queues, timers and busy counts
    under the engine's lock; split further, those would be handed between objects.
    """

    def __init__(self, engine: Engine, executors: dict[str, Executor]) -> None:
        self.e = engine
        self.executors = executors
        self.runs: dict[str, BatchRun] = {}
        self.timers: list[tuple[float, str, int]] = []
        self.busy: dict[str, int] = dict.fromkeys(engine.pool_sizes, 0)
        self.held: dict[str, str | None] = dict.fromkeys(engine.pool_sizes, None)
        self.rr: dict[str, int] = dict.fromkeys([*engine.pool_sizes, PACED], 0)
        self.completions: queue.SimpleQueue[tuple[BatchRun, int, int, str, Future[Outcome]]] = queue.SimpleQueue()
        self._last_runtime = 0.0
        self.waits_published: bytes | None = None  # the wait reasons followers last got

    # ------------------------------------------------------------------ one pass
    def tick(self, now: float, mono: float) -> None:
        """One pass: record completions, release what is due, start what fits (the engine holds its lock)."""
        e = self.e
        assert e.store is not None
        self.drain_completions()
        if e.stopping.is_set():
            return
        self._release_timers(now)
        self._release_gated()
        self._dispatch(now)
        if mono - self._last_runtime >= RUNTIME_EVERY_S:
            self._last_runtime = mono
            self.publish_runtime()
        # Group commit waits up to flush_delay; ask for it early when a worker would otherwise sit
        # idle while items wait for durability (the store bounds how often that may happen).
        idle = [p for p, n in e.pool_sizes.items() if n and self.busy[p] < n
                and not any(r.ready[p] for r in self.runs.values())]
        if idle and any(r.gated for r in self.runs.values()):
            e.store.request_flush()

    def next_wakeup(self, now: float) -> float | None:
        """The next time something becomes runnable on its own: a retry timer or a paced account."""
        times = [self.timers[0][0]] if self.timers else []
        accounts = self.e.pacing.accounts
        for run in self.runs.values():
            if run.first_alone_until is not None:
                times.append(run.first_alone_until)
            for site, heap in run.paced.items():
                t = accounts.next_ready(on_site(self.e.pacing.of(run.accounts), site), now) if (
                    heap and not accounts.held) else None
                if t is not None:
                    times.append(t)
        return min(times) if times else None

    def any_running(self) -> bool:
        return any(r.running for r in self.runs.values())

    # ------------------------------------------------------------------ queues
    def activate(self, run: BatchRun, needs: dict[str, tuple[str, ...]] | None = None) -> None:
        run.ready = {p: [] for p in self.e.pool_sizes}
        run.after = companions([s.name for s in run.stages], needs or {})
        run.buffer_stages = buffer_stages(run.stages, self.pool_for)
        self.runs[run.batch_id] = run
        self.enqueue_new(run.batch_id)

    def enqueue_new(self, bid: str) -> None:
        """Queue items of an active batch the scheduler does not track yet."""
        store = self.e.store
        assert store is not None
        run = self.runs[bid]
        queued = {n for q in [*run.ready.values(), *run.paced.values()] for _, n in q} | set(run.running)
        queued |= {n for _, n in run.gated}
        queued |= {n for _, b, n in self.timers if b == bid}
        for item in store.items(bid, status=[ItemStatus.PENDING, ItemStatus.WAITING]):
            n = item["n"]
            if n in queued:
                continue
            if item["status"] == ItemStatus.WAITING and item.get("next_attempt_at"):
                heapq.heappush(self.timers, (float(item["next_attempt_at"]), bid, n))
            else:
                self.ready(run, item)

    def forget(self, bid: str, n: int) -> None:
        """An item removed from its batch leaves every queue and timer (it is no longer in the store)."""
        run = self.runs.get(bid)
        if run is not None:
            for heaps in (run.ready, run.paced):
                for key, q in heaps.items():
                    heaps[key] = [x for x in q if x[1] != n]
                    heapq.heapify(heaps[key])
            run.gated = deque(x for x in run.gated if x[1] != n)
        self.timers = [t for t in self.timers if (t[1], t[2]) != (bid, n)]
        heapq.heapify(self.timers)

    def drop(self, bid: str) -> BatchRun | None:
        """Forget a cancelled batch's queues and timers (running stages stop at their next check)."""
        run = self.runs.get(bid)
        if run:
            run.cancel.set()
            for q in run.ready.values():
                q.clear()
            run.paced.clear()
            run.gated.clear()
        self.timers = [t for t in self.timers if t[1] != bid]
        heapq.heapify(self.timers)
        return run

    def pool_for(self, stage: Stage) -> str:
        """The pool a stage runs in: its resource, except gpu stages on a machine without a gpu pool."""
        if stage.resource == "gpu" and not self.e.pool_sizes.get("gpu"):
            return "cpu"
        return stage.resource

    def ready(self, run: BatchRun, item: dict[str, Any]) -> None:
        k = int(item.get("stage_index", 0))
        if k >= len(run.stages):
            return
        # Items further along go first: results arrive one by one instead of all at the end, and
        # downloaded audio waiting for transcription does not pile up on disk.
        stage = run.stages[k]
        if stage.account_bound and self._needs_account(run, stage, item):  # waits for its (account, site)
            site = self.e.pacing.site(item, self.e.settings.pacing)
            heapq.heappush(run.paced.setdefault(site, []), (-k, item["n"]))
            return
        heapq.heappush(run.ready[self.pool_for(stage)], (-k, item["n"]))

    def wait_until(self, bid: str, n: int, due: float) -> None:
        heapq.heappush(self.timers, (due, bid, n))

    def gate(self, run: BatchRun, seq: int, n: int) -> None:
        """The item's next stage waits until this completion is on disk (group commit)."""
        run.gated.append((seq, n))

    def _needs_account(self, run: BatchRun, stage: Stage, item: dict[str, Any]) -> bool:
        if stage.needs_account is None:
            return True
        try:
            return stage.needs_account(item, Path(item.get("workdir") or self.workdir(run, item)))
        except OSError:
            return True

    def _release_timers(self, now: float) -> None:
        store = self.e.store
        assert store is not None
        while self.timers and self.timers[0][0] <= now:
            _, bid, n = heapq.heappop(self.timers)
            run = self.runs.get(bid)
            if run is None or run.cancel.is_set():
                continue
            item = store.item(bid, n)
            if item["status"] in (ItemStatus.WAITING, ItemStatus.PENDING):
                self.ready(run, item)

    def _release_gated(self) -> None:
        store = self.e.store
        assert store is not None
        for run in self.runs.values():
            if not run.gated:
                continue
            durable = store.durable_seq(run.batch_id)
            while run.gated and run.gated[0][0] <= durable:
                _, n = run.gated.popleft()
                self.ready(run, store.item(run.batch_id, n))

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, now: float) -> None:
        e = self.e
        assert e.store is not None
        runs = [r for r in self.runs.values() if not r.cancel.is_set()]
        runs = [r for r in runs if e.store.header(r.batch_id)["state"] == BatchState.ACTIVE]
        if any(r.paced for r in runs):
            dispatch_paced(self, runs, now)
        for pool, size in e.pool_sizes.items():
            if not size or not runs:
                continue
            free = size - self.busy[pool]
            if free <= 0 or not any(r.ready[pool] for r in runs):
                continue
            held = e.governor.hold_reason(pool)
            self.held[pool] = held
            if held:
                continue
            i = self.rr[pool]
            idle_rounds = 0
            while free > 0 and idle_rounds < len(runs):
                run = runs[i % len(runs)]
                i += 1
                if not run.ready[pool] or run.alone(now):
                    idle_rounds += 1
                    continue
                idle_rounds = 0
                _, n = heapq.heappop(run.ready[pool])
                if self.start_item(run, n, pool, now):
                    free -= 1
            self.rr[pool] = i % max(1, len(runs))

    def buffer(self) -> int:
        """Items downloaded but not yet transcribed, over every active batch."""
        store = self.e.store
        assert store is not None
        return buffered((store.remaining_by_stage(r.batch_id), r.buffer_stages)
                        for r in self.runs.values() if r.buffer_stages)

    def pacing_hold(self) -> str | None:
        e = self.e
        floor = float(e.settings.governor.min_free_disk_mb)
        return e.pacing.hold_reason(self.buffer(), e.governor.readings().disk_free_mb, floor)

    def start_item(self, run: BatchRun, n: int, pool: str, now: float,
               account: ratelimit.Account | None = None, lease: ratelimit.Lease | None = None) -> bool:
        e = self.e
        assert e.store is not None
        try:
            item = e.store.item(run.batch_id, n)
        except KeyError:  # removed from the batch by hand while it sat in a queue
            return False
        if item["status"] not in (ItemStatus.PENDING, ItemStatus.WAITING):
            return False
        k = int(item.get("stage_index", 0))
        stage = run.stages[k]
        workdir = Path(item.get("workdir") or self.workdir(run, item))
        e.store.transition(
            run.batch_id, n, ItemStatus.RUNNING, stage=stage.name, stage_index=k, progress=0.0,
            workdir=str(workdir), next_attempt_at=None,
            **({"started_at": now} if not item.get("started_at") else {}),
            **({"account": account.name} if account else {}),
        )
        if account is not None:
            run.in_use[n] = lease or ratelimit.Lease(account.name)
        run.running[n] = stage.name
        extra = self._with_it(run, item, k) if account is None and run.after and run.after[k] else []
        if extra:
            run.group[n] = dict.fromkeys([k, *(j for j, _ in extra)])
            run.running[n] = "+".join(run.stages[j].name for j in run.group[n])
        for j, p in [(k, pool), *extra]:
            self._submit(run, item, j, workdir, p, account if j == k else None)
        return True

    def _with_it(self, run: BatchRun, item: dict[str, Any], k: int) -> list[tuple[int, str]]:
        """Later stages of the item that may start now, beside stage ``k``, each with a free slot in its pool."""
        done = set(item.get("done_ahead") or ())
        out = []
        for j in run.after[k]:
            stage = run.stages[j]
            pool = self.pool_for(stage)
            if stage.name in done or stage.account_bound or self.busy[pool] >= self.e.pool_sizes[pool]:
                continue
            if self.e.governor.hold_reason(pool):
                continue
            out.append((j, pool))
        return out

    def _submit(self, run: BatchRun, item: dict[str, Any], k: int, workdir: Path, pool: str,
                account: ratelimit.Account | None) -> None:
        stage = run.stages[k]
        ctx = self._context(run, item, stage, workdir, pool, account)
        self.busy[pool] += 1
        try:
            fut = self.executors[pool].submit(execute, stage, item, ctx)
        except Exception as exc:  # an executor that is gone (shut down, cluster lost): a failed attempt, not a hang
            fut = Future()
            fut.set_exception(exc)
        fut.add_done_callback(lambda f, _run=run, _n=item["n"], _k=k, _p=pool: self._done(_run, _n, _k, _p, f))

    def _context(self, run: BatchRun, item: dict[str, Any], stage: Stage, workdir: Path, pool: str,
                 account: ratelimit.Account | None) -> StageContext:
        e, bid, n = self.e, run.batch_id, item["n"]
        return StageContext(
            batch_id=bid, batch_name=run.name, item_n=n, stage=stage.name, workdir=workdir,
            options=run.options, opts=run.opts, settings=e.settings, attempt=int(item.get("attempts", 0)) + 1,
            account=account.name if account else None,
            _progress=lambda f, _bid=bid, _n=n: self._progress(_bid, _n, f),
            _cancelled=lambda _run=run, _net=stage.resource == "net": (
                _run.cancel.is_set() or e.interrupt.is_set() or (_net and _run.pause.is_set())),
            home=e.home, pool_size=e.pool_sizes[pool], cookiefile=account.cookiefile if account else None,
            browser=account.browser if account else None, proxy=account.proxy if account else None,
            ytdlp=e.settings.ytdlp, min_free_disk_mb=float(e.settings.governor.min_free_disk_mb),
        )

    def workdir(self, run: BatchRun, item: dict[str, Any]) -> Path:
        label = item.get("title") or (item["source"].split() or [""])[0]
        label = label.rsplit("/", 1)[-1] if "://" in label else label
        suffix = f"-{safe_name(item['id'], 40)}" if item.get("id") else ""
        return run.output_dir / f"{item['n']:04d}-{safe_name(label, 60)}{suffix}"

    def _progress(self, bid: str, n: int, fraction: float) -> None:
        store = self.e.store
        if store is not None:
            store.update_item(bid, n, progress=round(fraction, 3))

    def _done(self, run: BatchRun, n: int, k: int, pool: str, fut: Future[Outcome]) -> None:
        self.completions.put((run, n, k, pool, fut))
        self.e.kick()

    def drain_completions(self) -> None:
        while True:
            try:
                run, n, k, pool, fut = self.completions.get_nowait()
            except queue.Empty:
                return
            self.busy[pool] -= 1
            run.first_alone_until = None  # a first stage ended: the rest of the batch may start
            try:
                outcome = fut.result()
            except BaseException as exc:  # executor-level failure (Dask worker lost, pool shut down)
                outcome = Outcome(ok=False, seconds=0.0, exc=exc)
            group = run.group.get(n)
            if group is not None:
                group[k] = outcome
                if any(v is None for v in group.values()):
                    continue  # its sibling stages still run; the item moves on when all have finished
                del run.group[n]
                run.running.pop(n, None)
                self.e.outcomes.record_group(run, n, group)  # type: ignore[arg-type]
                continue
            run.running.pop(n, None)
            self.e.outcomes.record(run, n, k, outcome)

    def publish_runtime(self) -> None:
        """What the pages read of each running batch: its active items, why it holds, its ETA."""
        publish_runtime(self)


"""The engine: one scheduler thread, pools by resource class, retries as scheduling.

The scheduler is the only code that decides what runs next. Each pass (``tick``):
takes control requests from other processes, records finished stages, releases
items whose retry time has come or whose last completion is now durable, and fills
free pool slots round-robin across batches (fair sharing). Heavy pools ask the
governor first. Workers run exactly one stage and return an outcome; they never
touch scheduling state.

Ownership: one process owns a home (``state.lock``). An ``Engine`` that finds the
home owned runs as a *follower*: it reads snapshots from the files and posts
control requests, and it takes over when the owner goes away.
"""

from __future__ import annotations

import heapq
import logging
import queue
import random
import shutil
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.app.progress import fmt_duration
from pipeline.config.settings import RetryPolicy, Settings, default_home, load_settings
from pipeline.engine import ratelimit
from pipeline.engine.clock import SystemClock
from pipeline.engine.governor import Governor
from pipeline.engine.outputs import export_batch
from pipeline.engine.ratelimit import ANONYMOUS, AccountPool
from pipeline.engine.recipe import default_recipe, recipe_of, recipe_stages
from pipeline.engine.stage import Stage, StageContext, StageResult, flag, safe_name
from pipeline.errors import BatchExists, UnknownBatch
from pipeline.recipes.transcribe import llm_batch
from state import control
from state.lock import HomeLock, ensure_home, read_owner
from state.models import BatchState, BatchSummary, ItemError, ItemStatus
from state.reader import find_summary, read_batch, read_summaries
from state.store import Store

log = logging.getLogger("tubemill.engine")

ON_ERROR = ("continue", "stop", "retry")
CONTROL_POLL_S = 0.5
MAX_POOL = 32
RUNTIME_EVERY_S = 1.0
ACCOUNT_SCAN_S = 5.0
PACED = "paced"  # the ready queue of account-bound stages (they run in the net pool)


@dataclass
class _Outcome:
    ok: bool
    seconds: float
    result: StageResult | None = None
    exc: BaseException | None = None


@dataclass
class _Run:
    """Scheduling state of one active batch (owner only; touched by the scheduler thread)."""

    batch_id: str
    name: str
    stages: list[Stage]
    options: dict[str, Any]
    policy: RetryPolicy
    on_error: str
    output_dir: Path
    ready: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # heaps of (-stage_index, n)
    gated: deque[tuple[int, int]] = field(default_factory=deque)
    running: dict[int, str] = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event)
    # Paused: nothing new starts, and a download stops at its next check (a stalled read would hold its account
    # for minutes); it goes back to the queue, resuming from its .part. Other running stages finish.
    pause: threading.Event = field(default_factory=threading.Event)
    progress: dict[int, float] = field(default_factory=dict)
    accounts: list[str] | None = None  # the batch's own cookie files; None: the home's accounts
    in_use: dict[int, str] = field(default_factory=dict)  # item -> account of its running download
    buffer_stages: tuple[int, ...] = ()  # next-stage indexes of items downloaded but not yet transcribed
    opts: Any = None  # the recipe's parsed options (ctx.opts)


@dataclass
class PoolStatus:
    name: str
    size: int
    busy: int
    held: str | None = None


class Engine:
    """The one engine a process builds (``st.cache_resource`` in the app, ``main`` in the CLI)."""

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        settings: Settings | None = None,
        clock: Any | None = None,
        executors: dict[str, Executor] | None = None,
        governor: Governor | None = None,
        role: str = "engine",
        takeover: bool = True,
        seed: int | None = None,
        accounts: AccountPool | None = None,
        simulate: bool = False,
    ) -> None:
        self.home = ensure_home(Path(home) if home else default_home())
        self.settings = settings or load_settings(self.home)
        self.clock = clock or SystemClock()
        self.role = role
        self.takeover = takeover
        self.rng = random.Random(seed)
        # simulate: the plan simulator drives tick() on virtual time; no durability gate, no disk checks,
        # no batch outputs.
        self.simulate = simulate
        self.accounts = accounts or AccountPool(self.settings.pacing, rng=random.Random(seed))
        self.output_root = self.settings.output_root(self.home)
        self.governor = governor or Governor(self.output_root, self.settings.governor)
        self.pool_sizes = self._pool_sizes(self.settings.pools)
        self._own_executors = executors is None
        # Threads start lazily up to max_workers, and pool_sizes bounds the concurrency, so a
        # pool can grow at run time (Settings page) without replacing its executor.
        self._executors = executors or {
            p: ThreadPoolExecutor(max_workers=max(n, MAX_POOL), thread_name_prefix=f"tubemill-{p}")
            for p, n in self.pool_sizes.items()
        }
        self.lock = HomeLock(self.home, role=role)
        self.store: Store | None = None
        self.messages: list[str] = []
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._completions: queue.SimpleQueue[tuple[_Run, int, int, str, Future[_Outcome]]] = queue.SimpleQueue()
        self._runs: dict[str, _Run] = {}
        self._timers: list[tuple[float, str, int]] = []
        self._busy: dict[str, int] = dict.fromkeys(self.pool_sizes, 0)
        self._rr: dict[str, int] = dict.fromkeys(self.pool_sizes, 0)
        self._held: dict[str, str | None] = dict.fromkeys(self.pool_sizes, None)
        self._home_accounts: list[str] = []
        self._last_account_scan = float("-inf")
        self._accounts_saved = -1
        self._download_mb: list[float] = [0.0, 0.0]  # sum, count of downloaded audio sizes
        self._stopping = threading.Event()
        self._interrupt = threading.Event()
        self._thread: threading.Thread | None = None
        self._standby: threading.Thread | None = None
        self._last_control = 0.0
        self._last_runtime = 0.0
        self._finished_hooks: list[Callable[[str], None]] = []
        self._exporting: set[str] = set()
        self.llm_batches: llm_batch.LLMBatchManager | None = None
        self._hooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tubemill-export")
        self.clock.subscribe(self.kick)
        if not simulate:  # a simulated batch has no files to write a manifest, PDF or ZIP of
            self.on_batch_finished(self.export)

    # ------------------------------------------------------------------ lifecycle
    @staticmethod
    def _pool_sizes(pools: dict[str, int]) -> dict[str, int]:
        sizes = {p: max(0, int(pools.get(p, 0))) for p in ("net", "cpu", "gpu", "llm")}
        for p in ("net", "cpu", "llm"):
            sizes[p] = max(1, sizes[p])
        return sizes

    @property
    def owner(self) -> bool:
        return self.store is not None

    def start(self, *, run_scheduler: bool = True) -> bool:
        """Own the home if nobody does (True), else follow the owner (False) and take over when it goes."""
        if self.lock.try_acquire():
            self._become_owner(run_scheduler)
            return True
        if self.takeover and self._standby is None:
            self._standby = threading.Thread(target=self._standby_loop, name="tubemill-standby", daemon=True)
            self._standby.start()
        return False

    def _become_owner(self, run_scheduler: bool = True) -> None:
        store = Store(self.home, flush_delay=self.settings.flush_delay_s, clock=self.clock.now,
                      durable=not self.simulate)
        self.messages.extend(store.open())
        if not self.simulate:
            saved = ratelimit.load_accounts(self.home)
            if saved:
                self.accounts.load(saved)
        self._scan_accounts()
        control.clean_control(self.home)
        store.add_listener(self.kick)
        with self._lock:
            self.store = store
            for bid in store.batch_ids():
                if store.header(bid)["state"] in (BatchState.ACTIVE, BatchState.PAUSED):
                    self._activate(bid)
        for msg in self.messages:
            log.warning("%s", msg)
        if run_scheduler:
            self.run_scheduler()

    def run_scheduler(self) -> None:
        """Start the scheduler thread (an owner started with ``run_scheduler=False`` may start it later)."""
        if self.store is not None and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tubemill-scheduler", daemon=True)
            self._thread.start()
            self.llm_batches = llm_batch.LLMBatchManager(self, interval_s=self.settings.llm_batch_poll_s)
            self.llm_batches.start()

    def _standby_loop(self) -> None:
        while not self._stopping.wait(1.0):
            if self.lock.try_acquire(attempts=1):
                log.info("previous owner of %s is gone; taking over", self.home)
                self._become_owner()
                return

    def shutdown(self, *, interrupt: bool = False, timeout: float = 30.0) -> None:
        """Stop starting work, let running stages finish (or stop them with ``interrupt``), flush, release.

        Interrupted items go back to pending with their attempt refunded: stopping the
        app is not the item's fault.
        """
        if interrupt:
            self._interrupt.set()
        self._stopping.set()
        self.kick()
        if self.llm_batches is not None:
            self.llm_batches.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.store is not None:
            deadline = time.monotonic() + timeout
            while self._any_running() and time.monotonic() < deadline:
                self._drain_completions()
                time.sleep(0.02)
            self._drain_completions()
            self._hooks.shutdown(wait=True)  # batch outputs being written finish first
            if not self.simulate:
                try:
                    ratelimit.save_accounts(self.home, self.accounts, self.clock.now())
                except OSError as exc:
                    log.warning("cannot save account pacing state: %s", exc)
            self.store.close()
            self.store = None
        if self._own_executors:
            for ex in self._executors.values():
                ex.shutdown(wait=False, cancel_futures=True)
        self.lock.release()

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def kick(self) -> None:
        """Wake the scheduler now (a completion, a flush, a control change, a clock move)."""
        self._wake.set()

    def apply_settings(self, settings: Settings) -> None:
        """Take new pool sizes, retry policy and governor floors now; running stages are not disturbed."""
        with self._lock:
            sizes = self._pool_sizes(settings.pools)
            if self._own_executors:
                sizes = {p: min(n, MAX_POOL) for p, n in sizes.items()}
            if bool(sizes.get("gpu")) != bool(self.pool_sizes.get("gpu")):
                sizes["gpu"] = self.pool_sizes.get("gpu", 0)  # where gpu stages queue is fixed at start
            self.settings = settings
            for run in self._runs.values():  # the recipe's options see the new settings (download limits)
                run.opts = _parse_options(run.options, settings)
            self.pool_sizes.update(sizes)
            self.governor.settings = settings.governor
            self.accounts.settings = settings.pacing
            self.output_root = settings.output_root(self.home)  # for batches created from now on
            self.governor.output_root = self.output_root
        self.kick()

    def on_batch_finished(self, fn: Callable[[str], None]) -> None:
        self._finished_hooks.append(fn)

    # ------------------------------------------------------------------ public control
    def submit(
        self,
        name: str,
        sources: Iterable[str | dict[str, Any]],
        *,
        recipe: str | list[str] | None = None,
        options: dict[str, Any] | None = None,
        output_dir: str | None = None,
        resume: bool = False,
        paused: bool = False,
    ) -> str:
        """Create a batch (or with ``resume``, continue one and add new sources); returns its id.

        ``paused`` queues a new batch without starting it (review first, or start several together).
        """
        recipe = recipe if recipe is not None else default_recipe()
        stages = recipe_stages(recipe)
        stage_names = [s.name for s in stages]
        opts = dict(options or {})
        on_error = opts.get("on_error", self.settings.on_error)
        if on_error not in ON_ERROR:
            raise errors.ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        opts["on_error"] = on_error
        if isinstance(recipe, str):
            opts.setdefault("recipe_name", recipe)
        sources = [s for s in sources]
        if not self.owner:
            req = control.post_request(
                self.home, "submit", name=name, sources=sources, recipe=recipe, options=opts,
                output_dir=output_dir, resume=resume, paused=paused,
            )
            reply = control.wait_reply(self.home, req, timeout=15.0)
            if reply is None:
                raise errors.TubemillError(f"the engine owning {self.home} did not answer")
            if not reply["ok"]:
                raise errors.TubemillError(reply["message"])
            return reply["batch_id"]
        assert self.store is not None
        with self._lock:
            try:
                existing = self.store.resolve(name)
            except UnknownBatch:
                existing = None
            if existing and not resume:
                raise BatchExists(f"a batch named {name!r} already exists; add --resume to continue it")
            if existing:
                old = self.store.items(existing)
                known = {it.get("id") or it["source"] for it in old}
                fresh = [s for s in sources if _item_key(s) not in known]
                self.store.add_items(existing, fresh)
                if self.store.header(existing)["state"] in (BatchState.PAUSED, BatchState.CANCELLED):
                    self._resume(existing)
                elif existing not in self._runs:
                    self.store.set_batch(existing, state=BatchState.ACTIVE)
                    self._activate(existing)
                else:
                    self._enqueue_new(existing)
                self.kick()
                return existing
            from pipeline.config.secrets import save_private_options, split_private_options

            out = Path(output_dir).expanduser() if output_dir else self.output_root
            batch_dir = out / safe_name(name, default="batch")
            public, private = split_private_options(opts)  # a proxy password never reaches the state file
            batch_id = self.store.create_batch(
                name, stage_names, sources, options=public, output_dir=str(batch_dir)
            )
            save_private_options(self.home, batch_id, private)
            if paused:
                self.store.set_batch(batch_id, state=BatchState.PAUSED)
            self._activate(batch_id)
        self.kick()
        return batch_id

    def pause(self, ref: str | None = None) -> None:
        """Start nothing new in the batch (or all batches); running stages finish."""
        self.control("pause", ref)

    def resume(self, ref: str | None = None) -> None:
        self.control("resume", ref)

    def cancel(self, ref: str | None = None) -> None:
        """Stop the batch: waiting items are cancelled, running stages stop at their next check."""
        self.control("cancel", ref)

    def retry_failed(self, ref: str) -> int:
        """Failed items get a fresh attempt budget and run again from the stage that failed."""
        return self.control("retry_failed", ref)

    def retry_summaries(self, ref: str) -> int:
        """Done items whose summary fell back (flag ``summary-fallback``) ask the LLM again.

        Only the summary and the item's closing stage run again; transcripts, downloads and
        every other finished stage are kept. Returns the number of items reopened.
        """
        return self.control("retry_summaries", ref)

    def control(self, op: str, ref: str | None) -> int:
        """Apply ``pause|resume|cancel|retry_failed`` to one batch (or all with ``ref=None``), from any process."""
        if not self.owner:
            req = control.post_request(self.home, op, batch=ref)
            reply = control.wait_reply(self.home, req, timeout=10.0)
            if reply is None:
                raise errors.TubemillError(f"the engine owning {self.home} did not answer")
            if not reply["ok"]:
                raise errors.TubemillError(reply["message"])
            return int(reply.get("count", 0))
        assert self.store is not None
        with self._lock:
            ids = [self.store.resolve(ref)] if ref else self.store.batch_ids()
            count = 0
            for bid in ids:
                count += self._apply_control(op, bid, explicit=ref is not None)
        self.kick()
        return count

    def _apply_control(self, op: str, bid: str, explicit: bool) -> int:
        assert self.store is not None
        state = self.store.header(bid)["state"]
        if op == "pause" and state == BatchState.ACTIVE:
            self.store.set_batch(bid, state=BatchState.PAUSED)
            if bid in self._runs:
                self._runs[bid].pause.set()
        elif op == "resume" and (state == BatchState.PAUSED or (explicit and state == BatchState.CANCELLED)):
            self._resume(bid)
        elif op == "cancel" and state in (BatchState.ACTIVE, BatchState.PAUSED):
            self._cancel(bid)
        elif op in ("retry_failed", "retry_summaries"):
            n = (self.store.reopen_items(bid, [ItemStatus.FAILED]) if op == "retry_failed"
                 else self._reopen_summaries(bid))
            if n:
                self.store.set_batch(bid, state=BatchState.ACTIVE, finished_at=None)
                if bid in self._runs:
                    self._enqueue_new(bid)
                else:
                    self._activate(bid)
            return n
        return 1

    def _reopen_summaries(self, bid: str) -> int:
        """Reopen done items flagged ``summary-fallback`` at their summarize stage (their summary files removed)."""
        from pipeline.common import llmcall
        from pipeline.recipes.transcribe.stages.summarize import FLAGS, SUMMARY_JSON, SUMMARY_MD

        assert self.store is not None
        recipe = self.store.header(bid).get("recipe") or []
        if "summarize" not in recipe:
            return 0
        k = recipe.index("summarize")
        llmcall.clear_down()  # the user says the endpoint works now: ask it, do not trust the last failure
        numbers = []
        for item in self.store.items(bid, status=[ItemStatus.DONE]):
            if FLAGS["fallback"] not in (item.get("flags") or []) or not item.get("workdir"):
                continue
            wd = Path(item["workdir"])
            for name in (SUMMARY_JSON, SUMMARY_MD, llm_batch.REQUEST_FILE, llm_batch.REALTIME_MARKER):
                (wd / name).unlink(missing_ok=True)
            _item_log(str(wd), "summarize: summary retry requested (transcript kept)")
            numbers.append(item["n"])
        return self.store.reopen_at_stage(bid, numbers, k)

    def release_awaiting(self, bid: str, n: int) -> None:
        """An item parked for the Batch API goes back to its summarize stage (which finds its result)."""
        assert self.store is not None
        with self._lock:
            item = self.store.item(bid, n)
            if item["status"] != ItemStatus.AWAITING_LLM_BATCH:
                return
            self.store.transition(bid, n, ItemStatus.PENDING, stage=None)
            run = self._runs.get(bid)
            if run is not None and not run.cancel.is_set():
                self._ready(run, self.store.item(bid, n))
        self.kick()

    def fail_awaiting(self, bid: str, n: int, exc: errors.TubemillError) -> None:
        assert self.store is not None
        with self._lock:
            item = self.store.item(bid, n)
            if item["status"] != ItemStatus.AWAITING_LLM_BATCH:
                return
            self._fail_item(bid, item, exc, item.get("stage") or "summarize", self.clock.now())
            self._check_finished(bid)
        self.kick()

    def _fail_item(self, bid: str, item: dict[str, Any], exc: errors.TubemillError, stage: str, now: float) -> None:
        """Fail an item that is not running (parked or queued) with ``exc``: record, log, no retry."""
        assert self.store is not None
        etype, message, retryable = errors.describe(exc)
        err = ItemError(etype, message, stage, retryable, int(item.get("attempts", 0)) + 1, now)
        self.store.transition(bid, item["n"], ItemStatus.FAILED, error=err.to_dict(), stage=None)
        _item_log(item.get("workdir"), f"{stage}: {message}")

    def _resume(self, bid: str) -> None:
        assert self.store is not None
        reopened = 0
        if self.store.header(bid)["state"] == BatchState.CANCELLED:
            reopened = self.store.reopen_items(bid, [ItemStatus.CANCELLED])
        self.store.set_batch(bid, state=BatchState.ACTIVE, finished_at=None)
        if bid not in self._runs:
            self._activate(bid)
        else:
            self._runs[bid].pause.clear()
            if reopened:
                self._enqueue_new(bid)

    def _cancel(self, bid: str) -> None:
        assert self.store is not None
        self.store.set_batch(bid, state=BatchState.CANCELLED)
        run = self._runs.get(bid)
        if run:
            run.cancel.set()
            for q in run.ready.values():
                q.clear()
            run.gated.clear()
        self._timers = [t for t in self._timers if t[1] != bid]
        heapq.heapify(self._timers)
        for n in self.store.item_numbers(bid, [ItemStatus.PENDING, ItemStatus.WAITING, ItemStatus.AWAITING_LLM_BATCH]):
            if run is None or n not in run.running:
                self.store.transition(bid, n, ItemStatus.CANCELLED, next_attempt_at=None)
        if self.llm_batches is not None:
            self.llm_batches.cancel_jobs(bid)
        self._check_finished(bid)

    # ------------------------------------------------------------------ reads
    def summaries(self) -> list[BatchSummary]:
        if self.store is not None:
            return self.store.summaries()
        return read_summaries(self.home)

    def summary(self, ref: str) -> BatchSummary:
        if self.store is not None:
            return self.store.summary(self.store.resolve(ref))
        return find_summary(self.home, ref)

    def batch_header(self, ref: str) -> dict[str, Any]:
        """The batch's stored header (options, Batch API jobs, notes), from memory or the file."""
        if self.store is not None:
            return self.store.header(self.store.resolve(ref))
        return read_batch(self.home, find_summary(self.home, ref).id)[0]

    def items(self, ref: str, **kw: Any) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.items(self.store.resolve(ref), **kw)
        s = find_summary(self.home, ref)
        _, items = read_batch(self.home, s.id)
        wanted = set(kw.get("status") or ())
        items = [i for i in items if not wanted or i["status"] in wanted]
        off, lim = kw.get("offset", 0), kw.get("limit")
        return items[off : off + lim if lim is not None else None]

    def export(self, ref: str) -> dict[str, Path]:
        """(Re)write the batch outputs: manifest.json/.csv, errors.md, stats.json, and for transcripts PDF + ZIP."""
        s = self.summary(ref)
        header = {k: v for k, v in s.to_dict().items() if k not in ("active", "held", "eta_s")}
        extra = s.options.get("output_manifest")
        heavy = s.options.get("recipe_name") == "transcribe"
        folder = Path(s.output_dir or self.output_root / safe_name(s.name))
        return export_batch(header, self.items(s.id), folder, extra_manifest=Path(extra) if extra else None,
                            pdf=heavy, zip_=heavy)

    def owner_info(self) -> dict[str, Any] | None:
        return read_owner(self.home)

    def pools(self) -> list[PoolStatus]:
        with self._lock:
            return [PoolStatus(p, n, self._busy.get(p, 0), self._held.get(p)) for p, n in self.pool_sizes.items()]

    def wait(self, ref: str, timeout: float | None = None, poll: float = 0.05) -> BatchSummary:
        """Block until the batch has nothing left to run (done, cancelled) or ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.summary(ref)
            if s.state in (BatchState.DONE, BatchState.CANCELLED) and not s.counts.get("running"):
                return s
            if deadline is not None and time.monotonic() >= deadline:
                return s
            time.sleep(poll)

    # ------------------------------------------------------------------ scheduling
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self.tick()
            except Exception:  # the scheduler must outlive any single bad record
                log.exception("scheduler pass failed")
                delay = 1.0
            self._wake.wait(delay)
            self._wake.clear()

    def _any_running(self) -> bool:
        with self._lock:
            return any(r.running for r in self._runs.values())

    def tick(self) -> float:
        """One scheduling pass; returns how long (real seconds) the loop may sleep before the next."""
        assert self.store is not None
        now = self.clock.now()
        mono = time.monotonic()
        if mono - self._last_control >= CONTROL_POLL_S:
            self._last_control = mono
            self._take_control_requests()
        if mono - self._last_account_scan >= ACCOUNT_SCAN_S and not self.simulate:
            self._scan_accounts()
        with self._lock:
            self._drain_completions()
            if self._stopping.is_set():
                return 0.05
            self._release_timers(now)
            self._release_gated()
            self._dispatch(now)
            if mono - self._last_runtime >= RUNTIME_EVERY_S:
                self._last_runtime = mono
                self._publish_runtime()
            # Group commit waits up to flush_delay; ask for it early when a worker would otherwise sit
            # idle while items wait for durability (the store bounds how often that may happen).
            idle = [p for p, n in self.pool_sizes.items() if n and self._busy[p] < n
                    and not any(r.ready[p] for r in self._runs.values())]
            if idle and any(r.gated for r in self._runs.values()):
                self.store.request_flush()
            delay = CONTROL_POLL_S
            wake = self.next_wakeup(now)
            if wake is not None and not getattr(self.clock, "virtual", False):
                delay = min(delay, max(0.0, wake - now))
            return delay

    def next_wakeup(self, now: float) -> float | None:
        """The next time something becomes runnable on its own: a retry timer or a paced account."""
        with self._lock:
            times = [self._timers[0][0]] if self._timers else []
            for run in self._runs.values():
                if run.ready[PACED] and not self.accounts.held:
                    t = self.accounts.next_ready(self._run_accounts(run), now)
                    if t is not None:
                        times.append(t)
            return min(times) if times else None

    # ------------------------------------------------------------------ accounts
    def _scan_accounts(self) -> None:
        """Pick up cookie files added or replaced on the Settings page (a replaced file re-enables its account)."""
        from pipeline.config.secrets import list_cookie_files

        self._last_account_scan = time.monotonic()
        names = []
        try:
            files = list_cookie_files(self.home, count=False)
        except OSError as exc:
            log.warning("cannot list cookie files: %s", exc)
            files = []
        conf = self.settings.accounts  # [accounts.NAME] of settings.toml: a proxy, or a browser's cookies
        for c in files:
            self.accounts.ensure(c.name, str(c.path), c.mtime, proxy=(conf.get(c.name) or {}).get("proxy"))
            names.append(c.name)
        for name, a in conf.items():
            if name not in names and (a.get("cookies_from_browser") or a.get("proxy")):
                self.accounts.ensure(name, browser=a.get("cookies_from_browser"), proxy=a.get("proxy"))
                names.append(name)
        self._home_accounts = names
        if not names:
            self.accounts.ensure(ANONYMOUS)

    def _run_accounts(self, run: _Run) -> list[str]:
        if run.accounts is not None:
            return run.accounts
        return self._home_accounts or [ANONYMOUS]

    def _buffer(self) -> int:
        """Items downloaded but not yet transcribed, over every active batch."""
        assert self.store is not None
        total = 0
        for run in self._runs.values():
            if run.buffer_stages:
                at = self.store.remaining_by_stage(run.batch_id)
                total += sum(at.get(k, 0) for k in run.buffer_stages)
        return total

    def _pacing_hold(self) -> str | None:
        s = self.settings.governor
        disk = None if self.simulate else self.governor.readings().disk_free_mb
        mean = self._download_mb[0] / self._download_mb[1] if self._download_mb[1] else None
        return self.accounts.hold_reason(self._buffer(), disk, float(s.min_free_disk_mb), mean)

    def download_buffer(self) -> int:
        """Items downloaded but not yet transcribed (what queue-aware pacing steers by)."""
        if self.store is None:
            return 0
        with self._lock:
            return self._buffer()

    def accounts_snapshot(self) -> tuple[list[dict[str, Any]], str | None]:
        """Per-account pacing rows and why downloads hold (if they do), from memory or ``accounts.json``."""
        if self.store is None:
            return ratelimit.read_account_rows(self.home, self.clock.now())
        return self.accounts.snapshot(self.clock.now()), self.accounts.held

    def _take_control_requests(self) -> None:
        for req in control.take_requests(self.home):
            op, args, rid = req["op"], req.get("args", {}), req.get("id", "")
            try:
                if op == "submit":
                    bid = self.submit(
                        args["name"], args["sources"], recipe=args.get("recipe"),
                        options=args.get("options"), output_dir=args.get("output_dir"),
                        resume=bool(args.get("resume")), paused=bool(args.get("paused")),
                    )
                    control.put_reply(self.home, rid, ok=True, batch_id=bid)
                elif op in ("pause", "resume", "cancel", "retry_failed", "retry_summaries"):
                    count = self.control(op, args.get("batch"))
                    control.put_reply(self.home, rid, ok=True, count=count)
                else:
                    control.put_reply(self.home, rid, ok=False, message=f"unknown request {op!r}")
            except (errors.TubemillError, UnknownBatch, BatchExists, ValueError) as exc:
                control.put_reply(self.home, rid, ok=False, message=str(exc))

    def _activate(self, bid: str) -> None:
        """Load a batch's pending and waiting items into the scheduler's queues (one scan, at start)."""
        from pipeline.config.secrets import with_private_options

        assert self.store is not None
        h = self.store.header(bid)
        opts = with_private_options(self.home, bid, h.get("options", {}))  # a copy: secrets stay out of the store
        policy = self.settings.retry
        if opts.get("retry_limit") is not None:
            policy = replace(policy, limit=int(opts["retry_limit"]))
        run = _Run(
            batch_id=bid,
            name=h["name"],
            stages=recipe_stages(h["recipe"]),
            options=opts,
            policy=policy,
            on_error=opts.get("on_error", "continue"),
            output_dir=Path(h.get("output_dir") or self.output_root / safe_name(h["name"])),
        )
        run.opts = _parse_options(opts, self.settings)
        run.ready = {p: [] for p in [*self.pool_sizes, PACED]}
        if h["state"] == BatchState.PAUSED:
            run.pause.set()
        cookie_files = opts.get("cookie_files") or {}
        browsers = opts.get("cookie_browsers") or {}
        if cookie_files or browsers:  # --cookies FILE / --cookies-from-browser: this batch's own accounts
            run.accounts = []
            conf = self.settings.accounts
            for name, path in cookie_files.items():  # a path; the content is read by yt-dlp
                try:
                    mtime = Path(path).stat().st_mtime
                except OSError:
                    mtime = None
                self.accounts.ensure(name, str(path), mtime, proxy=(conf.get(name) or {}).get("proxy"))
                run.accounts.append(name)
            for name, spec in browsers.items():
                self.accounts.ensure(name, browser=spec, proxy=(conf.get(name) or {}).get("proxy"))
                run.accounts.append(name)
        run.buffer_stages = _buffer_stages(run.stages, self._pool_for)
        self._runs[bid] = run
        self._enqueue_new(bid)
        self._check_finished(bid)

    def _enqueue_new(self, bid: str) -> None:
        """Queue items of an active batch the scheduler does not track yet."""
        assert self.store is not None
        run = self._runs[bid]
        queued = {n for q in run.ready.values() for _, n in q} | set(run.running) | {n for _, n in run.gated}
        queued |= {n for _, b, n in self._timers if b == bid}
        for item in self.store.items(bid, status=[ItemStatus.PENDING, ItemStatus.WAITING]):
            n = item["n"]
            if n in queued:
                continue
            if item["status"] == ItemStatus.WAITING and item.get("next_attempt_at"):
                heapq.heappush(self._timers, (float(item["next_attempt_at"]), bid, n))
            else:
                self._ready(run, item)

    def _pool_for(self, stage: Stage) -> str:
        if stage.resource == "gpu" and not self.pool_sizes.get("gpu"):
            return "cpu"
        return stage.resource

    def _ready(self, run: _Run, item: dict[str, Any]) -> None:
        k = int(item.get("stage_index", 0))
        if k >= len(run.stages):
            return
        # Items further along go first: results arrive one by one instead of all at the end, and
        # downloaded audio waiting for transcription does not pile up on disk.
        stage = run.stages[k]
        queue_name = self._pool_for(stage)
        if stage.account_bound and self._needs_account(run, stage, item):
            queue_name = PACED
        heapq.heappush(run.ready[queue_name], (-k, item["n"]))

    def _needs_account(self, run: _Run, stage: Stage, item: dict[str, Any]) -> bool:
        if stage.needs_account is None:
            return True
        try:
            return stage.needs_account(item, Path(item.get("workdir") or self._workdir(run, item)))
        except OSError:
            return True

    def _release_timers(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now:
            _, bid, n = heapq.heappop(self._timers)
            run = self._runs.get(bid)
            if run is None or run.cancel.is_set():
                continue
            item = self.store.item(bid, n)  # type: ignore[union-attr]
            if item["status"] in (ItemStatus.WAITING, ItemStatus.PENDING):
                self._ready(run, item)

    def _release_gated(self) -> None:
        for run in self._runs.values():
            if not run.gated:
                continue
            durable = self.store.durable_seq(run.batch_id)  # type: ignore[union-attr]
            while run.gated and run.gated[0][0] <= durable:
                _, n = run.gated.popleft()
                self._ready(run, self.store.item(run.batch_id, n))  # type: ignore[union-attr]

    def _dispatch(self, now: float) -> None:
        assert self.store is not None
        runs = [r for r in self._runs.values() if not r.cancel.is_set()]
        states = {r.batch_id: self.store.header(r.batch_id)["state"] for r in runs}
        runs = [r for r in runs if states[r.batch_id] == BatchState.ACTIVE]
        if any(r.ready[PACED] for r in runs):
            self._dispatch_paced(runs, now)
        for pool, size in self.pool_sizes.items():
            if not size or not runs:
                continue
            free = size - self._busy[pool]
            if free <= 0 or not any(r.ready[pool] for r in runs):
                continue
            held = self.governor.hold_reason(pool)
            self._held[pool] = held
            if held:
                continue
            i = self._rr[pool]
            idle_rounds = 0
            while free > 0 and idle_rounds < len(runs):
                run = runs[i % len(runs)]
                i += 1
                if not run.ready[pool]:
                    idle_rounds += 1
                    continue
                idle_rounds = 0
                _, n = heapq.heappop(run.ready[pool])
                if self._start(run, n, pool, now):
                    free -= 1
            self._rr[pool] = i % max(1, len(runs))

    def _dispatch_paced(self, runs: list[_Run], now: float) -> None:
        """Start account-bound stages: each takes a ready account of its batch, one download per account.

        A batch whose accounts are all disabled has its waiting downloads failed with a
        clear error (refresh the cookies, then retry-failed); other batches go on.
        """
        pool = "net"
        free = self.pool_sizes[pool] - self._busy[pool]
        if free <= 0 or self._pacing_hold():
            return
        for run in runs:
            if run.ready[PACED] and not self.accounts.enabled(self._run_accounts(run)):
                self._fail_paced(run, now)
        i, idle_rounds = self._rr.get(PACED, 0), 0
        while free > 0 and idle_rounds < len(runs):
            run = runs[i % len(runs)]
            i += 1
            acct = self.accounts.acquire(self._run_accounts(run), now) if run.ready[PACED] else None
            if acct is None:
                idle_rounds += 1
                continue
            idle_rounds = 0
            started = False
            while run.ready[PACED] and not started:
                _, n = heapq.heappop(run.ready[PACED])
                started = self._start(run, n, pool, now, account=acct)
            if started:
                free -= 1
            else:
                self.accounts.unused(acct.name, now)
        self._rr[PACED] = i % max(1, len(runs))

    def _fail_paced(self, run: _Run, now: float) -> None:
        assert self.store is not None
        names = ", ".join(self._run_accounts(run))
        err = errors.AuthFailed(f"every download account of this batch is disabled ({names}): refresh the "
                                "cookie file(s), then retry the failed items")
        while run.ready[PACED]:
            _, n = heapq.heappop(run.ready[PACED])
            item = self.store.item(run.batch_id, n)
            self._fail_item(run.batch_id, item, err, run.stages[int(item.get("stage_index", 0))].name, now)
        self._check_finished(run.batch_id)

    def _start(self, run: _Run, n: int, pool: str, now: float, account: ratelimit.Account | None = None) -> bool:
        assert self.store is not None
        item = self.store.item(run.batch_id, n)
        if item["status"] not in (ItemStatus.PENDING, ItemStatus.WAITING):
            return False
        k = int(item.get("stage_index", 0))
        stage = run.stages[k]
        workdir = Path(item.get("workdir") or self._workdir(run, item))
        self.store.transition(
            run.batch_id, n, ItemStatus.RUNNING, stage=stage.name, stage_index=k, progress=0.0,
            workdir=str(workdir), next_attempt_at=None,
            **({"started_at": now} if not item.get("started_at") else {}),
            **({"account": account.name} if account else {}),
        )
        if account is not None:
            run.in_use[n] = account.name
        attempt = int(item.get("attempts", 0)) + 1
        bid = run.batch_id
        ctx = StageContext(
            batch_id=bid, batch_name=run.name, item_n=n, stage=stage.name, workdir=workdir,
            options=run.options, opts=run.opts, settings=self.settings, attempt=attempt,
            account=account.name if account else None,
            _progress=lambda f, _bid=bid, _n=n: self._progress(_bid, _n, f),
            _cancelled=lambda _run=run, _net=stage.resource == "net": (
                _run.cancel.is_set() or self._interrupt.is_set() or (_net and _run.pause.is_set())),
            home=self.home, pool_size=self.pool_sizes[pool], cookiefile=account.cookiefile if account else None,
            browser=account.browser if account else None, proxy=account.proxy if account else None,
            ytdlp=self.settings.ytdlp, min_free_disk_mb=float(self.settings.governor.min_free_disk_mb),
        )
        run.running[n] = stage.name
        self._busy[pool] += 1
        try:
            fut = self._executors[pool].submit(_execute, stage, item, ctx)
        except Exception as exc:  # an executor that is gone (shut down, cluster lost): a failed attempt, not a hang
            fut = Future()
            fut.set_exception(exc)
        fut.add_done_callback(lambda f, _run=run, _n=n, _k=k, _p=pool: self._done(_run, _n, _k, _p, f))
        return True

    def _workdir(self, run: _Run, item: dict[str, Any]) -> Path:
        label = item.get("title") or (item["source"].split() or [""])[0]
        label = label.rsplit("/", 1)[-1] if "://" in label else label
        suffix = f"-{safe_name(item['id'], 40)}" if item.get("id") else ""
        return run.output_dir / f"{item['n']:04d}-{safe_name(label, 60)}{suffix}"

    def _progress(self, bid: str, n: int, fraction: float) -> None:
        store = self.store
        if store is not None:
            store.update_item(bid, n, progress=round(fraction, 3))

    def _done(self, run: _Run, n: int, k: int, pool: str, fut: Future[_Outcome]) -> None:
        self._completions.put((run, n, k, pool, fut))
        self._wake.set()

    def _drain_completions(self) -> None:
        with self._lock:
            while True:
                try:
                    run, n, k, pool, fut = self._completions.get_nowait()
                except queue.Empty:
                    return
                self._busy[pool] -= 1
                run.running.pop(n, None)
                try:
                    outcome = fut.result()
                except BaseException as exc:  # executor-level failure (Dask worker lost, pool shut down)
                    outcome = _Outcome(ok=False, seconds=0.0, exc=exc)
                self._record(run, n, k, outcome)

    def _record(self, run: _Run, n: int, k: int, out: _Outcome) -> None:
        assert self.store is not None
        store, bid, now = self.store, run.batch_id, self.clock.now()
        item = store.item(bid, n)
        stage = run.stages[k]
        account = run.in_use.pop(n, None)
        if out.ok:
            assert out.result is not None
            fields: dict[str, Any] = {
                "timings": {**(item.get("timings") or {}), stage.name: round(out.seconds, 4)},
                "progress": 1.0,
                "attempts": 0,
                "error": None,
            }
            if out.result.artifacts:
                fields["artifacts"] = {**(item.get("artifacts") or {}), **out.result.artifacts}
            meta = dict(out.result.meta)
            for key in ("id", "title", "duration", "flags"):
                if key in meta and meta[key] is not None:
                    fields[key] = meta.pop(key)
            if meta:
                fields["meta"] = {**(item.get("meta") or {}), **meta}
            if k + 1 >= len(run.stages):
                store.transition(bid, n, ItemStatus.DONE, stage=None, stage_index=k + 1, finished_at=now, **fields)
                _remove_tmp(item.get("workdir"))
            elif run.cancel.is_set():
                store.transition(bid, n, ItemStatus.CANCELLED, stage_index=k + 1, stage=None, **fields)
            else:
                seq = store.transition(bid, n, ItemStatus.PENDING, stage_index=k + 1, stage=None, **fields)
                if self.simulate:
                    self._ready(run, store.item(bid, n))
                elif not self._interrupt.is_set():
                    # The next stage waits until this completion is on disk (group commit).
                    run.gated.append((seq, n))
            if account:
                self._note_download_size(out.result.artifacts.get("audio"))
                self.accounts.success(account, now, self._buffer())
            self._check_finished(bid)
            return
        exc = out.exc
        assert exc is not None
        etype, message, retryable = errors.describe(exc)
        attempts = int(item.get("attempts", 0))
        if isinstance(exc, llm_batch.AwaitLLMBatch) and not run.cancel.is_set():
            # Parked, not failed: the Batch API manager brings it back with its summary written.
            store.transition(bid, n, ItemStatus.AWAITING_LLM_BATCH, stage=stage.name, progress=0.0)
            if self.llm_batches is not None:
                self.llm_batches.kick()
            return
        if isinstance(exc, errors.Cancelled) or run.cancel.is_set() or self._interrupt.is_set():
            if account:
                self.accounts.unused(account, now)
            if not run.cancel.is_set() and (self._interrupt.is_set() or run.pause.is_set()):
                # Stopped, not failed: back in the queue with no attempt spent (paused: it runs on resume).
                store.transition(bid, n, ItemStatus.PENDING, progress=0.0, stage=None)
                why = "paused" if run.pause.is_set() else "shutdown"
                _item_log(item.get("workdir"), f"{stage.name}: stopped ({why}); it runs again from here")
                if not self._interrupt.is_set():
                    self._ready(run, store.item(bid, n))
            else:
                store.transition(bid, n, ItemStatus.CANCELLED, stage=None)
            self._check_finished(bid)
            return
        error = ItemError(etype, message, stage.name, retryable, attempts + 1, now)
        if isinstance(exc, errors.NotYetLive) and not run.cancel.is_set():
            self._not_yet_live(run, item, stage, exc, error, account, now)
            return
        if account and self._account_refused(run, n, item, account, exc, error, now):
            return
        if isinstance(exc, errors.DiskFull):
            # Our disk, not the item's nor the account's fault: hold it without spending an attempt.
            if account:
                self.accounts.unused(account, now)
            due = now + float(exc.retry_after or 600.0)
            self._wait_until(bid, item, due, error, f"{stage.name}: {message}; waiting {due - now:.0f}s for disk "
                                                    "space (no attempt spent)", stage=None)
            return
        if account:
            self.accounts.failure(account, now, counts=retryable, host=_host_of(item.get("source")),
                                  item=f"{bid}:{n}")
        if isinstance(exc, errors.RateLimited):
            wait = exc.retry_after or self.settings.retry.rate_limit_wait_s
            self._wait_until(bid, item, now + wait, error, f"{stage.name}: {message}; waiting {wait:.0f}s "
                                                           "(no attempt spent)")
            return
        attempts += 1
        permanent = not retryable and run.on_error != "retry"
        if permanent or attempts > run.policy.limit:
            store.transition(bid, n, ItemStatus.FAILED, attempts=attempts, error=error.to_dict(), stage=None)
            _remove_tmp(item.get("workdir"))
            _item_log(item.get("workdir"), f"{stage.name}: failed for good after {attempts} attempt(s)")
            if run.on_error == "stop":
                store.set_batch(bid, state=BatchState.PAUSED, stopped_by={"item": n, "error": error.to_dict()})
                run.pause.set()
                log.warning("batch %s paused: item %d failed (%s: %s)", run.name, n, etype, message)
            self._check_finished(bid)
            return
        # A server that said when to come back (Retry-After on an LLM 429) is not asked sooner.
        due = now + max(run.policy.delay(attempts, self.rng), float(getattr(exc, "retry_after", None) or 0.0))
        self._wait_until(bid, item, due, error, f"{stage.name}: attempt {attempts} failed; retry in {due - now:.1f}s",
                         attempts=attempts, stage=None)

    def _wait_until(self, bid: str, item: dict[str, Any], due: float, error: ItemError, line: str,
                    **fields: Any) -> None:
        """The item waits, without a worker, until ``due`` (a retry, a rate limit, a full disk, a stream's start)."""
        assert self.store is not None
        self.store.transition(bid, item["n"], ItemStatus.WAITING, next_attempt_at=due, error=error.to_dict(),
                              **fields)
        heapq.heappush(self._timers, (due, bid, item["n"]))
        _item_log(item.get("workdir"), line)

    def _not_yet_live(self, run: _Run, item: dict[str, Any], stage: Stage, exc: errors.NotYetLive,
                      error: ItemError, account: str | None, now: float) -> None:
        """An upcoming stream or premiere: skipped (with its start time), or with ``--wait-for-live``
        scheduled for when it starts; neither spends an attempt nor the account's pacing."""
        assert self.store is not None
        bid, n = run.batch_id, item["n"]
        if account:
            self.accounts.unused(account, now)
        if flag(run.options.get("wait_for_live")):
            self._wait_until(bid, item, exc.retry_at(now), error, f"{stage.name}: {error.message}; waiting until "
                                                                 "it starts (no attempt spent)", stage=None)
            return
        self.store.transition(bid, n, ItemStatus.SKIPPED, error=error.to_dict(), stage=None)
        _item_log(item.get("workdir"), f"{stage.name}: skipped: {error.message}")
        self._check_finished(bid)

    def _account_refused(self, run: _Run, n: int, item: dict[str, Any], account: str,
                         exc: BaseException, error: ItemError, now: float) -> bool:
        """A 429/bot check slows the account, bad cookies disable it; either way the item goes back to the
        download queue for any ready account, without spending an attempt. True when handled here."""
        assert self.store is not None
        acct = self.accounts.get(account)
        if isinstance(exc, errors.RateLimited):
            self.accounts.rate_limited(account, now, exc.retry_after)
            note = f"{account} slowed to x{acct.multiplier:.2f}" if acct else account
        elif isinstance(exc, errors.AuthFailed) and acct is not None and acct.cookies:
            self.accounts.auth_failed(account, now, str(exc))
            note = f"account {account} disabled (cookies refused); its downloads move to the other accounts"
            log.warning("download account %s disabled: %s", account, exc)
        else:
            return False
        due = self.accounts.next_ready(self._run_accounts(run), now)  # shown as "next try"; None: busy/none
        self.store.transition(run.batch_id, n, ItemStatus.WAITING, stage=None, next_attempt_at=due,
                              error=error.to_dict())
        _item_log(item.get("workdir"), f"{run.stages[item.get('stage_index', 0)].name}: {error.message}; {note} "
                                       "(no attempt spent)")
        if not run.cancel.is_set():
            self._ready(run, self.store.item(run.batch_id, n))
        return True

    def _note_download_size(self, path: str | None) -> None:
        if path and not self.simulate:
            try:
                self._download_mb[0] += Path(path).stat().st_size / 2**20
                self._download_mb[1] += 1
            except OSError:
                pass

    def _check_finished(self, bid: str) -> None:
        """When nothing is left to run: write the batch outputs (off the scheduler thread), then mark it done.

        ``done`` is set only after the manifest, error report, PDF and ZIP exist, so a
        user (or ``wait``) who sees ``done`` finds every file in place. A crash while
        exporting leaves the batch active with every item finished; the next start
        exports again.
        """
        assert self.store is not None
        s = self.store.summary(bid)
        live = s.total - s.finished
        run = self._runs.get(bid)
        if live or (run and run.running) or bid in self._exporting:
            return
        if s.state in (BatchState.ACTIVE, BatchState.CANCELLED, BatchState.PAUSED):
            if s.finished_at is None:
                self.store.set_batch(bid, finished_at=self.clock.now())
            self._runs.pop(bid, None)
            self._exporting.add(bid)
            self.store.set_runtime(bid, active=[], eta_s=0.0, held="writing batch outputs")
            self._hooks.submit(self._finish, bid, s.state != BatchState.CANCELLED)

    def _finish(self, bid: str, mark_done: bool) -> None:
        try:
            for fn in self._finished_hooks:
                try:
                    fn(bid)
                except Exception:  # an export bug must not leave the batch unfinished forever
                    log.exception("batch-finished hook failed for %s", bid)
        finally:
            with self._lock:
                self._exporting.discard(bid)
                if self.store is not None:
                    if mark_done and self.store.header(bid)["state"] != BatchState.CANCELLED:
                        self.store.set_batch(bid, state=BatchState.DONE)
                    self.store.set_runtime(bid, held=None)
            self.kick()

    def _publish_runtime(self) -> None:
        assert self.store is not None
        for run in list(self._runs.values()):
            s = self.store.summary(run.batch_id)
            active = []
            for n, stage in sorted(run.running.items())[:50]:
                it = self.store.item(run.batch_id, n)
                active.append({"n": n, "title": it.get("title") or it["source"][:80], "stage": stage,
                               "progress": it.get("progress", 0.0)})
            held = next((f"{p}: {r}" for p, r in self._held.items() if r), None)
            if held is None and self.accounts.held and run.ready[PACED]:
                held = f"downloads: {self.accounts.held}"
            eta = estimate_eta(
                [st.name for st in run.stages],
                [self._pool_for(st) for st in run.stages],
                self.store.remaining_by_stage(run.batch_id),
                s.stage_stats,
                self.pool_sizes,
            )
            waiting = self.accounts.wait_reason(self._run_accounts(run), self.clock.now()) if (
                run.ready[PACED] and not run.running) else None
            if waiting is not None:
                # Nothing runs because every account of the batch waits: say who, why and until when, and count
                # the wait in the ETA (a cooled account once showed "ETA 10s" for a 30-minute wait).
                secs, why = waiting
                held = held or f"downloads wait {fmt_duration(secs)}: {why}"
                eta = (eta or 0.0) + secs
            self.store.set_runtime(run.batch_id, active=active, eta_s=eta, held=held)
        if self.accounts.version != self._accounts_saved and not self.simulate:
            self._accounts_saved = self.accounts.version
            try:
                ratelimit.save_accounts(self.home, self.accounts, self.clock.now())
            except OSError as exc:
                log.warning("cannot save account pacing state: %s", exc)


def _buffer_stages(stages: list[Stage], pool_for: Callable[[Stage], str]) -> tuple[int, ...]:
    """Next-stage indexes that mean "downloaded, not yet through the heavy stage": after the first
    account-bound stage, up to and including the first cpu/gpu stage after it."""
    first = next((i for i, st in enumerate(stages) if st.account_bound), None)
    if first is None:
        return ()
    for j in range(first + 1, len(stages)):
        if pool_for(stages[j]) in ("cpu", "gpu"):
            return tuple(range(first + 1, j + 1))
    return ()


def _host_of(source: Any) -> str:
    """The host a source URL points at (a local file: "local"), for telling a flaky host from a flagged account."""
    import urllib.parse

    text = str(source or "")
    if "://" not in text:
        return "local"
    try:
        return (urllib.parse.urlsplit(text).hostname or "?").lower()
    except ValueError:
        return "?"


def _item_key(src: str | dict[str, Any]) -> str:
    return src if isinstance(src, str) else (src.get("id") or src["source"])


def estimate_eta(
    stage_names: list[str],
    stage_pools: list[str],
    remaining_at: dict[int, int],
    stats: dict[str, dict[str, float]],
    pool_sizes: dict[str, int],
) -> float | None:
    """Seconds left: remaining runs of each stage × its measured mean, per pool ÷ pool size, slowest pool.

    ``remaining_at[k]`` counts unfinished items whose next stage is ``k``; an item at
    stage ``k`` still has to run every stage from ``k`` on.
    """
    means = {s: v["total_s"] / v["n"] for s, v in stats.items() if v.get("n")}
    if not remaining_at:
        return 0.0
    if not means:
        return None
    fallback = sum(means.values()) / len(means)
    work: dict[str, float] = {}
    cum = 0
    for k, (name, pool) in enumerate(zip(stage_names, stage_pools, strict=True)):
        cum += remaining_at.get(k, 0)
        work[pool] = work.get(pool, 0.0) + cum * means.get(name, fallback)
    return max(w / max(1, pool_sizes.get(p, 1)) for p, w in work.items())


def _parse_options(options: dict[str, Any], settings: Settings) -> Any:
    """The recipe's frozen options for a batch (None for an explicit stage list or a recipe without them)."""
    recipe = recipe_of(options)
    if recipe is None or recipe.parse_options is None:
        return None
    return recipe.parse_options(options, settings)


def _execute(stage: Stage, item: dict[str, Any], ctx: StageContext) -> _Outcome:
    """Run one stage in a worker thread. The runner is the one place that catches broad exceptions."""
    t0 = time.perf_counter()
    try:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        _item_log(str(ctx.workdir), f"{ctx.stage}: started (attempt {ctx.attempt})")
        result = stage.run(item, ctx)
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {stage.name} returned {type(result).__name__}, not StageResult")
        secs = time.perf_counter() - t0
        _item_log(str(ctx.workdir), f"{ctx.stage}: done in {secs:.2f}s")
        return _Outcome(ok=True, seconds=secs, result=result)
    except BaseException as exc:
        secs = time.perf_counter() - t0
        detail = "" if isinstance(exc, errors.TubemillError) and exc.expected else "\n" + traceback.format_exc()
        _item_log(str(ctx.workdir), f"{ctx.stage}: {type(exc).__name__}: {exc}{detail}")
        return _Outcome(ok=False, seconds=secs, exc=exc)


def _item_log(workdir: str | None, line: str) -> None:
    """Append to the item's ``log.txt``: its own history, readable without Tubemill."""
    if not workdir:
        return
    try:
        with open(Path(workdir) / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    except OSError:
        pass


def _remove_tmp(workdir: str | None) -> None:
    if workdir:
        shutil.rmtree(Path(workdir) / ".tmp", ignore_errors=True)

"""The engine a process builds: owns the home or follows its owner, and runs the scheduler.

Ownership: one process owns a home (``state.lock``). An ``Engine`` that finds the home
owned runs as a *follower*: it reads snapshots from the files and posts control requests
(:class:`~pipeline.engine.client.EngineClient`), and it takes over when the owner goes
away. The owner runs one scheduler thread (:mod:`~pipeline.engine.scheduler`), records
outcomes (:mod:`~pipeline.engine.outcomes`) and the recipes' long-lived services.

Collaborators are injected, never switched by flags: a clock (virtual in tests and the
plan simulator), executors (threads, Dask, or the simulator's), a governor, an account
pool, and ``durable`` for a store that is never fsynced (a throw-away simulation).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.config.settings import Settings, default_home, load_settings
from pipeline.engine.client import EngineClient
from pipeline.engine.clock import SystemClock
from pipeline.engine.controls import Controls
from pipeline.engine.estimator import starting_costs
from pipeline.engine.governor import Governor
from pipeline.engine.outcomes import Outcomes
from pipeline.engine.pacing import ACCOUNT_SCAN_S, Pacing
from pipeline.engine.ratelimit import AccountPool
from pipeline.engine.recipe import Service, default_recipe, frozen_options, load_recipes, recipe_of, recipe_stages
from pipeline.engine.scheduler import FIRST_ALONE_S, BatchRun, Scheduler
from pipeline.engine.stage import get_stage, safe_name
from state import control
from state.lock import HomeLock, ensure_home
from state.models import BatchState
from state.store import Store

log = logging.getLogger("tubemill.engine")

ON_ERROR = ("continue", "stop", "retry")
CONTROL_POLL_S = 0.5
MAX_POOL = 32


@dataclass
class PoolStatus:
    name: str
    size: int
    busy: int
    held: str | None = None


class Engine(EngineClient):
    """The one engine a process builds (``st.cache_resource`` in the app, ``main`` in the CLI).

    Its jobs are owning the home (start, take over, shut down), taking batches in (submit,
    activate) and driving the scheduler; the rest is delegated to its parts — scheduler,
    outcomes, controls, pacing, services. About 330 lines: the lifecycle touches every part.
    """

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
        durable: bool = True,
        write_outputs: bool = True,
    ) -> None:
        self.home = ensure_home(Path(home) if home else default_home())
        self.settings = settings or load_settings(self.home)
        self.clock = clock or SystemClock()
        self.role = role
        self.takeover = takeover
        self.durable = durable
        self.rng = random.Random(seed)
        self.pacing = Pacing(self.home, accounts or AccountPool(self.settings.pacing, rng=random.Random(seed)))
        self.output_root = self.settings.output_root(self.home)
        self.governor = governor or Governor(self.output_root, self.settings.governor)
        self.pool_sizes = self.settings.worker_pools()
        self._own_executors = executors is None
        # Threads start lazily up to max_workers, and pool_sizes bounds the concurrency, so a
        # pool can grow at run time (Settings page) without replacing its executor.
        executors = executors or {
            p: ThreadPoolExecutor(max_workers=max(n, MAX_POOL), thread_name_prefix=f"tubemill-{p}")
            for p, n in self.pool_sizes.items()
        }
        self.lock = threading.RLock()
        self.home_lock = HomeLock(self.home, role=role)
        self.store: Store | None = None
        self.messages: list[str] = []
        self.stopping = threading.Event()
        self.interrupt = threading.Event()
        self.scheduler = Scheduler(self, executors)
        self.outcomes = Outcomes(self)
        self.controls = Controls(self)
        self.services: dict[str, Service] = {}
        self._executors = executors
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._standby: threading.Thread | None = None
        self._last_control = 0.0
        self.clock.subscribe(self.kick)
        if write_outputs:
            self.on_batch_finished(self.export)

    # ------------------------------------------------------------------ lifecycle
    @property
    def accounts(self) -> AccountPool:
        return self.pacing.accounts

    def start(self, *, run_scheduler: bool = True) -> bool:
        """Own the home if nobody does (True), else follow the owner (False) and take over when it goes."""
        if self.home_lock.try_acquire():
            self._become_owner(run_scheduler)
            return True
        if self.takeover and self._standby is None:
            self._standby = threading.Thread(target=self._standby_loop, name="tubemill-standby", daemon=True)
            self._standby.start()
        return False

    def _become_owner(self, run_scheduler: bool = True) -> None:
        store = Store(self.home, flush_delay=self.settings.flush_delay_s, clock=self.clock.now, durable=self.durable)
        self.messages.extend(store.open())
        self.pacing.load()
        self.pacing.scan(self.settings)
        control.clean_control(self.home)
        store.add_listener(self.kick)
        with self.lock:
            self.store = store
            for bid in store.batch_ids():
                if store.header(bid)["state"] in (BatchState.ACTIVE, BatchState.PAUSED):
                    self.activate(bid)
        for msg in self.messages:
            log.warning("%s", msg)
        if run_scheduler:
            self.run_scheduler()

    def run_scheduler(self) -> None:
        """Start the scheduler thread and the recipes' services (an owner started with
        ``run_scheduler=False`` — a test, the simulator — drives ``tick`` itself)."""
        if self.store is not None and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tubemill-scheduler", daemon=True)
            self._thread.start()
            for recipe in load_recipes().values():
                for factory in recipe.services:
                    service = factory(self)
                    self.services[getattr(service, "name", type(service).__name__)] = service
                    service.start()

    def _standby_loop(self) -> None:
        while not self.stopping.wait(1.0):
            if self.home_lock.try_acquire(attempts=1):
                log.info("previous owner of %s is gone; taking over", self.home)
                self._become_owner()
                return

    def shutdown(self, *, interrupt: bool = False, timeout: float = 30.0) -> None:
        """Stop starting work, let running stages finish (or stop them with ``interrupt``), flush, release.

        Interrupted items go back to pending with their attempt refunded: stopping the
        app is not the item's fault.
        """
        if interrupt:
            self.interrupt.set()
        self.stopping.set()
        self.kick()
        for service in self.services.values():
            service.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.store is not None:
            deadline = time.monotonic() + timeout
            while self._any_running() and time.monotonic() < deadline:
                self._drain()
                time.sleep(0.02)
            self._drain()
            self.outcomes.close()
            self.pacing.save(self.clock.now())
            self.store.close()
            self.store = None
        if self._own_executors:
            for ex in self._executors.values():
                ex.shutdown(wait=False, cancel_futures=True)
        self.home_lock.release()

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def kick(self) -> None:
        """Wake the scheduler now (a completion, a flush, a control change, a clock move)."""
        self._wake.set()

    def kick_services(self, name: str | None = None) -> None:
        for key, service in self.services.items():
            if name is None or key == name:
                service.kick()

    def apply_settings(self, settings: Settings) -> None:
        """Take new pool sizes, retry policy and governor floors now; running stages are not disturbed."""
        with self.lock:
            sizes = settings.worker_pools()
            if self._own_executors:
                sizes = {p: min(n, MAX_POOL) for p, n in sizes.items()}
            if bool(sizes.get("gpu")) != bool(self.pool_sizes.get("gpu")):
                sizes["gpu"] = self.pool_sizes.get("gpu", 0)  # where gpu stages queue is fixed at start
            self.settings = settings
            for run in self.scheduler.runs.values():  # the recipe's options see the new settings
                run.opts = frozen_options(run.options, settings)
            self.pool_sizes.update(sizes)
            self.governor.settings = settings.governor
            self.pacing.accounts.settings = settings.pacing
            self.output_root = settings.output_root(self.home)  # for batches created from now on
            self.governor.output_root = self.output_root
        self.kick()

    def on_batch_finished(self, fn: Callable[[str], None]) -> None:
        self.outcomes.finished_hooks.append(fn)

    # ------------------------------------------------------------------ submit
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
        stage_names = [s.name for s in recipe_stages(recipe)]
        opts = dict(options or {})
        on_error = opts.get("on_error", self.settings.on_error)
        if on_error not in ON_ERROR:
            raise errors.ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}")
        opts["on_error"] = on_error
        if isinstance(recipe, str):
            opts.setdefault("recipe_name", recipe)
        sources = list(sources)
        if not self.owner:
            return self._ask_owner("submit", 15.0, name=name, sources=sources, recipe=recipe, options=opts,
                                   output_dir=output_dir, resume=resume, paused=paused)["batch_id"]
        return self.controls.create(name, stage_names, sources, opts, output_dir, resume=resume, paused=paused)

    # ------------------------------------------------------------------ control (owner)
    def _control_here(self, op: str, ref: str | None) -> int:
        return self.controls.apply(op, ref)

    def _finishing_state(self, bid: str) -> str | None:
        return self.outcomes.finishing.get(bid)

    def _item_action_here(self, ref: str, n: int, action: str) -> None:
        assert self.store is not None
        self.controls.item_action(self.store.resolve(ref), n, action)

    def release(self, bid: str, n: int) -> None:
        """A parked item goes back to the stage that parked it (which finds what its service prepared)."""
        self.controls.release(bid, n)

    def fail_parked(self, bid: str, n: int, exc: errors.TubemillError) -> None:
        """A parked item fails with ``exc`` (its service gave up on it)."""
        self.controls.fail_parked(bid, n, exc)

    def activate(self, bid: str) -> None:
        """Load a batch's pending and waiting items into the scheduler's queues (one scan, at start)."""
        from pipeline.config.secrets import with_private_options

        assert self.store is not None
        h = self.store.header(bid)
        opts = with_private_options(self.home, bid, h.get("options", {}))  # a copy: secrets stay out of the store
        policy = self.settings.retry
        if opts.get("retry_limit") is not None:
            policy = replace(policy, limit=int(opts["retry_limit"]))
        run = BatchRun(
            batch_id=bid, name=h["name"], stages=recipe_stages(h["recipe"]), options=opts, policy=policy,
            on_error=opts.get("on_error", "continue"),
            output_dir=Path(h.get("output_dir") or self.output_root / safe_name(h["name"])),
        )
        run.opts = frozen_options(opts, self.settings)
        if h["state"] == BatchState.PAUSED:
            run.pause.set()
        run.accounts = self.pacing.batch_accounts(opts, self.settings)
        recipe = recipe_of(opts)
        same = recipe is not None and list(recipe.stages) == list(h["recipe"])  # not an explicit stage list
        items = self.store.items(bid)
        if recipe is not None:
            run.costs = starting_costs(recipe.stages, recipe.costs, [it.get("duration") for it in items],
                                       [x.stage_stats for x in self.store.summaries() if x.id != bid])
        if not getattr(self.clock, "virtual", False) and not any(it.get("timings") for it in items):
            run.first_alone_until = self.clock.now() + FIRST_ALONE_S  # a fresh batch: its first item alone
        self.scheduler.activate(run, dict(recipe.needs) if same and recipe is not None else None)
        self.outcomes.check_finished(bid)

    # ------------------------------------------------------------------ scheduling
    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                delay = self.tick()
            except Exception:  # the scheduler must outlive any single bad record
                log.exception("scheduler pass failed")
                delay = 1.0
            self._wake.wait(delay)
            self._wake.clear()

    def _any_running(self) -> bool:
        with self.lock:
            return self.scheduler.any_running()

    def _drain(self) -> None:
        with self.lock:
            self.scheduler.drain_completions()

    def tick(self) -> float:
        """One scheduling pass; returns how long (real seconds) the loop may sleep before the next."""
        assert self.store is not None
        now = self.clock.now()
        mono = time.monotonic()
        if mono - self._last_control >= CONTROL_POLL_S:
            self._last_control = mono
            self.controls.take_requests()
        if mono - self.pacing.last_scan >= ACCOUNT_SCAN_S:
            self.pacing.scan(self.settings)
        with self.lock:
            self.scheduler.tick(now, mono)
            if self.stopping.is_set():
                return 0.05
            delay = CONTROL_POLL_S
            wake = self.scheduler.next_wakeup(now)
            if wake is not None and not getattr(self.clock, "virtual", False):
                delay = min(delay, max(0.0, wake - now))
            return delay

    def next_wakeup(self, now: float) -> float | None:
        """The next time something becomes runnable on its own: a retry timer or a paced account."""
        with self.lock:
            return self.scheduler.next_wakeup(now)

    def idle(self) -> bool:
        """No finished stage waits to be recorded (the simulator, finding nothing else due, calls a stall then)."""
        with self.lock:
            return self.scheduler.completions.empty()

    def pools(self) -> list[PoolStatus]:
        with self.lock:
            return [PoolStatus(p, n, self.scheduler.busy.get(p, 0), self.scheduler.held.get(p))
                    for p, n in self.pool_sizes.items()]

    def pool_of(self, stage_name: str) -> str:
        """The pool a stage runs in on this engine (gpu stages run in cpu without a gpu pool)."""
        return self.scheduler.pool_for(get_stage(stage_name))

    def download_buffer(self) -> int:
        """Items downloaded but not yet transcribed (what queue-aware pacing steers by)."""
        if self.store is None:
            return 0
        with self.lock:
            return self.scheduler.buffer()

    def accounts_snapshot(self) -> tuple[list[dict[str, Any]], str | None]:
        """Per-account pacing rows and why downloads hold (if they do), from memory or ``accounts.json``."""
        from pipeline.engine import ratelimit

        if self.store is None:
            return ratelimit.read_account_rows(self.home, self.clock.now())
        return self.pacing.accounts.snapshot(self.clock.now()), self.pacing.accounts.held

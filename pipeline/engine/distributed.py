"""Run the engine's cpu and gpu stages on a Dask cluster: for users who outgrow one machine.

The engine stays where it is (one scheduler thread, the store, the net and llm pools:
downloads and LLM calls are I/O, not worth shipping). Only the heavy pools (``cpu``:
export, frames…; ``gpu``: transcribe, render) go to Dask workers, each task being one
stage of one item, exactly as in a local thread pool::

    dx = connect("dask://10.0.0.5:8786", {"net": 8, "llm": 4})      # or "local-cluster:4"
    engine = Engine(home, settings=replace(settings, pools=dx.pool_sizes), executors=dx.executors)
    ...
    engine.shutdown(); dx.close()

Starting a cluster by hand (same Python environment and Tubemill version everywhere; run
``dask worker`` where ``import pipeline`` works, e.g. from the Tubemill folder)::

    dask scheduler                                                   # listens on :8786
    dask worker tcp://HOST:8786 --nthreads 1                         # a CPU machine
    dask worker tcp://HOST:8786 --nthreads 1 --resources "GPU=1"     # one per GPU

Requirements and limits:

- **Shared paths.** A stage reads and writes its item folder, an absolute path under the
  output root (and ``log.txt`` in it). Every worker must see the same folder at the same
  path (an NFS/SMB mount at the same mount point everywhere), and the engine's home too
  (model downloads go to ``<home>/models``). Workers never read ``TUBEMILL_HOME``: the
  home travels with each task. ``connect(..., shared_path=...)`` checks this up front.
- **Stages by name.** A task carries the stage *name*, the item dict and the context's
  plain fields; the worker looks the stage up in its own registry. Only stages registered
  on import of ``pipeline.engine.stage`` (or of a module the worker imports) can run remotely.
- **Progress** is not streamed from remote stages: the item shows 0 % until the stage ends.
- **Cancelling** (cancel, or an interrupting shutdown) reaches a remote stage through a
  ``distributed.Event`` per task: the stage sees it at its next ``ctx.cancelled()`` check
  (at most one scheduler round trip per ``CANCEL_CHECK_S`` per stage), plus up to
  ``CANCEL_POLL_S`` for the engine side to notice. A stage that never checks runs to the end.
- **At least once.** When a worker dies, Dask reruns its running tasks elsewhere (up to
  ``distributed.scheduler.allowed-failures``, default 3, then ``KilledWorker``, which the
  engine treats as a retryable failure). A finished result is released as soon as it is
  fetched, so a stage is rerun only if its worker dies in the few milliseconds between
  the two; stages already skip work whose output exists.
- **Dask pitfalls met here:** ``client.submit`` (and ``get_executor``) cache identical
  calls unless ``pure=False``; keyword arguments named like submit's own (``pure``,
  ``workers``, ``resources``, ``retries``, ``key``…) are swallowed and never reach the
  function (so calls are shipped as positional arguments only); a task asking for a
  resource no worker has waits forever without a word (so ``GPU`` is asked for only
  when some worker advertises it). A ``LocalCluster`` spawns its workers: the program
  that builds it needs an ``if __name__ == "__main__"`` guard. Its scheduler still serves HTTP
  routes on 127.0.0.1:8787 with ``dashboard_address=None`` (another port, with a warning, if taken).
- **Order at exit:** ``engine.shutdown()`` first, then ``dx.close()``: a stage stopped by ``close``
  while the engine still listens comes back ``Cancelled`` and the engine marks its item cancelled.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import functools
import logging
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from pipeline.engine.stage import StageContext
    from pipeline.engine.worker import Outcome

log = logging.getLogger("tubemill.distributed")

ACCEPTED = '"local" (threads here), "dask://HOST:PORT" (a running scheduler) or "local-cluster:N" (N processes here)'
CONNECT_TIMEOUT_S = 10.0
CANCEL_POLL_S = 0.25  # engine side: how often in-flight stages are asked whether they should stop
CANCEL_CHECK_S = 0.5  # worker side: at most one scheduler round trip per this many seconds per stage
LOCAL_POOL_MIN = 32


# ---------------------------------------------------------------------------------------------------- specs
def parse_executor(spec: str | None) -> tuple[str, str | int] | None:
    """``None`` for local threads, ``("dask", "HOST:PORT")`` or ``("local-cluster", N)``; ConfigError otherwise."""
    s = (spec or "").strip()
    if s.lower() in ("", "local", "threads"):
        return None
    if s.startswith("dask://"):
        host, _, port = s[len("dask://"):].rstrip("/").rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return "dask", f"{host}:{int(port)}"
        raise ConfigError(f"executor {spec!r}: expected dask://HOST:PORT, e.g. dask://10.0.0.5:8786")
    if s == "local-cluster" or s.startswith("local-cluster:"):
        n = s.partition(":")[2] or str(os.cpu_count() or 1)
        if n.isdigit() and int(n) >= 1:
            return "local-cluster", int(n)
        raise ConfigError(f"executor {spec!r}: expected local-cluster:N with N ≥ 1 worker processes")
    raise ConfigError(f"unknown executor {spec!r}: use {ACCEPTED}")


# ---------------------------------------------------------------------------------------------------- worker side
def _noop_progress(fraction: float) -> None:
    """Remote progress is not streamed back (a scheduler round trip per update would cost more than it tells)."""


class _RemoteCancel:
    """``ctx.cancelled()`` on a worker: the task's Dask Event, asked at most once per ``CANCEL_CHECK_S``."""

    def __init__(self, name: str | None) -> None:
        self.name = name
        self._event: Any = None
        self._next = 0.0
        self._set = False

    def __call__(self) -> bool:
        if self._set or not self.name:
            return self._set
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + CANCEL_CHECK_S
        try:
            if self._event is None:
                from distributed import Event

                self._event = Event(self.name)  # the worker's own client
            self._set = bool(self._event.is_set())
        except Exception:  # scheduler unreachable: keep working, the engine decides what to do with the result
            log.debug("cancel check failed for %s", self.name, exc_info=True)
        return self._set


def _worker_threads(default: int) -> int:
    """Threads of this worker: what shares a per-process model (transcribe's ``num_workers``), not the pool size."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except Exception:  # not in a worker (called directly in tests)
        return default


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a TubemillError with the same message and retry class."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        etype, message, retryable = errors.describe(exc)
        cls = errors.RetryableError if retryable else errors.PermanentError
        return cls(f"{etype}: {message}")


def _run_remote(stage_name: str, item: dict[str, Any], fields: dict[str, Any], cancel_event: str) -> Outcome:
    """On a worker: rebuild the context, run the stage through the worker's ``execute``, return its outcome."""
    from pipeline.engine.recipe import get_stage
    from pipeline.engine.stage import StageContext
    from pipeline.engine.worker import Outcome, execute

    try:
        stage = get_stage(stage_name)
    except BaseException as exc:  # unknown here: the worker runs another Tubemill version
        return Outcome(ok=False, seconds=0.0, exc=_portable(exc))
    f = dict(fields)
    f["pool_size"] = _worker_threads(int(f.get("pool_size", 1)))
    ctx = StageContext(**f, _progress=_noop_progress, _cancelled=_RemoteCancel(cancel_event))
    out = execute(stage, item, ctx)
    if out.exc is not None:
        out.exc = _portable(out.exc)
    return out


_CALLBACKS = ("_progress", "_cancelled")


def _ctx_fields(ctx: StageContext) -> dict[str, Any]:
    """Every field of the StageContext but its two callbacks (they close over the engine and cannot travel).

    Generic on purpose: a field added to StageContext travels without a change here. Paths are made
    absolute: a worker's current folder is not the engine's.
    """
    out = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx) if f.name not in _CALLBACKS}
    for name in ("workdir", "home"):
        out[name] = Path(out[name]).absolute()
    return out


def _worker_check(paths: list[str]) -> dict[str, Any]:
    """Run on every worker by ``connect``: can it import the stages, does it see the shared folders?"""
    from pipeline.engine.recipe import load_recipes

    load_recipes()
    return {"pid": os.getpid(), "missing": [p for p in paths if not os.path.isdir(p)]}


# ---------------------------------------------------------------------------------------------------- engine side
@dataclass
class _InFlight:
    cancelled: Callable[[], bool] | None
    event: str
    dask_future: Any
    future: cf.Future[Any]
    signalled: bool = False


class DaskPoolExecutor(cf.Executor):
    """One engine pool (cpu or gpu) on a Dask cluster, as the ``concurrent.futures.Executor`` the engine expects.

    ``submit(worker.execute, stage, item, ctx)`` ships ``_run_remote(stage.name, item, ctx fields)``;
    any other callable is shipped as it is (it must pickle). ``submit`` never raises: a call that
    cannot be sent comes back as a failed future, because the engine has already counted the slot
    busy and relies on the completion to free it. Futures are plain ``concurrent.futures.Future``;
    their callbacks run on Dask's callback thread, so they must not block.
    """

    def __init__(self, client: Client, pool: str = "cpu", *, resources: dict[str, float] | None = None,
                 owns_client: bool = False) -> None:
        self.client = client
        self.pool = pool
        self.resources = dict(resources) if resources else None
        self.owns_client = owns_client
        self._lock = threading.Lock()
        self._inflight: dict[str, _InFlight] = {}
        self._to_clear: list[str] = []
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- submitting
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        from pipeline.engine.worker import execute

        cff: cf.Future[Any] = cf.Future()
        cff.set_running_or_notify_cancel()  # running from the engine's view: it never cancels a started stage
        if self._closed.is_set():
            cff.set_exception(RuntimeError(f"the Dask {self.pool} pool is shut down"))
            return cff
        try:
            if fn is execute and len(args) == 3 and not kwargs:
                stage, item, ctx = args
                key = f"{stage.name}-{ctx.batch_id}-{ctx.item_n}-{uuid.uuid4().hex[:12]}"
                event = f"tubemill-cancel-{key}"
                call: tuple[Any, ...] = (_run_remote, stage.name, item, _ctx_fields(ctx), event)
                cancelled = ctx._cancelled
            else:  # positional only: submit() would swallow kwargs named like its own options
                key = f"{getattr(fn, '__name__', 'call')}-{uuid.uuid4().hex[:12]}"
                event, cancelled = "", None
                call = (functools.partial(fn, *args, **kwargs),)
            dfut = self.client.submit(*call, key=key, pure=False, resources=self.resources)
        except BaseException as exc:
            cff.set_exception(exc)
            return cff
        with self._lock:
            self._inflight[key] = _InFlight(cancelled, event, dfut, cff)
        if cancelled is not None:
            self._ensure_watcher()
            self._wake.set()
        dfut.add_done_callback(functools.partial(self._on_done, key, cff))
        return cff

    def _on_done(self, key: str, cff: cf.Future[Any], dfut: Any) -> None:
        """On Dask's callback thread: fetch the outcome, release the result on the worker, complete ``cff``."""
        try:
            result, exc = dfut.result(), None
        except BaseException as e:  # the task raised, was cancelled, or its workers kept dying (KilledWorker)
            result, exc = None, e
        dfut.release()  # else a worker dying later would make the scheduler compute it again
        with self._lock:
            entry = self._inflight.pop(key, None)
            if entry is not None and entry.signalled:
                self._to_clear.append(entry.event)
                self._wake.set()
        if exc is None:
            cff.set_result(result)
        else:
            cff.set_exception(exc)

    # -- cancellation
    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None and not self._closed.is_set():
                self._watcher = threading.Thread(target=self._watch, name=f"tubemill-dask-{self.pool}", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        """Turn the engine's cancel flags into Dask Events the remote stages check; forget finished ones."""
        while not self._closed.is_set():
            self._wake.clear()
            self._signal(only_if_cancelled=True)
            busy = self._clear_events()
            self._wake.wait(CANCEL_POLL_S if busy else None)

    def _signal(self, only_if_cancelled: bool) -> None:
        with self._lock:
            entries = [(k, e) for k, e in self._inflight.items() if e.event and not e.signalled]
        for key, e in entries:
            try:
                if only_if_cancelled and not (e.cancelled and e.cancelled()):
                    continue
                with self._lock:
                    e.signalled = True  # from now on, finishing the task queues the Event for deletion
                from distributed import Event

                Event(e.event, client=self.client).set()
                with self._lock:
                    if key not in self._inflight:  # finished meanwhile: its deletion may have run before the set
                        self._to_clear.append(e.event)
                        self._wake.set()
            except Exception:  # client closing: the task is lost anyway
                log.debug("could not signal %s", e.event, exc_info=True)

    def _clear_events(self) -> bool:
        """Delete set Events of finished tasks (the scheduler keeps a set Event forever); True while work is out."""
        with self._lock:
            names, self._to_clear = self._to_clear, []
            busy = bool(self._inflight)
        for name in names:
            try:
                from distributed import Event

                Event(name, client=self.client).clear()
            except Exception:
                log.debug("could not clear %s", name, exc_info=True)
        return busy

    # -- lifecycle
    def stop_remote(self, timeout: float) -> bool:
        """Ask every remote stage to stop (its cancel Event) and wait up to ``timeout`` s; True if all came back.

        Closing a cluster under a running stage makes its worker hang on the stage's next scheduler call
        until the nanny kills it (4 s); a stage told to stop first ends cleanly with a ``Cancelled`` outcome.
        """
        self._signal(only_if_cancelled=False)
        with self._lock:
            futures = [e.future for e in self._inflight.values()]
        return not cf.wait(futures, timeout=timeout).not_done

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``cancel_futures`` stop remote stages too. Closes the client only if owned."""
        self._closed.set()
        self._wake.set()
        with self._lock:
            entries = list(self._inflight.values())
        if cancel_futures and entries:
            self._signal(only_if_cancelled=False)  # running stages stop at their next check
            try:
                self.client.cancel([e.dask_future for e in entries])
            except Exception:
                log.debug("cancel on shutdown failed", exc_info=True)
        if wait and entries and not cancel_futures:
            cf.wait([e.future for e in entries])
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=5)
        self._clear_events()
        if self.owns_client:
            self.client.close()

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet completed (for tests and status displays)."""
        with self._lock:
            return len(self._inflight)


# ---------------------------------------------------------------------------------------------------- connecting
@dataclass
class DaskExecutors:
    """What ``connect`` built: pass ``executors`` and ``pool_sizes`` to the Engine, ``close()`` after its shutdown."""

    client: Client
    cluster: LocalCluster | None
    executors: dict[str, cf.Executor]
    pool_sizes: dict[str, int]
    worker_pids: dict[str, int] = field(default_factory=dict)

    def close(self, grace_s: float = 2.0) -> None:
        """Stop remote stages (up to ``grace_s``), shut the pools, close the client and the cluster we started.

        Call it after ``Engine.shutdown``: stages still running then are told to stop and waited for
        briefly (the engine has stopped listening; they are requeued when the engine starts again).
        """
        deadline = time.monotonic() + grace_s
        dask_pools = [ex for ex in self.executors.values() if isinstance(ex, DaskPoolExecutor)]
        for ex in dask_pools:
            ex._signal(only_if_cancelled=False)
        for ex in dask_pools:
            ex.stop_remote(max(0.0, deadline - time.monotonic()))
        for ex in self.executors.values():
            ex.shutdown(wait=False, cancel_futures=True)
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()

    def __enter__(self) -> DaskExecutors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(spec: str, pool_sizes: dict[str, int], *, shared_path: str | Path | None = None,
            timeout: float = CONNECT_TIMEOUT_S) -> DaskExecutors:
    """Executors for ``Engine(executors=...)`` from ``dask://HOST:PORT`` or ``local-cluster:N``.

    ``pool_sizes`` gives the local ``net`` and ``llm`` pools. The returned ``pool_sizes`` sets
    ``cpu`` to the cluster's worker threads and ``gpu`` to its ``GPU`` resources (0: gpu stages
    queue in the cpu pool, as on a machine without a GPU). With ``shared_path`` (the output
    root) every worker must see that folder, else ConfigError: better now than per item.
    """
    parsed = parse_executor(spec)
    if parsed is None:
        raise ConfigError(f"connect() needs a Dask executor, not {spec!r}: use {ACCEPTED}")
    from distributed import Client, LocalCluster

    kind, arg = parsed
    cluster: LocalCluster | None = None
    if kind == "local-cluster":
        cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster, timeout=timeout)
    else:
        try:
            client = Client(f"tcp://{arg}", timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at tcp://{arg} within {timeout:g}s ({exc}); "
                              f"start one with `dask scheduler` or use local-cluster:N") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            raise ConfigError(f"the Dask scheduler at {client.scheduler.address} has no workers "
                              f"(start some with `dask worker {client.scheduler.address}`)") from None
        paths = [str(Path(shared_path).absolute())] if shared_path is not None else []
        try:
            checks = client.run(_worker_check, paths)
        except Exception as exc:
            raise ConfigError(f"a Dask worker cannot run Tubemill stages ({type(exc).__name__}: {exc}); "
                              "install the same Tubemill on every worker") from None
        blind = sorted(addr for addr, c in checks.items() if c["missing"])
        if blind:
            raise ConfigError(f"Dask worker(s) {', '.join(blind)} do not see {paths[0]}: every worker needs the "
                              "output folder at the same path (a shared mount)")
        workers = client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values())
        gpus = sum(int((w.get("resources") or {}).get("GPU", 0)) for w in workers.values())
    except BaseException:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    sizes = {
        "net": max(1, int(pool_sizes.get("net", 1))),
        "cpu": max(1, threads),
        "gpu": gpus,
        "llm": max(1, int(pool_sizes.get("llm", 1))),
    }
    executors: dict[str, cf.Executor] = {
        p: cf.ThreadPoolExecutor(max_workers=max(LOCAL_POOL_MIN, sizes[p]), thread_name_prefix=f"tubemill-{p}")
        for p in ("net", "llm")
    }
    executors["cpu"] = DaskPoolExecutor(client, "cpu")
    executors["gpu"] = DaskPoolExecutor(client, "gpu", resources={"GPU": 1} if gpus else None)
    log.info("Dask executors: %s workers, %d threads, %d GPU(s)", len(workers), threads, gpus)
    return DaskExecutors(client, cluster, executors, sizes, {a: c["pid"] for a, c in checks.items()})


def engine_executors(spec: str | None, settings: Any, output_root: Path) -> tuple[Any, DaskExecutors | None]:
    """(settings with the cluster's pool sizes, executors) for ``spec``; (settings, None) to run locally.

    One place for the CLI and the app: both hand ``dx.executors`` to ``Engine`` and call
    ``dx.close()`` after the engine has shut down (stages first, then the cluster).
    """
    if parse_executor(spec) is None:
        return settings, None
    import logging
    from dataclasses import replace

    import distributed  # noqa: F401 - it sets its loggers up on import; quiet them after that

    if not logging.getLogger("tubemill").isEnabledFor(logging.INFO):
        logging.getLogger("distributed").setLevel(logging.WARNING)  # the cluster's chatter only with -v
    Path(output_root).mkdir(parents=True, exist_ok=True)  # a fresh home has none yet; workers must see it
    dx = connect(str(spec), settings.pools, shared_path=output_root)
    return replace(settings, pools=dict(dx.pool_sizes)), dx

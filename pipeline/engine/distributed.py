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

This module connects and sizes the pools; the pool itself is :mod:`pipeline.engine.dask_pool`
(:class:`DaskPoolExecutor`, re-exported here) and what runs on a worker is
:mod:`pipeline.engine.dask_remote` (its pickled entry points are re-exported here as well).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.engine.dask_pool import CANCEL_POLL_S, DaskPoolExecutor
from pipeline.engine.dask_remote import CANCEL_CHECK_S, _run_remote, _worker_check
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

log = logging.getLogger("tubemill.distributed")

__all__ = [  # _run_remote and _worker_check: Dask pickles them by reference; their old path keeps working
    "ACCEPTED", "CANCEL_CHECK_S", "CANCEL_POLL_S", "CONNECT_TIMEOUT_S", "LOCAL_POOL_MIN", "DaskExecutors",
    "DaskPoolExecutor", "_run_remote", "_worker_check", "connect", "engine_executors", "parse_executor",
]

ACCEPTED = '"local" (threads here), "dask://HOST:PORT" (a running scheduler) or "local-cluster:N" (N processes here)'
CONNECT_TIMEOUT_S = 10.0
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
    client, cluster = _open_client(*parsed, timeout=timeout)
    try:
        checks, n_workers, threads, gpus = _survey(client, shared_path, timeout)
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
    log.info("Dask executors: %s workers, %d threads, %d GPU(s)", n_workers, threads, gpus)
    return DaskExecutors(client, cluster, executors, sizes, {a: c["pid"] for a, c in checks.items()})


def _open_client(kind: str, arg: str | int, *, timeout: float) -> tuple[Client, LocalCluster | None]:
    """A client of the running scheduler at ``arg``, or of a LocalCluster of ``arg`` processes started here."""
    from distributed import Client, LocalCluster

    if kind == "local-cluster":
        cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        return Client(cluster, timeout=timeout), cluster
    try:
        return Client(f"tcp://{arg}", timeout=timeout), None
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at tcp://{arg} within {timeout:g}s ({exc}); "
                          f"start one with `dask scheduler` or use local-cluster:N") from None


def _survey(client: Client, shared_path: str | Path | None,
            timeout: float) -> tuple[dict[str, Any], int, int, int]:
    """(each worker's check, workers, threads, GPUs), once some worker is there and every one of them can
    import the stages and sees ``shared_path``; ConfigError saying what to fix otherwise."""
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
    return checks, len(workers), threads, gpus


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

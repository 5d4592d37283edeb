"""The engine side of one Dask pool: a ``concurrent.futures.Executor`` that ships stages to the cluster and
turns the engine's cancel flags into Dask Events the remote stages check.

The engine hands it ``submit(worker.execute, stage, item, ctx)`` as it would a thread
pool; what travels is :func:`pipeline.engine.dask_remote._run_remote` with the stage's
name and the context's plain fields. See :mod:`pipeline.engine.distributed` for the
cluster as a whole (connecting, pool sizes, requirements and limits).
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.engine.dask_remote import _ctx_fields, _run_remote

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger("tubemill.distributed")

CANCEL_POLL_S = 0.25  # engine side: how often in-flight stages are asked whether they should stop


@dataclass
class _InFlight:
    """One submitted task: the engine's cancel flag, its Dask Event's name and both futures."""

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

"""The worker side of the Dask executors: what runs inside a Dask worker process for one stage of one item.

Dask pickles these functions by reference (module and name), so a worker imports this
module, not the engine side's: it must stay importable without a cluster and keep its
names (:mod:`pipeline.engine.distributed` re-exports them under their old path too).
A task carries the stage *name*, the item dict and the context's plain fields; the worker
looks the stage up in its own registry, rebuilds the context and runs it through the
worker's ``execute``, exactly as a local thread pool would.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors

if TYPE_CHECKING:
    from pipeline.engine.stage import StageContext
    from pipeline.engine.worker import Outcome

log = logging.getLogger("tubemill.distributed")

CANCEL_CHECK_S = 0.5  # worker side: at most one scheduler round trip per this many seconds per stage


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

"""Virtual time for the real scheduler: an executor whose stages "finish" at now + a modelled duration.

The plan simulator (``pipeline.recipes.transcribe.plan``) and tests build an ordinary
``Engine`` with a :class:`~pipeline.engine.clock.FakeClock`, a :class:`VirtualExecutor`
for every pool, a :class:`NoGovernor` and ``durable=False``, then alternate
``engine.tick()`` with :meth:`VirtualTime.jump` — every scheduling decision is the
production code's, reached through public methods only.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from typing import Any

from pipeline.engine.clock import FakeClock
from pipeline.engine.governor import Governor
from pipeline.engine.stage import Stage, StageContext, StageResult
from pipeline.engine.worker import Outcome

# model(stage, ctx) -> seconds one worker spends on it
Model = Callable[[Stage, StageContext], float]


class NoGovernor(Governor):
    """Virtual machines never run out of RAM or disk."""

    def hold_reason(self, resource: str) -> str | None:
        return None

    def readings(self, fresh: bool = False) -> Any:
        return replace(super().readings(fresh), disk_free_mb=math.inf)  # no real disk fills up


class VirtualTime:
    """A fake clock and the completions due on it."""

    def __init__(self, start: float) -> None:
        self.clock = FakeClock(start=start)
        self.start = self.clock.now()
        self._events: list[tuple[float, int, Future[Any], Outcome]] = []
        self._seq = itertools.count()

    def finish_after(self, seconds: float, outcome: Outcome) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_running_or_notify_cancel()
        heapq.heappush(self._events, (self.clock.now() + seconds, next(self._seq), fut, outcome))
        return fut

    def next_event(self) -> float:
        return self._events[0][0] if self._events else math.inf

    def jump(self, to: float) -> None:
        """Move the clock to ``to`` (if later) and complete every stage due by then."""
        if to > self.clock.now():
            self.clock.set(to)
        while self._events and self._events[0][0] <= self.clock.now():
            _, _, fut, outcome = heapq.heappop(self._events)
            fut.set_result(outcome)


class VirtualExecutor(Executor):
    """Runs nothing: each stage succeeds ``model(stage, ctx)`` virtual seconds after it starts."""

    def __init__(self, time: VirtualTime, model: Model) -> None:
        self.time = time
        self.model = model

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:  # type: ignore[override]
        stage, _item, ctx = args
        secs = self.model(stage, ctx)
        return self.time.finish_after(secs, Outcome(ok=True, seconds=secs, result=StageResult()))

"""Injectable clocks: the scheduler asks ``clock.now()`` and never sleeps on its own,
so tests and the plan simulator run the real scheduling code on virtual time
(huey's consumer takes ``now=`` for the same reason)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SystemClock:
    """Wall-clock seconds since the epoch (stored in item records, so humans can read them)."""

    virtual = False

    def now(self) -> float:
        return time.time()

    def subscribe(self, fn: Callable[[], None]) -> None:
        """Real time moves by itself; nobody needs telling."""


class FakeClock:
    """Time that moves only when told to; wakes subscribers (the scheduler) when it does."""

    virtual = True

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self._subs: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
        for fn in list(self._subs):
            fn()

    def set(self, t: float) -> None:
        with self._lock:
            self._now = t
        for fn in list(self._subs):
            fn()

    def subscribe(self, fn: Callable[[], None]) -> None:
        self._subs.append(fn)

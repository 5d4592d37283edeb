"""The subscription loop the owning engine runs: due subscriptions checked, results and errors stored.

It implements the engine's :class:`~pipeline.engine.recipe.Service` protocol (start, stop, kick,
cancel_batch) but is not a recipe's: :func:`attach` starts it beside an engine (the app's
``get_engine``, ``tubemill watch run``), without a change to the engine. Its thread idles while
the engine only follows another owner and starts checking the moment the engine owns the home
(after a takeover too), so only one process ever checks a home's subscriptions.

The schedule lives in the stored subscriptions (``next_check``), so it survives restarts: a
subscription due while nothing ran is checked at once on the next start. A failed check backs
off exponentially — the interval doubles at each failure in a row, capped at ``backoff_cap_s``
(6 h, or the interval itself if longer) — and keeps its reason in ``last_error`` for the list
and the page; one success resets it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline import errors
from pipeline.watch import subs as store
from pipeline.watch.checker import check

log = logging.getLogger("tubemill.watch")

POLL_S = 1.0
BACKOFF_CAP_S = 6 * 3600.0
WORKERS = 8  # checks at once in a round: each is one small request, mostly waiting on the network


def backoff_s(every_s: float, failures: int, cap_s: float = BACKOFF_CAP_S) -> float:
    """The wait after ``failures`` failed checks in a row: the interval, doubled per failure, capped."""
    return min(max(cap_s, every_s), every_s * 2 ** max(0, failures - 1))


def reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, errors.TubemillError) else f"{type(exc).__name__}: {text}"


class WatchService:
    """Checks due subscriptions every ``poll_s`` while its engine owns the home."""

    name = "watch"

    def __init__(self, engine: Any, *, poll_s: float = POLL_S, stable_s: float = 5.0,
                 backoff_cap_s: float = BACKOFF_CAP_S, workers: int = WORKERS) -> None:
        self.engine = engine
        self.poll_s = poll_s
        self.stable_s = stable_s
        self.backoff_cap_s = backoff_cap_s
        self.workers = workers
        self.rounds = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ Service protocol
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="tubemill-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def kick(self) -> None:
        self._wake.set()

    def cancel_batch(self, batch_id: str) -> None:
        """A cancelled rolling batch stays cancelled; the next day's batch is a new one."""

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.engine.store is not None and not self.engine.stopping.is_set():
                try:
                    self.run_round()
                except Exception:  # one bad record must not end the loop
                    log.exception("subscription round failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def due(self, now: float) -> list[dict[str, Any]]:
        return [s for s in store.list_subs(self.engine.home)
                if not s.get("paused") and (s.get("check_requested") or (s.get("next_check") or 0) <= now)]

    def run_round(self, now: float | None = None) -> dict[str, Any]:
        """Check every due subscription once (``WORKERS`` at a time); returns the round's totals."""
        t0 = time.monotonic()
        now = time.time() if now is None else now
        due = self.due(now)
        results: list[dict[str, Any]] = []
        if due:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(due)), thread_name_prefix="tubemill-check") as ex:
                results = list(ex.map(lambda s: self.check_one(s, now), due))
        self.rounds += 1
        return {"checked": len(due), "new": sum(r.get("new", 0) for r in results),
                "requests": sum(r.get("requests", 0) for r in results),
                "errors": sum(1 for r in results if r.get("error")), "seconds": time.monotonic() - t0}

    def check_one(self, sub: dict[str, Any], now: float) -> dict[str, Any]:
        """Check one subscription and store the outcome: the schedule, the counts, or the error and backoff."""
        try:
            result = check(self.engine, sub, stable_s=self.stable_s, now=now)
        except Exception as exc:
            why = reason(exc)
            log.warning("watch %s: check failed: %s", sub["source"], why)

            def failed(s: dict[str, Any]) -> None:
                s["failures"] = int(s.get("failures") or 0) + 1
                s.update(last_check=now, last_error=why, check_requested=False,
                         next_check=now + backoff_s(float(s["every_s"]), s["failures"], self.backoff_cap_s))

            store.update(self.engine.home, sub["id"], failed)
            return {"error": why, "requests": 1}

        def done(s: dict[str, Any]) -> None:
            wait = float(s["every_s"])
            if result["waiting"]:  # a file still being written: look again once it may be stable
                wait = min(wait, self.stable_s + self.poll_s)
            s.update(last_check=now, next_check=now + wait, last_error=None, failures=0, check_requested=False,
                     baselined=True, state=result["state"], last_new=result["new"], last_via=result["via"],
                     last_note=result["note"], checks=int(s.get("checks") or 0) + 1,
                     new_items_total=int(s.get("new_items_total") or 0) + result["new"])
            if result["batch"]:
                s["batch"] = result["batch"]

        store.update(self.engine.home, sub["id"], done)
        return result


def attach(engine: Any, **kw: Any) -> WatchService:
    """Start the subscription loop beside ``engine`` (it checks only while the engine owns the home)."""
    service = WatchService(engine, **kw)
    service.start()
    return service

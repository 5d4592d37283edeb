"""Resource readings over time, for the System page's charts.

A daemon thread samples the governor's readings (RAM, disk, CPU, GPUs) and the
engine's pools every ``interval_s`` into a bounded ring buffer. One monitor per
process, shared by every session (``st.cache_resource``): everything it hands out
is a copy taken under its lock, and its thread never calls ``st.*``.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.engine.core import Engine

log = logging.getLogger("tubemill.monitor")

Sample = dict[str, Any]


class Monitor:
    """Samples ``engine.governor.readings(fresh=True)`` and ``engine.pools()`` every ``interval_s``.

    ``sample_once()`` takes one sample on the caller's thread (tests, and a page that
    wants a reading now); ``start()`` takes one at once and then keeps sampling.
    """

    def __init__(self, engine: Engine, interval_s: float = 2.0, keep: int = 300,
                 clock: Callable[[], float] = time.time) -> None:
        if interval_s <= 0 or keep < 1:
            raise ValueError(f"interval_s must be > 0 and keep >= 1 (got {interval_s}, {keep})")
        self.engine = engine
        self.interval_s = interval_s
        self.clock = clock
        self.last_error: str | None = None
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Monitor:
        """Take a first sample now, then sample in a daemon thread; a second call is a no-op."""
        with self._lock:
            if self._thread is not None:
                return self
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="tubemill-monitor", daemon=True)
        self._safe_sample()
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_sample()

    def _safe_sample(self) -> None:
        # The thread must outlive one bad reading (a driver hiccup, a disk gone): record it, try again later.
        try:
            self.sample_once()
        except Exception as exc:
            if self.last_error is None:
                log.warning("resource sample failed", exc_info=True)
            self.last_error = f"{type(exc).__name__}: {exc}"

    def sample_once(self) -> Sample:
        """Read the machine and the pools once, store the sample, and return a copy of it."""
        r = self.engine.governor.readings(fresh=True)
        pools = self.engine.pools()
        used = r.ram_total_mb - r.ram_available_mb
        sample: Sample = {
            "t": float(self.clock()),
            "cpu_percent": float(r.cpu_percent),
            "ram_total_mb": float(r.ram_total_mb),
            "ram_available_mb": float(r.ram_available_mb),
            "ram_used_pct": round(100.0 * used / r.ram_total_mb, 2) if r.ram_total_mb else 0.0,
            "disk_free_mb": float(r.disk_free_mb),
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "mem_total_mb": float(g.mem_total_mb),
                    "mem_free_mb": float(g.mem_free_mb),
                    "mem_used_pct": round(100.0 * (g.mem_total_mb - g.mem_free_mb) / g.mem_total_mb, 2)
                    if g.mem_total_mb else 0.0,
                    "util_percent": float(g.util_percent),
                }
                for g in r.gpus
            ],
            "gpu_error": r.gpu_error,
            "pools": {p.name: {"size": p.size, "busy": p.busy, "held": p.held} for p in pools},
            "busy": {p.name: p.busy for p in pools},
        }
        with self._lock:
            self._samples.append(sample)
            self.last_error = None
            return copy.deepcopy(sample)

    def samples(self) -> list[Sample]:
        """Every kept sample, oldest first (copies: callers may change them freely)."""
        with self._lock:
            return copy.deepcopy(list(self._samples))

    def latest(self) -> Sample | None:
        with self._lock:
            return copy.deepcopy(self._samples[-1]) if self._samples else None


def chart_rows(samples: list[Sample]) -> list[dict[str, Any]]:
    """Flat rows for line charts: ``time`` plus CPU %, RAM used % and, per GPU, memory used % and utilization %."""
    rows = []
    for s in samples:
        row: dict[str, Any] = {"time": _when(s["t"]), "CPU %": s["cpu_percent"],
                               "RAM used %": s["ram_used_pct"]}
        for g in s["gpus"]:
            row[f"GPU {g['index']} memory %"] = g["mem_used_pct"]
            row[f"GPU {g['index']} util %"] = g["util_percent"]
        rows.append(row)
    return rows


def busy_rows(samples: list[Sample]) -> list[dict[str, Any]]:
    """Flat rows of busy workers per pool over time, for a chart next to the resources."""
    return [{"time": _when(s["t"]), **{p: int(n) for p, n in s["busy"].items()}} for s in samples]


def _when(t: float) -> datetime:
    # Whole seconds: sub-second times make chart axes label milliseconds.
    return datetime.fromtimestamp(round(t))


TIME_AXIS_FORMAT = "%H:%M:%S"  # 24-hour: Vega's default labels read 12-hour with no AM/PM


def time_chart(rows: list[dict[str, Any]], y_title: str) -> Any:
    """An Altair line chart of ``rows`` (``time`` plus one column per series) with a 24-hour time axis."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame({"time": pd.Series(dtype="datetime64[ns]")})
    long = df.melt(id_vars=["time"], var_name="series", value_name="value")
    return (alt.Chart(long).mark_line()
            .encode(x=alt.X("time:T", title=None, axis=alt.Axis(format=TIME_AXIS_FORMAT, labelAngle=0)),
                    y=alt.Y("value:Q", title=y_title), color=alt.Color("series:N", title=None),
                    tooltip=[alt.Tooltip("time:T", format=TIME_AXIS_FORMAT), "series:N", "value:Q"]))

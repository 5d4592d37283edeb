"""The monitor keeps a bounded history of readings and pool use, and reports a missing GPU instead of raising."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pipeline.app.monitor import Monitor, busy_rows, chart_rows
from pipeline.common.hardware import GpuReading, read_gpus
from pipeline.engine.core import Engine
from pipeline.engine.governor import Governor, Readings


class Ticks:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        self.t += 2.0
        return self.t


def test_samples_accumulate_and_are_bounded(make_engine: Callable[..., Engine]) -> None:
    """Each sample is added in order; only the newest ``keep`` remain."""
    engine = make_engine()
    mon = Monitor(engine, interval_s=60, keep=5, clock=Ticks())
    for _ in range(8):
        mon.sample_once()
    got = mon.samples()
    assert len(got) == 5
    assert [s["t"] for s in got] == [1_008.0 + 2 * i for i in range(5)]
    s = mon.latest()
    assert s == got[-1]
    assert 0 <= s["ram_used_pct"] <= 100 and s["ram_total_mb"] > 0 and s["disk_free_mb"] > 0
    assert set(s["busy"]) == {"net", "cpu", "gpu", "llm"}
    assert s["pools"]["cpu"] == {"size": 2, "busy": 0, "held": None}


def test_samples_are_copies(make_engine: Callable[..., Engine]) -> None:
    """Changing what samples() returned does not change the monitor's history."""
    mon = Monitor(make_engine(), interval_s=60)
    mon.sample_once()
    mon.samples()[0]["busy"]["cpu"] = 99
    mon.latest()["gpus"].append("x")
    assert mon.latest()["busy"]["cpu"] == 0 and mon.latest()["gpus"] == mon.samples()[0]["gpus"]


def test_no_gpu_is_reported_not_raised(make_engine: Callable[..., Engine]) -> None:
    """On a machine without NVML the sample has no GPUs and says why."""
    gpus, error = read_gpus()
    if gpus:
        pytest.skip("this machine has an NVIDIA GPU")
    s = Monitor(make_engine(), interval_s=60).sample_once()
    assert s["gpus"] == [] and s["gpu_error"] == error and error


def test_gpu_readings_become_percentages(make_engine: Callable[..., Engine], home) -> None:
    """GPU memory used % and utilization come through per device, and into the chart rows."""
    fake = Readings(ram_total_mb=8000, ram_available_mb=2000, disk_free_mb=5000, cpu_percent=12.5,
                    gpus=[GpuReading(0, "Fake GPU", 10_000, 2_500, 40.0)])
    engine = make_engine(governor=Governor(home / "output", probe=lambda: fake))
    mon = Monitor(engine, interval_s=60, clock=Ticks())
    s = mon.sample_once()
    assert s["ram_used_pct"] == 75.0 and s["cpu_percent"] == 12.5
    assert s["gpus"][0]["mem_used_pct"] == 75.0 and s["gpus"][0]["util_percent"] == 40.0
    [row] = chart_rows(mon.samples())
    assert row["GPU 0 memory %"] == 75.0 and row["GPU 0 util %"] == 40.0 and row["CPU %"] == 12.5
    [busy] = busy_rows(mon.samples())
    assert busy["cpu"] == 0 and "time" in busy


def test_thread_samples_until_stopped(make_engine: Callable[..., Engine]) -> None:
    """start() samples at once and then every interval; stop() ends the thread."""
    mon = Monitor(make_engine(), interval_s=0.02).start()
    try:
        assert mon.running and len(mon.samples()) >= 1
        deadline = time.monotonic() + 5
        while len(mon.samples()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(mon.samples()) >= 4
    finally:
        mon.stop()
    assert not mon.running
    n = len(mon.samples())
    time.sleep(0.08)
    assert len(mon.samples()) == n


def test_a_failing_reading_does_not_kill_the_thread(make_engine: Callable[..., Engine], home) -> None:
    """A probe that raises is recorded as last_error; sampling goes on and recovers."""
    calls = {"n": 0}

    def probe() -> Readings:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk went away")
        return Readings(ram_total_mb=100, ram_available_mb=50, disk_free_mb=10, cpu_percent=1.0)

    engine = make_engine(governor=Governor(home / "output", probe=probe))
    mon = Monitor(engine, interval_s=0.02).start()
    try:
        assert mon.last_error == "OSError: disk went away" and mon.samples() == []
        deadline = time.monotonic() + 5
        while not mon.samples() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mon.samples() and mon.last_error is None and mon.running
    finally:
        mon.stop()

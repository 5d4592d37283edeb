"""7,000 items through the real engine, downloads account-bound, in a fresh process: memory stays flat.

Marked slow (about a minute on 2 cores): ``pytest -m slow tests/engine/test_scale.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = r"""
import json, sys, threading, time
import psutil
sys.path.insert(0, sys.argv[2])
from pipeline.engine.core import Engine
from tests.conftest import fast_settings

n = int(sys.argv[3])
proc = psutil.Process()
samples = []
stop = threading.Event()

def sample():
    while not stop.wait(0.25):
        samples.append(proc.memory_info().rss / 2**20)

threading.Thread(target=sample, daemon=True).start()
e = Engine(sys.argv[1], settings=fast_settings(flush_delay_s=0.25,
           pools={"net": 4, "cpu": 2, "gpu": 0, "llm": 2}))
e.start()
t0 = time.time()
# probe_net is account-bound (one download per account at a time, through the pacing pool)
e.submit("big", [f"v{i}" for i in range(n)], recipe=["probe_net", "noop_cpu", "noop_gpu", "noop_llm"])
s = e.wait("big", timeout=1200)
wall = time.time() - t0
e.shutdown()
stop.set()
half = len(samples) // 2
print(json.dumps({"done": s.counts.get("done"), "wall_s": wall, "peak_rss_mb": max(samples),
                  "first_half_peak_mb": max(samples[:half]), "second_half_peak_mb": max(samples[half:]),
                  "downloads": {r["account"]: r["downloads"] for r in e.accounts.snapshot(0)}}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_7000_items_flat_memory(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "home"), str(ROOT), "7000"],
                         capture_output=True, text=True, timeout=1400, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    print(doc)
    assert doc["done"] == 7000
    assert doc["downloads"] == {"anonymous": 7000}
    assert doc["peak_rss_mb"] < 300
    # flat: the second half of the run does not grow past the first half's peak by more than a little
    assert doc["second_half_peak_mb"] <= doc["first_half_peak_mb"] * 1.15 + 10

"""kill -9 a real `tubemill run` at random moments: the state always opens, no finished
stage runs again, nothing is lost."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state.reader import read_batch, read_summaries
from tests.conftest import ROOT, cli_env

STAGES = ["probe_net", "probe_cpu", "probe_gpu", "probe_llm"]


def durable_done(home: Path) -> set[tuple[int, str]]:
    """(item, stage) pairs whose completion is in the state file right now."""
    summaries = read_summaries(home)
    if not summaries:
        return set()
    _, items = read_batch(home, summaries[0].id)
    done = set()
    for it in items:
        k = len(STAGES) if it["status"] == "done" else int(it.get("stage_index", 0))
        done |= {(it["n"], st) for st in STAGES[:k]}
    return done


def journal_starts(journal: Path, offset: int) -> list[tuple[int, str]]:
    if not journal.exists():
        return []
    with open(journal, "rb") as f:
        f.seek(offset)
        lines = f.read().decode().splitlines()
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "start":
            out.append((int(parts[0]), parts[1]))
    return out


def kill_rounds(tmp_path: Path, rounds: int, items: int, seed: int, min_kills: int) -> None:
    rng = random.Random(seed)
    home = tmp_path / "home"
    journal = tmp_path / "journal.txt"
    src = tmp_path / "crash.txt"
    src.write_text("".join(f"i{n} sleep={rng.choice([0.2, 0.5, 1.0])}\n" for n in range(items)))
    cmd = [sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(src), "--recipe", "probe",
           "--batch-name", "crash", "--resume", "--max-workers", "2", "--set", f"journal={journal}"]
    kills = 0
    for _ in range(rounds):
        before = durable_done(home)
        offset = journal.stat().st_size if journal.exists() else 0
        proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env(home), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.15, 1.2))
        if proc.poll() is not None:
            break  # finished before we could kill it: the remaining check below covers it
        proc.kill()
        proc.wait()
        kills += 1
        after = durable_done(home)  # raises if the state file is torn
        assert before <= after, "finished work was lost"
        rerun = [p for p in journal_starts(journal, offset) if p in before]
        assert not rerun, f"finished stages ran again after a crash: {rerun[:5]}"
    assert kills >= min_kills, f"only {kills} kills landed before the batch finished"
    offset = journal.stat().st_size if journal.exists() else 0
    before = durable_done(home)
    res = subprocess.run(cmd, cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert not [p for p in journal_starts(journal, offset) if p in before]
    s = read_summaries(home)[0]
    assert s.counts["done"] == items and s.total == items
    _, final = read_batch(home, s.id)
    assert sorted(it["n"] for it in final) == list(range(1, items + 1))
    assert all(set(it["timings"]) == set(STAGES) for it in final)
    assert not list((home / "batches").glob(".tmp-*"))  # strays cleaned by the last start
    return None


def test_kill_9_at_random_moments(tmp_path: Path) -> None:
    """22 kill -9s of a running batch: state always opens, no durable stage reruns, all items finish."""
    kill_rounds(tmp_path, rounds=22, items=30, seed=1, min_kills=20)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_9_many_times(tmp_path: Path) -> None:
    """The same with 150 kills and a bigger batch."""
    kill_rounds(tmp_path, rounds=150, items=300, seed=2, min_kills=140)

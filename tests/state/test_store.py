"""The store: group commit, counts, transitions, recovery, corrupt files, the home lock."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import BatchExists
from state.lock import HomeLock, HomeLocked, owner_alive, read_owner
from state.models import IllegalTransition
from state.reader import find_summary, read_batch, read_summaries
from state.store import Store


def open_store(home: Path, delay: float = 0.05) -> Store:
    s = Store(home, flush_delay=delay)
    s.open()
    return s


def disk_items(home: Path, bid: str) -> dict[int, dict]:
    _, items = read_batch(home, bid)
    return {it["n"]: it for it in items}


def test_group_commit_many_transitions_one_write(tmp_path: Path) -> None:
    """Hundreds of transitions reach disk in one TinyDB write, within the bounded delay."""
    store = open_store(tmp_path, delay=0.2)
    bid = store.create_batch("b", ["a"], [f"s{i}" for i in range(300)])
    storage = store._batches[bid].storage
    writes_before = storage.writes
    for n in range(1, 301):
        store.transition(bid, n, "running", stage="a")
    assert disk_items(tmp_path, bid)[1]["status"] == "pending"  # not yet flushed
    deadline = time.monotonic() + 2
    while store.durable_seq(bid) < store.seq(bid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert storage.writes - writes_before == 1
    assert all(it["status"] == "running" for it in disk_items(tmp_path, bid).values())
    assert store.durable_seq(bid) == store.seq(bid)
    store.close()


def test_batch_file_is_a_tinydb_database_and_items_are_not_kept_twice(tmp_path: Path) -> None:
    """TinyDB itself reads the batch file (tables "batch" and "items"); the store keeps one copy of each item
    (copy-on-write records; the storage caches nothing), so a reader's copy never changes under it."""
    from tinydb import TinyDB

    from state.storage import AtomicJSONStorage

    store = open_store(tmp_path, delay=0.01)
    bid = store.create_batch("b", ["a"], ["x", "y"])
    before = store.item(bid, 1)
    store.transition(bid, 1, "running", stage="a")
    assert before["status"] == "pending"  # a copy handed out earlier is not mutated
    store.flush()
    assert store._batches[bid].storage.read.__self__._data is None  # nothing cached beside the store
    db = TinyDB(tmp_path / "batches" / f"{bid}.json", storage=AtomicJSONStorage)
    assert db.table("batch").get(doc_id=1)["name"] == "b"
    assert [d["status"] for d in db.table("items").all()] == ["running", "pending"]
    db.close()
    store.close()


def test_flush_waits_until_durable(tmp_path: Path) -> None:
    """flush() returns only when the change is in the file."""
    store = open_store(tmp_path, delay=10)
    bid = store.create_batch("b", ["a"], ["x"])
    seq = store.transition(bid, 1, "running")
    store.flush()
    assert store.durable_seq(bid) >= seq
    assert disk_items(tmp_path, bid)[1]["status"] == "running"
    store.close()


def test_counts_match_a_scan(tmp_path: Path) -> None:
    """Per-status counts are kept incrementally and agree with the items."""
    store = open_store(tmp_path)
    bid = store.create_batch("b", ["a", "b"], [f"s{i}" for i in range(20)])
    for n in range(1, 11):
        store.transition(bid, n, "running")
    for n in range(1, 6):
        store.transition(bid, n, "done")
    store.transition(bid, 6, "failed", error={"type": "X", "message": "m"})
    counts = store.summary(bid).counts
    scanned: dict[str, int] = {}
    for it in store.items(bid):
        scanned[it["status"]] = scanned.get(it["status"], 0) + 1
    assert {k: v for k, v in counts.items() if v} == scanned
    store.flush()
    assert find_summary(tmp_path, "b").counts == counts  # readers get them from the index
    store.close()


def test_illegal_transition_is_rejected(tmp_path: Path) -> None:
    """A finished item cannot start again; unknown fields are refused."""
    store = open_store(tmp_path)
    bid = store.create_batch("b", ["a"], ["x"])
    store.transition(bid, 1, "running")
    store.transition(bid, 1, "done")
    with pytest.raises(IllegalTransition):
        store.transition(bid, 1, "running")
    with pytest.raises(ValueError):
        store.transition(bid, 1, "done", colour="red")
    store.close()


def test_duplicate_batch_name_is_refused(tmp_path: Path) -> None:
    """Batch names are unique in a home."""
    store = open_store(tmp_path)
    store.create_batch("b", ["a"], ["x"])
    with pytest.raises(BatchExists):
        store.create_batch("b", ["a"], ["y"])
    store.close()


def test_recovery_puts_running_back_to_pending_without_attempt(tmp_path: Path) -> None:
    """Items a dead process left running restart as pending with their attempt count unchanged."""
    store = open_store(tmp_path)
    bid = store.create_batch("b", ["a", "b"], ["x", "y"])
    store.transition(bid, 1, "running", attempts=2, stage="b", stage_index=1)
    store.transition(bid, 2, "running")
    store.transition(bid, 2, "done")
    store.flush()
    # no close(): the process "dies" here
    again = open_store(tmp_path)
    it = again.item(bid, 1)
    assert (it["status"], it["attempts"], it["stage_index"]) == ("pending", 2, 1)
    assert again.item(bid, 2)["status"] == "done"
    assert any("back to pending" in m for m in again.messages)
    again.close()
    store.close()


@pytest.mark.parametrize(
    "content,reason",
    [
        ('{"batch": {"1": {"schema": 1, "id": "x"', "not valid JSON"),
        ('{"_default": {"1": {"hello": "world"}}}', "not a Tubemill state file"),
        ('{"batch": {"1": {"schema": 99, "id": "x", "name": "x", "recipe": []}}}', "schema 99"),
        ("[1, 2, 3]", "expected a JSON object"),
    ],
)
def test_corrupt_or_foreign_file_is_moved_aside(tmp_path: Path, content: str, reason: str) -> None:
    """An unreadable batch file is named, moved aside untouched, and the other batches still load."""
    store = open_store(tmp_path)
    good = store.create_batch("good", ["a"], ["x"])
    store.close()
    bad = tmp_path / "batches" / "zzz-bad.json"
    bad.write_text(content)
    again = open_store(tmp_path)
    assert again.batch_ids() == [good]
    assert any(str(bad) in m and reason in m for m in again.messages), again.messages
    moved = list((tmp_path / "batches" / "corrupt").iterdir())
    assert len(moved) == 1 and moved[0].read_text() == content
    assert not bad.exists()
    assert [s.name for s in read_summaries(tmp_path)] == ["good"]
    again.close()


def test_corrupt_index_is_rebuilt(tmp_path: Path) -> None:
    """The index is derived: a broken one is moved aside and rebuilt from the batch files."""
    store = open_store(tmp_path)
    store.create_batch("b", ["a"], ["x", "y"])
    store.close()
    (tmp_path / "index.json").write_text("{not json")
    again = open_store(tmp_path)
    assert any("index" in m for m in again.messages)
    assert read_summaries(tmp_path)[0].total == 2
    again.close()


def test_reader_falls_back_to_batch_files(tmp_path: Path) -> None:
    """Without an index, readers still list batches from the batch files."""
    store = open_store(tmp_path)
    store.create_batch("b", ["a"], ["x", "y", "z"])
    store.close()
    (tmp_path / "index.json").unlink()
    s = read_summaries(tmp_path)
    assert [(x.name, x.total, x.counts["pending"]) for x in s] == [("b", 3, 3)]


def test_lock_names_its_holder(tmp_path: Path) -> None:
    """A second claim on a home fails and says which process holds it."""
    first = HomeLock(tmp_path, role="tubemill app")
    first.acquire()
    second = HomeLock(tmp_path)
    with pytest.raises(HomeLocked) as err:
        second.acquire()
    assert f"pid {__import__('os').getpid()}" in str(err.value) and "tubemill app" in str(err.value)
    first.release()
    assert read_owner(tmp_path) is None
    assert second.try_acquire()
    second.release()


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    """kill -9 of the owner releases the home at once (flock dies with the process)."""
    code = (
        "import sys,time; sys.path.insert(0, sys.argv[2]); from state.lock import HomeLock;"
        "l=HomeLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).parents[2])],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    assert owner_alive(tmp_path)
    assert read_owner(tmp_path)["pid"] == proc.pid
    proc.kill()
    proc.wait()
    assert not owner_alive(tmp_path)
    assert HomeLock(tmp_path).try_acquire()


def test_index_is_small_json_readers_can_parse(tmp_path: Path) -> None:
    """Readers in other processes get counts without reading a single item."""
    store = open_store(tmp_path)
    store.create_batch("b", ["a"], [f"s{i}" for i in range(500)])
    store.flush()
    raw = json.loads((tmp_path / "index.json").read_text())
    assert raw["batches"][0]["counts"]["pending"] == 500
    assert (tmp_path / "index.json").stat().st_size < 4096
    store.close()

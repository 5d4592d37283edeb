"""Conformance of our TinyDB storage: empty read, round trip, unicode, atomicity, concurrency."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from tinydb import TinyDB
from tinydb.storages import MemoryStorage

from state.storage import AtomicJSONStorage, CorruptStateFile, clean_stray_temps, read_json_file
from state.store import Store


def open_db(kind: str, path: Path) -> TinyDB:
    if kind == "memory":
        return TinyDB(storage=MemoryStorage)
    return TinyDB(path, storage=AtomicJSONStorage, cache=(kind == "atomic"))


KINDS = ["memory", "atomic", "atomic-uncached"]


@pytest.mark.parametrize("kind", KINDS)
def test_empty_read(kind: str, tmp_path: Path) -> None:
    """A storage with nothing written reads as empty, not as an error."""
    db = open_db(kind, tmp_path / "s.json")
    assert db.all() == []
    assert db.tables() == set()


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_and_unicode(kind: str, tmp_path: Path) -> None:
    """Documents with non-ASCII text and nesting come back exactly as written."""
    path = tmp_path / "s.json"
    doc = {"title": "Ünïcødé ✓ 日本語 🎞️ عربى", "nested": {"a": [1, 2.5, None, True]}, "quote": 'a"b\\c'}
    db = open_db(kind, path)
    db.table("items").insert(doc)
    assert db.table("items").all() == [doc]
    if kind != "memory":
        db.close()
        again = TinyDB(path, storage=AtomicJSONStorage)
        assert again.table("items").all() == [doc]
        assert "日本語" in path.read_text(encoding="utf-8")


def test_empty_file_reads_as_none(tmp_path: Path) -> None:
    """A zero-byte file (created but never written) is treated as empty."""
    path = tmp_path / "s.json"
    path.write_bytes(b"")
    assert read_json_file(path) is None
    assert TinyDB(path, storage=AtomicJSONStorage).all() == []


def test_torn_file_is_reported_with_its_path(tmp_path: Path) -> None:
    """A truncated file raises an error naming the file, not a bare JSONDecodeError."""
    path = tmp_path / "s.json"
    path.write_text('{"items": {"1": {"a": 1}')
    with pytest.raises(CorruptStateFile) as err:
        read_json_file(path)
    assert str(path) in str(err.value)


def test_failed_replace_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails, the old document stays readable and the temp file is removed."""
    path = tmp_path / "s.json"
    db = TinyDB(path, storage=AtomicJSONStorage)
    db.insert({"v": 1})

    def boom(*a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        db.insert({"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text())["_default"] == {"1": {"v": 1}}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    assert db.all() == [{"v": 1}]  # the cache was dropped, so we see the disk again


def test_stray_temps_are_cleaned(tmp_path: Path) -> None:
    """Temp files left by a kill between write and rename are removed at start."""
    (tmp_path / ".tmp-s.json.abc").write_text("{")
    (tmp_path / "keep.json").write_text("{}")
    removed = clean_stray_temps(tmp_path)
    assert [p.name for p in removed] == [".tmp-s.json.abc"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_concurrent_writers_through_the_store(tmp_path: Path) -> None:
    """Eight threads transitioning items at once lose nothing and leave a consistent file."""
    store = Store(tmp_path / "home", flush_delay=0.01)
    store.open()
    bid = store.create_batch("b", ["s1"], [f"src-{i}" for i in range(80)])

    def worker(k: int) -> None:
        for n in range(k * 10 + 1, k * 10 + 11):
            store.transition(bid, n, "running", stage="s1")
            store.update_item(bid, n, progress=0.5)
            store.transition(bid, n, "done", progress=1.0, timings={"s1": 0.1})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    again = Store(tmp_path / "home")
    again.open()
    s = again.summary(bid)
    assert s.counts["done"] == 80 and s.total == 80
    assert all(it["progress"] == 1.0 for it in again.items(bid))
    assert s.stage_stats["s1"]["n"] == 80
    again.close()

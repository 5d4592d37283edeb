"""The search index: chunks with segment times, idempotent re-index, remove, phrase/prefix/bm25, hostile queries,
a damaged or missing file rebuilt, the batch filter, reindex from real item folders, readers in other processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from state import search as S
from state.search_query import CHUNK_SECONDS, chunk_segments, fts_query
from state.store import Store
from tests.conftest import ROOT

FILLER = ["we talked about the weather", "then the morning news came on", "nothing else happened for a while"]


def segs(*texts: str, step: float = 5.0) -> list[dict]:
    return [{"start": i * step, "end": i * step + step - 0.5, "text": t} for i, t in enumerate(texts)]


def add(home: Path, n: int, texts: list[str], batch: str = "b1", name: str = "talks", title: str | None = None,
        step: float = 5.0) -> int:
    return S.index_item(home, batch_id=batch, batch_name=name, n=n, item_id=f"id{n}", title=title or f"Ep {n}",
                        source=f"https://example.invalid/{n}", workdir=f"/w/{batch}/{n}",
                        segments=segs(*texts, step=step))


def test_hit_carries_item_segment_time_and_marked_snippet(tmp_path: Path) -> None:
    """A hit names batch, title, item and the start of the segment holding the match, with the match marked."""
    texts = FILLER * 4 + ["the tide came in fast over the rocks"] + FILLER
    assert add(tmp_path, 3, texts, title="Coast walk") == 2  # 16 segments 5 s apart: 60 s chunks -> 2 rows
    [hit] = S.search(tmp_path, "tide")
    assert (hit.batch, hit.batch_id, hit.title, hit.n, hit.item_id) == ("talks", "b1", "Coast walk", 3, "id3")
    assert (hit.start, hit.end) == (60.0, 65.0)  # the 13th segment, until the next one starts
    assert "[tide]" in hit.snippet and hit.source == "https://example.invalid/3" and hit.workdir == "/w/b1/3"
    assert ("tide", True) in hit.parts
    texts = FILLER * 2 + ["the tide again"] + FILLER
    add(tmp_path, 4, texts)
    hit = next(h for h in S.search(tmp_path, "tide") if h.n == 4)
    assert hit.start == 30.0  # the 7th segment, inside the first chunk


def test_chunks_follow_time_and_size() -> None:
    """Segments group into chunks of at most CHUNK_SECONDS; empty and malformed segments are skipped."""
    many = [{"start": i * 2.0, "end": i * 2.0 + 2, "text": f"word{i}"} for i in range(100)]
    chunks = chunk_segments([*many, {"start": 999, "text": "  "}, "junk", {"start": "nan", "text": "x"}])
    assert all(c[3][-1] - c[3][0] < CHUNK_SECONDS for c in chunks[:-1])
    assert [len(c[3]) for c in chunks[:3]] == [30, 30, 30]
    assert chunks[0][0].split("\n")[:2] == ["word0", "word1"]
    assert chunks[-1][0].endswith("x") and chunks[-1][3][-1] == 0.0  # a start that is not a number reads as 0


def test_reindex_of_an_item_is_idempotent_and_replaces_its_text(tmp_path: Path) -> None:
    """Indexing an item again replaces its rows: no duplicates, old words gone, other items untouched."""
    add(tmp_path, 1, ["the harbour at dawn", *FILLER])
    add(tmp_path, 2, ["the harbour at dusk"])
    add(tmp_path, 1, ["the harbour at dawn", *FILLER])
    assert len(S.search(tmp_path, "harbour")) == 2
    assert S.index_stats(tmp_path).items == 2
    add(tmp_path, 1, ["a lighthouse instead"])
    assert [h.n for h in S.search(tmp_path, "harbour")] == [2]
    assert [h.n for h in S.search(tmp_path, "lighthouse")] == [1]
    stats = S.index_stats(tmp_path)
    assert (stats.items, stats.chunks, stats.segments, stats.batches) == (2, 2, 2, 1) and stats.bytes > 0


def test_remove_item(tmp_path: Path) -> None:
    """A removed item's rows leave the index; removing it twice says it was not there."""
    add(tmp_path, 1, ["granite quarry"])
    add(tmp_path, 2, ["granite statue"])
    assert S.remove_item(tmp_path, "b1", 1) is True
    assert [h.n for h in S.search(tmp_path, "granite")] == [2]
    assert S.remove_item(tmp_path, "b1", 1) is False


def test_phrase_prefix_and_all_terms(tmp_path: Path) -> None:
    """Quotes match the exact words in order, word* matches a prefix, and every bare word must occur."""
    add(tmp_path, 1, ["high tide at noon"])
    add(tmp_path, 2, ["the tide was high"])
    add(tmp_path, 3, ["tidal pools and tidepools"])
    assert [h.n for h in S.search(tmp_path, '"high tide"')] == [1]
    assert sorted(h.n for h in S.search(tmp_path, "high tide")) == [1, 2]
    assert sorted(h.n for h in S.search(tmp_path, "tid*")) == [1, 2, 3]
    assert sorted(h.n for h in S.search(tmp_path, '"tide was hig"*')) == [2]
    assert S.search(tmp_path, "ti*") == []  # under MIN_PREFIX letters: the word "ti", not a prefix
    assert [h.n for h in S.search(tmp_path, "tidal noon")] == []


def test_bm25_orders_denser_matches_first(tmp_path: Path) -> None:
    """More occurrences in a shorter passage rank higher; scores come out ascending (bm25's sign)."""
    add(tmp_path, 1, ["salmon " + "river " * 30])
    add(tmp_path, 2, ["salmon salmon salmon run"])
    add(tmp_path, 3, ["salmon once " + "word " * 10])
    hits = S.search(tmp_path, "salmon")
    assert [h.n for h in hits] == [2, 3, 1]
    assert [h.score for h in hits] == sorted(h.score for h in hits)


HOSTILE = ['"', '""', "AND", "OR", "NOT", "-", ":", "NEAR(", "NEAR(a b", "*", "**", "a*b", "(", ")", "{", "}",
           "^", "tide:", "text:tide", "{text} : tide", "tide AND", "AND tide", "tide -rock", '"tide', "tide\"rock",
           "'", "\\", "\x00", "NEAR(tide rock, 2)", "tide OR rock", "+", "%", "_", "é*", "ǅ", "🙂", " ", ""]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(tmp_path: Path, query: str) -> None:
    """Whatever a user types, search returns hits or none: FTS5 operators are words or are dropped."""
    add(tmp_path, 1, ["and or not near the tide rock text"])
    hits = S.search(tmp_path, query)
    assert isinstance(hits, list)
    expr = fts_query(query)
    assert expr is None or all(part.startswith('"') for part in expr.split(" AND "))


def test_operators_are_searched_as_words(tmp_path: Path) -> None:
    """``AND``, ``NEAR(`` and ``tide:`` find the words, not query syntax."""
    add(tmp_path, 1, ["and so the text was near the tide"])
    add(tmp_path, 2, ["nothing here"])
    for q in ("AND", "NEAR(", "tide:", "{text}: tide", "tide -"):
        assert [h.n for h in S.search(tmp_path, q)] == [1], q


def test_unicode_and_diacritics(tmp_path: Path) -> None:
    """Latin accents fold both ways, other scripts match by word, and case does not matter."""
    add(tmp_path, 1, ["Un café à Paris", "Привет мир", "Καλημέρα κόσμε"])
    assert [h.n for h in S.search(tmp_path, "cafe")] == [1]
    assert [h.n for h in S.search(tmp_path, "CAFÉ")] == [1]
    assert [h.n for h in S.search(tmp_path, "мир")] == [1]
    assert [h.n for h in S.search(tmp_path, "ΚΑΛΗΜΈΡΑ")] == [1]  # Greek folds case (its accents stay)
    assert "[Привет]" in S.search(tmp_path, "привет")[0].snippet


def test_batch_filter_by_id_or_name(tmp_path: Path) -> None:
    """``batch=`` keeps one batch's hits, by id or name; an unknown batch has none."""
    add(tmp_path, 1, ["volcano lecture"], batch="b1", name="geology")
    add(tmp_path, 1, ["volcano documentary"], batch="b2", name="films")
    assert len(S.search(tmp_path, "volcano")) == 2
    assert [h.batch_id for h in S.search(tmp_path, "volcano", batch="b2")] == ["b2"]
    assert [h.batch for h in S.search(tmp_path, "volcano", batch="geology")] == ["geology"]
    assert S.search(tmp_path, "volcano", batch="nope") == []
    assert S.search(tmp_path, "b1") == []  # the batch token is not transcript text


def test_limit_offset_and_capped_ranking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """limit/offset page through the hits; past RANK_CAP matches bm25 ranks only the newest ones, and says so."""
    for n in range(1, 9):
        add(tmp_path, n, ["echo " * n])
    assert [h.n for h in S.search(tmp_path, "echo", limit=3)] == [8, 7, 6]
    assert [h.n for h in S.search(tmp_path, "echo", limit=3, offset=3)] == [5, 4, 3]
    assert not S.search(tmp_path, "echo").capped
    monkeypatch.setattr(S, "RANK_CAP", 3)
    assert not S.search(tmp_path, "echo").capped  # the cap is probed in the newest eighth: one item, one match
    monkeypatch.setattr(S, "PROBE_SHARE", 2)  # the newest half: 4 matches there, over the cap
    hits = S.search(tmp_path, "echo")
    assert hits.capped and {h.n for h in hits} == {6, 7, 8}


def make_home(home: Path, items: dict[str, list[str] | None]) -> str:
    """A batch made by the real store, its items done with a workdir holding transcript.json (None: no file)."""
    store = Store(home, flush_delay=0.01)
    store.open()
    bid = store.create_batch("lectures", ["transcribe"], [f"https://example.invalid/{k}" for k in items])
    for n, (key, texts) in enumerate(items.items(), start=1):
        wd = home / "out" / key
        wd.mkdir(parents=True)
        if texts is not None:
            (wd / "transcript.json").write_text(json.dumps({"language": "en", "segments": segs(*texts)}),
                                                encoding="utf-8")
        store.transition(bid, n, "running", stage="transcribe", workdir=str(wd))
        store.transition(bid, n, "done", title=key.title())
    store.close()
    return bid


def test_reindex_from_item_folders(tmp_path: Path) -> None:
    """reindex reads every batch's items' transcript.json; items with none are counted, gone ones removed."""
    bid = make_home(tmp_path, {"geysers": ["old faithful erupts"], "lava": ["lava flows slowly", "faithful"],
                               "pending": None})
    S.index_item(tmp_path, batch_id="gone", batch_name="deleted", n=1, item_id=None, title="x", source="s",
                 workdir="/nowhere", segments=segs("faithful ghost"))
    stats = S.reindex(tmp_path)
    assert (stats.items, stats.segments, stats.skipped, stats.removed, stats.batches) == (2, 3, 1, 1, 1)
    hits = S.search(tmp_path, "faithful")
    assert {(h.batch_id, h.title) for h in hits} == {(bid, "Geysers"), (bid, "Lava")}
    assert S.reindex(tmp_path).items == 2 and len(S.search(tmp_path, "faithful")) == 2  # again: same index


def test_missing_index_is_built_from_the_batches(tmp_path: Path) -> None:
    """The first search of a home without an index builds it, and says so."""
    make_home(tmp_path, {"geysers": ["old faithful erupts"]})
    hits = S.search(tmp_path, "erupts")
    assert [h.title for h in hits] == ["Geysers"]
    assert any("no search index yet" in m for m in hits.messages)
    assert not S.search(tmp_path, "erupts").messages


def test_a_first_build_that_died_is_run_again(tmp_path: Path) -> None:
    """An index file whose first build never committed (the process died) is built on the next use."""
    make_home(tmp_path, {"geysers": ["old faithful erupts"]})
    S._connect(S.index_path(tmp_path)).close()  # the schema alone, as a build killed half way leaves it
    hits = S.search(tmp_path, "erupts")
    assert [h.title for h in hits] == ["Geysers"] and hits.messages


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_damaged_index_is_moved_aside_and_rebuilt(tmp_path: Path, damage: str) -> None:
    """Garbage, a torn file or someone else's database: moved to corrupt/, rebuilt, a message, no exception."""
    make_home(tmp_path, {"geysers": ["old faithful erupts"]})
    assert S.search(tmp_path, "erupts")
    path = S.index_path(tmp_path)
    if damage == "garbage":
        path.write_bytes(b"this is not sqlite at all" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.unlink()
        import sqlite3

        with sqlite3.connect(path) as c:
            c.execute("CREATE TABLE other(x)")
    for side in ("-wal", "-shm"):
        Path(str(path) + side).unlink(missing_ok=True)
    hits = S.search(tmp_path, "erupts")
    assert [h.title for h in hits] == ["Geysers"]
    assert any("unreadable" in m and "rebuilt" in m for m in hits.messages), hits.messages
    assert list((tmp_path / "corrupt").glob("search.sqlite.*"))


def test_crash_mid_write_leaves_the_last_commit(tmp_path: Path) -> None:
    """A writer killed inside a transaction leaves the index readable, holding what was committed before."""
    add(tmp_path, 1, ["committed words"])
    code = ("import os, signal, sys; from state import search as S\n"
            "with S.bulk(sys.argv[1]) as ix:\n"
            "    for n in range(2, 40):\n"
            "        ix.add(batch_id='b1', batch_name='talks', n=n, item_id=None, title='t', source='s', workdir='w',"
            " segments=[{'start': 0, 'end': 1, 'text': 'uncommitted words ' * 50}])\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, timeout=60)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert [h.n for h in S.search(tmp_path, "committed")] == [1]
    hits = S.search(tmp_path, "uncommitted")
    assert hits == [] and not hits.messages


def test_readers_in_another_process_while_one_writer_indexes(tmp_path: Path) -> None:
    """A second process searching all the time never errors and always sees a whole item (10 or 0 hits)."""
    add(tmp_path, 1, [f"buoy {i}" for i in range(10)], step=61)  # one chunk per segment: 10 hits
    code = ("import sys; from state import search as S\n"
            "seen = set()\n"
            "for _ in range(150):\n"
            "    seen.add(len(S.search(sys.argv[1], 'buoy', limit=50)))\n"
            "print(sorted(seen))\n")
    reader = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            add(tmp_path, 1, [f"buoy {i}" for i in range(10)], step=61)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        out, err = reader.communicate(timeout=60)
    finally:
        stop.set()
        writer.join()
    assert reader.returncode == 0, err
    assert json.loads(out) == [10]

"""`tubemill search`: hits with batch, title, HH:MM:SS and a marked snippet; --json; --batch; --reindex; a damaged
index rebuilt with a note on stderr; one clean line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from state.store import Store
from tests.conftest import ROOT, cli_env


def tm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                          env=cli_env(home), capture_output=True, text=True, timeout=60)


def silence(path: Path, seconds: float = 1.0) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return path


def seed(home: Path, name: str, items: dict[str, list[tuple[float, str]]], media: bool = False) -> str:
    """A batch made by the real store; each item done, its folder holding a transcript.json (and with
    ``media`` a kept media file, for the Search page's player)."""
    store = Store(home, flush_delay=0.01)
    store.open()
    bid = store.create_batch(name, ["transcribe"], [f"https://example.invalid/{name}/{k}" for k in items])
    for n, (title, lines) in enumerate(items.items(), start=1):
        wd = home / "out" / name / str(n)
        wd.mkdir(parents=True)
        segs = [{"start": t, "end": t + 4, "text": text} for t, text in lines]
        (wd / "transcript.json").write_text(json.dumps({"language": "en", "segments": segs}), encoding="utf-8")
        arts = {"media": str(silence(wd / "media.wav"))} if media else {}
        store.transition(bid, n, "running", stage="transcribe", workdir=str(wd))
        store.transition(bid, n, "done", title=title, artifacts=arts)
    store.close()
    return bid


def test_reindex_then_search_lines_and_json(home: Path) -> None:
    """--reindex prints counts; a search prints batch · title · HH:MM:SS · #n over the marked snippet."""
    seed(home, "lectures", {"Rivers": [(0, "the source of the river"), (3725, "where the delta meets the sea")],
                            "Mountains": [(10, "glaciers carve the valley")]})
    bid = seed(home, "films", {"Ocean": [(65, "a river of plankton")]})
    res = tm(home, "search", "--reindex")
    assert res.returncode == 0, res.stderr
    assert "indexed 3 item(s) from 2 batch(es): 4 segments in 4 chunks" in res.stdout
    res = tm(home, "search", "delta")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["lectures · Rivers · 01:02:05 · #1", "    where the [delta] meets the sea"]
    res = tm(home, "search", "river", "--json", "--batch", "films")
    doc = json.loads(res.stdout.splitlines()[-1])
    assert doc["batch"] == bid and doc["capped"] is False
    [hit] = doc["hits"]
    assert (hit["batch"], hit["title"], hit["n"], hit["timestamp"], hit["start"]) == ("films", "Ocean", 1, "00:01:05",
                                                                                      65.0)
    assert hit["snippet"] == "a [river] of plankton" and hit["source"] == "https://example.invalid/films/Ocean"
    res = tm(home, "search", '"the river"', "--json")
    assert [h["title"] for h in json.loads(res.stdout)["hits"]] == ["Rivers"]  # a phrase: "river of" is not it


def test_first_search_builds_the_index_and_hostile_text_is_fine(home: Path) -> None:
    """With no index yet the first search builds it (a note on stderr); operators typed are only words."""
    seed(home, "talks", {"Near and far": [(0, "near and far and not here")]})
    res = tm(home, "search", "NEAR(")
    assert res.returncode == 0, res.stderr
    assert "no search index yet" in res.stderr and "talks · Near and far · 00:00:00 · #1" in res.stdout
    for q in ('"', ":", "AND -"):
        res = tm(home, "search", q, "--json")
        assert res.returncode == 0 and "Traceback" not in res.stderr, (q, res.stderr)
        assert isinstance(json.loads(res.stdout.splitlines()[-1])["hits"], list)


def test_damaged_index_is_rebuilt_with_a_note(home: Path) -> None:
    """A search.sqlite that is not a database is moved aside and rebuilt; the hits still come."""
    seed(home, "talks", {"Geysers": [(30, "old faithful erupts")]})
    (home / "search.sqlite").write_bytes(b"\x00garbage" * 512)
    res = tm(home, "search", "erupts")
    assert res.returncode == 0, res.stderr
    assert "unreadable" in res.stderr and "rebuilt" in res.stderr
    assert "talks · Geysers · 00:00:30 · #1" in res.stdout


def test_bad_input_is_one_clean_line(home: Path, tmp_path: Path) -> None:
    """No query, an unknown batch, a home that is not there: one ``tubemill: error:`` line, exit 2."""
    seed(home, "talks", {"Geysers": [(30, "old faithful erupts")]})
    for args, needle in ((("search",), "give a QUERY"), (("search", "x", "--batch", "nope"), "no batch named"),
                         (("search", "x", "--limit", "0"), "--limit")):
        res = tm(home, *args)
        assert res.returncode == 2, res
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("tubemill: error:") and needle in lines[0], res.stderr
    missing = tmp_path / "nothing-here"  # not through tm(): its cli_env would make the folder
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(missing), "search", "x"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no Tubemill home" in res.stderr and not missing.exists()

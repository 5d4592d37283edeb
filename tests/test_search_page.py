"""The Search page through AppTest: hits with title, batch, time and a bold match; a hit plays its media from that
second and points Results at its item; the batch filter; hostile text. Logic tests for ``search_view`` too."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from pipeline.app import search_view
from pipeline.engine.client import EngineClient
from state import search as S
from tests.app.test_search_cli import seed as cli_seed
from tests.conftest import ROOT


def seed(home: Path, name: str, items: dict[str, list[tuple[float, str]]], media: bool = True) -> str:
    """The CLI test's batch, with kept media by default (a hit plays it)."""
    return cli_seed(home, name, items, media=media)


def search_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/screens/search.py").run()
    assert not at.exception, at.exception
    return at


def test_search_page_plays_a_hit_and_opens_it_in_results(page_home: Path) -> None:
    """A query lists hits; Play on one shows the player at the hit's second and leaves Results the hint."""
    bid = seed(page_home, "lectures", {"Rivers *and* [links](x)": [(0, "source"), (3725, "where the delta meets")],
                                       "Deserts": [(12, "a dry delta of sand")]})
    other = seed(page_home, "films", {"Ocean": [(65, "the delta at night")]}, media=False)
    at = search_page()
    assert at.title[0].value == "Search"
    at.text_input(key="search_query").input("delta").run()
    assert not at.exception, at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert r"**Rivers \*and\* \[links\]\(x\)** · lectures · #1" in text  # a title is text, never Markdown
    assert "where the **delta** meets" in text
    assert any("no search index yet" in i.value for i in at.info)
    labels = {b.key: b.label for b in at.button if b.key and b.key.startswith("search_play_")}
    assert sorted(labels.values()) == ["00:00:12", "00:01:05", "01:02:05"]
    play = next(k for k, v in labels.items() if v == "01:02:05")
    at.button(key=play).click().run()
    assert not at.exception, at.exception
    [audio] = at.get("audio")
    assert audio.proto.start_time == 3725
    assert at.session_state["results_open_item"] == (bid, 1) and at.session_state["selected_batch"] == bid
    assert any("Open in Results" in (p.proto.label or "") for p in at.get("page_link"))
    at.selectbox(key="search_batch").select(other).run()
    labels = [b.label for b in at.button if b.key and b.key.startswith("search_play_")]
    assert labels == ["00:01:05"]
    at.button(key="search_play_0").click().run()
    assert not at.get("audio") and any("Nothing to play" in c.value for c in at.caption)
    for hostile in ('"', "NEAR(", ":", "AND -"):
        at.text_input(key="search_query").input(hostile).run()
        assert not at.exception, (hostile, at.exception)


def test_search_view_logic(tmp_path: Path) -> None:
    """clock is HH:MM:SS; the snippet escapes transcript Markdown but bolds matches; the hint names the item."""
    assert [search_view.clock(x) for x in (0, 65.9, 3725, None, "x")] == ["00:00:00", "00:01:05", "01:02:05",
                                                                          "00:00:00", "00:00:00"]
    S.index_item(tmp_path, batch_id="b1", batch_name="talks", n=2, item_id=None, title="T", source="s", workdir="w",
                 segments=[{"start": 1, "end": 2, "text": "a *bold* claim about tides"}])
    [hit] = search_view.run_query(tmp_path, "tides")
    assert search_view.snippet_markdown(hit) == r"a \*bold\* claim about **tides**"
    state: dict = {}
    search_view.open_in_results(state, hit)
    assert state == {"selected_batch": "b1", "results_open_item": ("b1", 2)}
    client = EngineClient()  # a reader of this home, which has no batch b1: the index's own record stands in
    client.home, client.store = tmp_path, None
    assert search_view.item_for_hit(client, hit) == {"n": 2, "source": "s", "workdir": "w", "title": "T"}
    assert search_view.run_query(tmp_path, "   ") == []

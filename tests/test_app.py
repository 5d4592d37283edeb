"""The app's pages through AppTest (each test its own home and a fresh engine), and `streamlit run`
serving on 127.0.0.1. ``run_every`` never fires in AppTest: tests call ``at.run()`` after the engine moves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline.engine.core import Engine
from tests.conftest import ROOT, cli_env, fast_settings
from tests.media_server import MediaServer


@pytest.fixture
def app_home(home: Path) -> Iterator[Path]:
    st.cache_resource.clear()
    yield home
    from pages.screens._engine import get_engine, get_monitor

    get_monitor().stop()
    get_engine().shutdown(interrupt=True, timeout=5)
    st.cache_resource.clear()


def app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def engine_of() -> Engine:
    from pages.screens._engine import get_engine

    return get_engine()


def seed(home: Path, *batches: tuple[str, list[str], str]) -> None:
    """Batches made by another process before the app starts (the app must recover them)."""
    e = Engine(home, settings=fast_settings())
    e.start()
    for name, sources, recipe in batches:
        e.submit(name, sources, recipe=recipe)
        if not any("sleep=" in s for s in sources):
            e.wait(name, timeout=60)
    e.shutdown(interrupt=True)


def test_batches_page_renders_empty(app_home: Path) -> None:
    """With no batches the page says how to start one, without exceptions."""
    at = app()
    assert at.title[0].value == "Batches"
    assert any("No batches yet" in m.value for m in at.markdown)


def test_batches_page_shows_progress_table_and_pauses(app_home: Path) -> None:
    """A batch shows its counts and a paged item table; Pause pauses an active batch (recovered after restart)."""
    seed(app_home, ("done-batch", ["a", "b perm@probe_cpu"], "probe"), ("slow-batch", ["s sleep=5", "t sleep=5"],
                                                                        "probe"))
    at = app()
    assert at.selectbox(key="batches_select").options[0].startswith("slow-batch")
    assert at.subheader[0].value == "slow-batch"
    assert any("of 2 done" in (p.proto.text or "") for p in at.get("progress"))
    assert len(at.dataframe) >= 1
    at.button(key=f"detail-p-{engine_of().summary('slow-batch').id}").click().run()
    assert engine_of().summary("slow-batch").state == "paused"
    at.selectbox(key="batches_select").select(engine_of().summary("done-batch").id).run()
    assert at.subheader[0].value == "done-batch"
    table = at.dataframe[-1].value
    assert list(table["status"]) == ["done", "failed"] and "PermanentError" in table["error"][1]
    at.multiselect(key="batches_status").select("failed").run()
    assert list(at.dataframe[-1].value["status"]) == ["failed"]


def test_new_batch_preview_and_start(app_home: Path, media_server: MediaServer) -> None:
    """Paste sources, preview (invalid lines with numbers, counts, estimate), start, land on Batches."""
    at = app("pages/screens/new_batch.py")
    at.text_area(key="nb_sources").input("\n".join([
        media_server.media_url("mp3"), "not a url", media_server.url("/feed.xml")])).run()
    at.button(key="nb_preview_btn").click().run()
    assert not at.exception, at.exception
    assert any("Line 2 skipped" in w.value for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Videos"] == "3" and metrics["Estimated time"] != "?"
    assert any("offline extractive" in c.value for c in at.caption)
    at.text_input(key="nb_name").input("from-the-app").run()
    at.button(key="nb_start_btn").click().run()
    assert not at.exception, at.exception
    s = engine_of().summary("from-the-app")
    assert s.total == 3 and s.recipe[0] == "captions"
    engine_of().wait("from-the-app", timeout=120)


def test_results_page_shows_transcript_summary_and_downloads(app_home: Path, media_server: MediaServer) -> None:
    """A finished video shows its transcript lines, summary and file downloads; the batch ZIP/PDF are offered."""
    from pipeline.recipes.transcribe.sources import expand

    e = Engine(app_home, settings=fast_settings())
    e.start()
    e.submit("talks", [x.to_item() for x in expand(media_server.media_url("mp3")).entries], recipe="transcribe")
    assert e.wait("talks", timeout=120).counts["done"] == 1
    e.shutdown()
    at = app("pages/screens/results.py")
    assert at.subheader[0].value == "talk-bravo"
    transcript = at.dataframe[0].value
    assert "cooking" in " ".join(transcript["text"]).lower()
    assert any("TL;DR" in m.value for m in at.markdown)
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"ZIP of the batch", "Combined PDF", "Manifest (JSON)"} <= set(labels)
    assert any(lab.startswith("srt:") for lab in labels)


def test_pages_state_missing_parts_plainly(app_home: Path) -> None:
    """Results with nothing finished and New batch with nothing to process say so instead of failing."""
    at = app("pages/screens/results.py")
    assert any("Nothing finished yet" in m.value for m in at.markdown)
    at = app("pages/screens/new_batch.py")
    at.button(key="nb_start_btn").click().run()
    assert any("Nothing to process" in w.value for w in at.warning)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamlit_serves_on_loopback(home: Path) -> None:
    """`tubemill app` starts the server bound to 127.0.0.1 and it answers its health check."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), "app", "--port", str(port)],
                            cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
        listening = [c.laddr.ip for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening == ["127.0.0.1"], listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_generate_page_previews_topics_and_starts(app_home: Path) -> None:
    """Topics (with a bad CSV row reported) preview as a table, and Start creates a generate batch."""
    at = app("pages/screens/generate.py")
    at.text_area(key="gen_topics").input("topic,length\nHow tides work,30\nWhy bread rises,5\n").run()
    assert any("Line 3 skipped" in w.value for w in at.warning)
    assert at.metric[0].value == "1"
    at.text_input(key="gen_name").input("videos").run()
    at.button(key="gen_start").click().run()
    assert not at.exception, at.exception
    s = engine_of().summary("videos")
    assert s.total == 1 and s.recipe[0] == "script" and s.recipe[-1] == "extras"
    engine_of().cancel("videos")


def test_generate_page_passes_pictures_music_captions_and_extras(app_home: Path, tmp_path: Path) -> None:
    """The expander's choices become the batch's options (the music folder absolute); a keyless provider says so."""
    at = app("pages/screens/generate.py")
    assert "Pexels (no key set: see Settings)" in at.selectbox(key="gen_media").options
    at.text_area(key="gen_topics").input("How volcanoes erupt\n").run()
    at.selectbox(key="gen_media").select("openverse")
    at.selectbox(key="gen_media_kind").select("any")
    at.checkbox(key="gen_motion").check()
    at.text_input(key="gen_music").input(str(tmp_path))
    at.selectbox(key="gen_caption_style").select("karaoke")
    at.checkbox(key="gen_embed").check()
    at.selectbox(key="gen_thumbnail").select("frame")
    at.text_input(key="gen_playlist").input(" PL42 ")
    at.checkbox(key="gen_kids").check()
    at.text_input(key="gen_name").input("extras").run()
    at.button(key="gen_start").click().run()
    assert not at.exception, at.exception
    opts = engine_of().batch_header("extras")["options"]
    engine_of().cancel("extras")
    assert {k: opts[k] for k in ("media_provider", "media_kind", "motion", "music_dir", "caption_style",
                                 "embed_subtitles", "thumbnail", "playlist_id", "made_for_kids",
                                 "synthetic_media")} == {
        "media_provider": "openverse", "media_kind": "any", "motion": True, "music_dir": str(tmp_path.resolve()),
        "caption_style": "karaoke", "embed_subtitles": True, "thumbnail": "frame", "playlist_id": "PL42",
        "made_for_kids": True, "synthetic_media": True}


def test_every_page_icon_is_a_material_icon() -> None:
    """Navigation, page and button icons are Material symbols: an emoji shows as an empty box without an emoji font."""
    import ast

    files = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py"))]
    icons = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.keyword) and node.arg in ("icon", "page_icon") and \
                    isinstance(node.value, ast.Constant):
                icons.append((path.name, node.value.value))
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not any(0x1F000 <= ord(c) <= 0x1FAFF or 0x2600 <= ord(c) <= 0x27BF for c in node.value), \
                    (path.name, node.value)
    assert len(icons) >= 8
    assert all(str(v).startswith(":material/") for _, v in icons), icons


def test_batches_failures_labels_item_detail_and_actions(app_home: Path) -> None:
    """Failures are red in the progress line, the picker drops "active" once paused, the item panel shows the whole
    error with its hint and log, and Skip skips the item; stage capacity marks a bottleneck."""
    seed(app_home, ("done-batch", ["a", "b perm@probe_cpu"], "probe"), ("slow-batch", ["s sleep=5", "t sleep=5"],
                                                                        "probe"))
    at = app()
    slow = engine_of().summary("slow-batch").id
    assert "active" in at.selectbox(key="batches_select").options[0]
    at.button(key=f"detail-p-{slow}").click().run()
    label = at.selectbox(key="batches_select").options[0]
    assert label.startswith("slow-batch") and label.endswith("· paused"), label
    done = engine_of().summary("done-batch").id
    at.selectbox(key="batches_select").select(done).run()
    assert any(":red[:material/error: **1 failed**]" in (p.proto.text or "") for p in at.get("progress"))
    table = at.dataframe[0].value
    assert list(table["where"]) == ["done", "failed at stage 2/4 probe_cpu"]
    assert any("Bottleneck:" in c.value for c in at.caption)
    at.selectbox(key=f"batches_item_{done}").select(2).run()
    assert not at.exception, at.exception
    assert any("PermanentError" in e.value for e in at.error)
    assert any(c.value.startswith("Hint:") for c in at.caption)
    assert any("probe_cpu" in c.value for c in at.code)  # the log tail
    at.button(key=f"batches-skip-{done}-2").click().run()
    assert not at.exception, at.exception
    assert engine_of().items(done, status=["skipped"])[0]["n"] == 2
    assert any("Item 2 is skipped" in s.value for s in at.success)


def test_new_batch_is_transcribe_only_with_one_model_dropdown(app_home: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """No recipe picker; the bundled model first in a dropdown; Batch API choices only with an LLM configured."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    at = app("pages/screens/new_batch.py")
    keys = {w.key for w in at.selectbox}
    assert "nb_recipe" not in keys
    model = at.selectbox(key="nb_model")
    assert model.options[0].startswith("tiny.en (bundled")
    assert not [r for r in at.radio if r.key == "nb_llm_mode"]
    assert any("offline extractive" in c.value for c in at.caption)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    at = app("pages/screens/new_batch.py")
    assert at.radio(key="nb_llm_mode").options == ["realtime", "batch", "auto"]


def test_results_show_failed_items_and_say_when_nothing_plays(app_home: Path) -> None:
    """A batch with a failure lists it on Results with its whole error; an item with no media says so."""
    seed(app_home, ("mixed", ["a", "b perm@probe_cpu"], "probe"))
    at = app("pages/screens/results.py")
    assert not at.exception, at.exception
    assert any("Nothing to play" in c.value for c in at.caption)
    bid = engine_of().summary("mixed").id
    at.selectbox(key=f"results_failed_{bid}").select(2).run()
    assert not at.exception, at.exception
    assert any("PermanentError" in e.value for e in at.error)

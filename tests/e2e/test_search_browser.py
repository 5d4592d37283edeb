"""Search in a real browser (Debian's Chromium through Playwright, the app on loopback): a word spoken in the
second sentence of the second item of a finished batch is found, its hit shows the segment's time, Play starts
the kept media at that second (not at 0), and "Open in Results" opens that item, not the batch's first.

The batch is made before the app starts, by the real CLI on espeak-ng speech served on loopback (download,
faster-whisper tiny.en, export, which indexes each item as it finishes). Waits on what the page shows, never on
sleeps; screenshots go to ``.artifacts/e2e/`` (or ``$TUBEMILL_E2E_ARTIFACTS``) as in ``test_browser``."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.app.search_view import clock
from state.search import index_path
from tests.conftest import ROOT, cli_env
from tests.e2e.test_browser import app_url, artifacts, browser_page  # noqa: F401 - fixtures
from tests.media import make_speech
from tests.media_server import MediaServer

WORD = "lighthouse"
# file name (yt-dlp's title for a direct URL) -> speech; WORD only in the second sentence of the second item
TALKS = {
    "morning-talk.mp3": "The quick brown fox jumps over the lazy dog near the quiet river bank, "
                        "while the morning sun rises slowly above the green hills.",
    "evening-talk.mp3": "Welcome to the weekly science hour, recorded on a quiet afternoon. "
                        f"Tonight the old {WORD} keeper tells us about the storm.",
}


@pytest.fixture
def home(home: Path, media_server: MediaServer, tmp_path: Path) -> Path:
    """This module's home holds a finished two-item batch before ``app_url`` starts the app on it (the app's
    fixture asks for ``home``, so the batch exists first: one engine per home, never two at once)."""
    urls = []
    for name, text in TALKS.items():
        media_server.add_file(f"/talks/{name}", make_speech(text, tmp_path / "media" / name))
        urls.append(media_server.url(f"/talks/{name}"))
    sources = tmp_path / "talks.txt"
    sources.write_text("\n".join(urls) + "\n")
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(sources),
                          "--batch-name", "talks"], cwd=ROOT, env=cli_env(home), capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr
    assert index_path(home).is_file()  # export indexed the items as they finished
    return home


def spoken_at(home: Path, word: str) -> tuple[float, float]:
    """Start of the segment Whisper heard ``word`` in, and the media's length (its last segment's end)."""
    [path] = [p for p in (home / "output").rglob("transcript.json") if "evening-talk" in p.parent.name]
    segments = json.loads(path.read_text())["segments"]
    starts = [s["start"] for s in segments if word in s["text"].lower()]
    assert starts, segments
    return float(starts[0]), float(segments[-1]["end"])


def test_search_finds_a_word_and_plays_from_the_hit(app_url: str, browser_page, home: Path) -> None:  # noqa: F811
    """Search lists the one hit with its time; Play starts the kept audio there; Open in Results opens its item."""
    from playwright.sync_api import expect

    page = browser_page
    shots = artifacts()
    start, length = spoken_at(home, WORD)
    assert start >= 3.0, start  # the second sentence: a hit that plays from 0 cannot pass below

    page.goto(app_url + "/search")
    expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()
    box = page.get_by_role("textbox", name="Search every transcript", exact=True)
    box.fill(WORD)
    box.press("Enter")
    expect(page.get_by_text("1 hit(s), best first")).to_be_visible(timeout=30_000)
    hit = page.locator(".st-key-search-hit-0")
    expect(hit).to_contain_text("evening-talk · talks · #2")
    expect(hit.locator("strong", has_text=re.compile(WORD, re.I))).to_be_visible()  # the match, in bold
    play = hit.get_by_role("button", name=clock(start))
    expect(play).to_be_visible()
    page.screenshot(path=str(shots / "search-1-hit.png"), full_page=True)

    play.click()
    audio = hit.locator("audio")
    expect(audio).to_be_attached(timeout=30_000)
    src = audio.get_attribute("src") or ""
    assert src.startswith(("/media/", app_url + "/media/")), src  # the kept file, served by the app
    audio.evaluate("el => new Promise(ok => el.readyState >= 1 ? ok() : el.addEventListener('loadedmetadata', ok))")
    loaded = audio.evaluate("el => ({t: el.currentTime, d: el.duration, err: el.error && el.error.code})")
    assert loaded["err"] is None and abs(loaded["d"] - length) < 1.5, loaded  # the source loads: it is this talk
    # Streamlit takes whole seconds (st.audio floors start_time): the player sits at the hit's second
    assert math.floor(start) <= loaded["t"] <= start + 0.5, (loaded, start)
    audio.evaluate("el => { el.muted = true; return el.play(); }")
    page.wait_for_function("([el, t]) => el.currentTime > t + 0.3", arg=[audio.element_handle(), math.floor(start)])
    now = audio.evaluate("el => el.currentTime")
    assert math.floor(start) < now < length, (now, start)  # it plays on from the hit, not from the top
    print(f"hit at {start:.2f} s ({clock(start)}); the player loaded at {loaded['t']:.2f} s of {loaded['d']:.2f} s "
          f"and played on to {now:.2f} s")
    page.screenshot(path=str(shots / "search-2-playing.png"), full_page=True)

    hit.get_by_role("link", name="Open in Results").click()
    expect(page.get_by_role("heading", name="Results", exact=True)).to_be_visible()
    # the item's title twice, the page's heading and its summary's (the render has settled), and never the first's
    expect(page.get_by_role("heading", name="evening-talk", exact=True)).to_have_count(2, timeout=30_000)
    expect(page.get_by_role("heading", name="morning-talk", exact=True)).to_have_count(0)
    expect(page.get_by_text("Transcript — select a line to play from there")).to_be_visible()
    page.screenshot(path=str(shots / "search-3-results.png"), full_page=True)

    fresh = page.context.new_page()  # the control: Results opened without the hint shows the batch's first item
    fresh.goto(app_url + "/results")
    expect(fresh.get_by_role("heading", name="morning-talk", exact=True).first).to_be_visible(timeout=30_000)
    fresh.close()

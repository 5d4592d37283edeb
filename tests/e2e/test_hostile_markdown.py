"""Titles and summaries are text, never Markdown, in a real browser: a feed whose titles are a tracking image and
a link, and an LLM whose summary carries both, make Chromium fetch nothing and show no link when Results is
opened (Debian's Chromium through Playwright, the app on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, cli_env
from tests.e2e.test_browser import app_url, artifacts, browser_page  # noqa: F401 - fixtures
from tests.llm_server import FakeLLMServer, valid_summary
from tests.media_server import MediaServer, rss_feed


def test_results_fetch_no_beacon_and_show_no_foreign_link(app_url: str, browser_page, home: Path,  # noqa: F811
                                                          media_server: MediaServer, media_files: dict[str, Path],
                                                          llm_server: FakeLLMServer) -> None:
    """Opening every item on Results requests neither beacon; the hostile titles show as their literal text."""
    from playwright.sync_api import expect

    beacon, llm_beacon = media_server.url("/track.png"), media_server.url("/llm-track.png")
    titles = [f"![b]({beacon})", f"[click-me]({media_server.url('/phish')})"]
    items = []
    for i, (title, kind) in enumerate(zip(titles, ("mp3", "m4a"), strict=True)):
        path = f"/hostile/ep{i}.{kind}"
        media_server.add_file(path, media_files[kind])
        items.append({"title": title, "guid": f"hostile-{i}", "url": path, "duration": 8})
    media_server.add_text("/hostile.xml", rss_feed(media_server.base_url, items), "application/rss+xml")
    llm_server.responder = lambda req: json.dumps(valid_summary(
        tldr=f"Watch ![x]({llm_beacon}) and read [more](http://evil.example/phish).",
        chapters=[{"start": 0, "title": "Opening"}]))
    env = {**cli_env(home), "OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": "sk-test-e2e-0123456789"}
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run",
                          media_server.url("/hostile.xml"), "--batch-name", "hostile", "--summarizer", "llm"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr

    page = browser_page
    page.goto(app_url + "/results")
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    for i in range(len(titles)):
        page.get_by_role("combobox", name="Video").click()
        page.get_by_role("option", name=titles[i]).click()
        expect(page.get_by_text("Transcript — select a line to play from there")).to_be_visible()
        expect(page.get_by_text("Watch x and read more.")).to_be_visible()  # the LLM's text, defanged
        page.wait_for_timeout(500)  # an observation window for any fetch the page might still start
        page.screenshot(path=str(artifacts() / f"hostile-results-{i}.png"), full_page=True)
        # the title as its literal text, twice: the page's heading and the summary's (the render has settled)
        expect(page.get_by_role("heading", name=titles[i])).to_have_count(2)
        for target in ("phish", "track.png", "evil.example"):
            foreign = page.locator(f'a[href*="{target}"]:not([href^="#"])')  # not Streamlit's heading anchors
            assert foreign.count() == 0, (target, foreign.first.evaluate("e => e.outerHTML"))
        assert page.locator('img[src*="track.png"]').count() == 0
    assert media_server.hits("/track.png") == 0 and media_server.hits("/llm-track.png") == 0
    assert media_server.hits("/phish") == 0

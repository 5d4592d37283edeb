"""The app in a real browser (Debian's Chromium through Playwright): paste URLs served on loopback,
preview, start, watch progress, pause (nothing new starts), resume, finish, download the ZIP, open
Results and System. Waits on what the page shows, never on sleeps. Screenshots of each page are
kept in ``.artifacts/e2e/`` (or ``$TUBEMILL_E2E_ARTIFACTS``)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from state.reader import read_batch, read_summaries
from tests.conftest import ROOT, cli_env
from tests.media_server import MediaServer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ITEMS = 10

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed "
                                "(make test installs it as root: apt-get install chromium)")


def artifacts() -> Path:
    path = Path(os.environ.get("TUBEMILL_E2E_ARTIFACTS") or ROOT / ".artifacts" / "e2e")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(home: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), "app", "--port", str(port)],
                            cwd=ROOT, env=cli_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def counts(home: Path, name: str) -> dict[str, int]:
    for s in read_summaries(home):
        if s.name == name:
            return s.counts
    return {}


def test_paste_run_pause_resume_download(app_url: str, browser_page, home: Path,  # type: ignore[no-untyped-def]
                                        media_server: MediaServer, media_files: dict[str, Path],
                                        tmp_path: Path) -> None:
    """A user's whole session in Chromium, from pasting URLs to unpacking the ZIP."""
    from playwright.sync_api import expect

    page = browser_page
    shots = artifacts()
    urls = []
    for i in range(ITEMS):
        path = f"/lectures/lecture-{i:02d}.mp3"
        media_server.add_file(path, media_files["mp3" if i % 2 else "m4a"])
        urls.append(media_server.url(path))

    page.goto(app_url + "/new_batch")
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)  # a deep link opened first works
    box = page.get_by_label("Sources, one per line")
    box.fill("\n".join(urls + ["this is not a url"]))
    box.press("Control+Enter")  # a text area only reaches the script on Ctrl+Enter or blur (NOTES)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("Line 11 skipped")).to_be_visible()
    expect(page.get_by_text("Estimated time")).to_be_visible(timeout=60_000)  # a fresh home times Whisper once
    page.screenshot(path=str(shots / "1-new-batch-preview.png"), full_page=True)

    page.get_by_role("button", name="Start batch").click()
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    name = next(s.name for s in read_summaries(home))
    expect(page.get_by_text(re.compile(rf"[1-9]\d* of {ITEMS} done")).first).to_be_visible(timeout=120_000)
    page.screenshot(path=str(shots / "2-batches-running.png"), full_page=True)

    page.get_by_role("button", name="Pause").first.click()
    expect(page.get_by_text(re.compile(r"of \d+ done · .*paused")).first).to_be_visible(timeout=60_000)
    deadline = time.monotonic() + 60
    while counts(home, name).get("running") and time.monotonic() < deadline:
        time.sleep(0.1)
    frozen = counts(home, name)
    assert frozen["running"] == 0 and frozen["done"] < ITEMS, frozen
    time.sleep(2.0)  # an observation window, not synchronization: nothing may start while paused
    assert counts(home, name)["done"] == frozen["done"]
    page.screenshot(path=str(shots / "3-batches-paused.png"), full_page=True)

    page.get_by_role("button", name="Resume").first.click()
    expect(page.get_by_text(re.compile(rf"{ITEMS} of {ITEMS} done")).first).to_be_visible(timeout=180_000)
    expect(page.get_by_text(re.compile(r"· done$")).first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(shots / "4-batches-done.png"), full_page=True)

    page.goto(app_url + "/results")
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    with page.expect_download() as dl:
        page.get_by_role("button", name="ZIP of the batch").click()
    zpath = tmp_path / "batch.zip"
    dl.value.save_as(zpath)
    names = zipfile.ZipFile(zpath).namelist()
    assert sum(n.endswith("transcript.srt") for n in names) == ITEMS
    assert any(n.endswith("manifest.json") for n in names) and any(n.endswith(".pdf") for n in names)
    assert not any("cookie" in n.lower() or n.endswith(".zip") for n in names)
    expect(page.get_by_text("Transcript — select a line to play from there")).to_be_visible()
    page.screenshot(path=str(shots / "5-results.png"), full_page=True)

    page.goto(app_url + "/system")
    expect(page.get_by_role("heading", name="System")).to_be_visible()
    expect(page.get_by_text(re.compile("NVIDIA", re.I)).first).to_be_visible()
    page.screenshot(path=str(shots / "6-system.png"), full_page=True)

    page.goto(app_url + "/settings")
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    page.screenshot(path=str(shots / "7-settings.png"), full_page=True)


PAGES = {"new_batch": "New batch", "generate": "Generate videos", "batches": "Batches", "results": "Results",
         "system": "System", "settings": "Settings"}


def test_each_page_url_opened_first(app_url: str, browser_page) -> None:  # type: ignore[no-untyped-def]
    """A bookmark or reload of any page's URL, opened first in a fresh tab, shows that page and no
    "Page not found" dialog (the default page once had no address of its own); / lands on Batches."""
    from playwright.sync_api import expect

    page = browser_page
    for path, heading in [*PAGES.items(), ("", "Batches")]:
        fresh = page.context.new_page()
        fresh.goto(f"{app_url}/{path}")
        expect(fresh.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        fresh.wait_for_timeout(1000)  # the dialog arrives with the first script run, after the heading may
        expect(fresh.get_by_text("Page not found")).to_have_count(0)
        if not path:
            expect(fresh).to_have_url(re.compile(r"/batches$"))
        fresh.close()


def pick(page, label: str, option: str) -> None:  # type: ignore[no-untyped-def]
    """Choose ``option`` (a substring of its text) in the Streamlit selectbox labelled ``label``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.get_by_role("combobox", name=label, exact=True)
    for attempt in range(5):  # a live fragment's rerun (every 2 s) may close the list under the click
        box.click()
        try:
            page.get_by_role("option", name=re.compile(re.escape(option))).first.click(timeout=5_000)
            return
        except PlaywrightTimeout:
            if attempt == 4:
                raise


@pytest.fixture
def paced_home(home: Path) -> Path:
    """Loopback downloads 15 s apart (by default loopback is not paced): a download that waits, visibly."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "settings.toml").write_text("[pacing]\nanon_delay_min_s = 0.0\nanon_delay_max_s = 0.0\n"
                                        "[pacing.sites.local]\ndelay_min_s = 15.0\ndelay_max_s = 15.0\n")
    return home


def test_status_story(paced_home: Path, app_url: str, browser_page, home: Path,  # type: ignore[no-untyped-def]
                      media_server: MediaServer) -> None:
    """What the app says while a batch runs: the first result without a reload (timed), why an item waits,
    a failed item's whole error and log, skip from the item panel, and a page-embedded item that plays from
    its kept media, not from the page."""
    from playwright.sync_api import expect

    page = browser_page
    shots = artifacts()
    urls = [media_server.url("/captioned.html"), media_server.url("/sundials.html"),
            media_server.url("/media/talk-bravo.mp3"), media_server.url("/missing.mp3")]
    results_tab = page.context.new_page()  # Results, open before the batch exists: it must update by itself
    results_tab.goto(app_url + "/results")
    expect(results_tab.get_by_text("Nothing finished yet.")).to_be_visible()
    page.goto(app_url + "/new_batch")
    box = page.get_by_label("Sources, one per line")
    box.fill("\n".join(urls))
    box.press("Control+Enter")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("Estimated time")).to_be_visible(timeout=60_000)  # a fresh home times Whisper once
    page.wait_for_timeout(2_000)  # a user reads the preview before Start (the app warms yt-dlp meanwhile)
    page.get_by_role("button", name="Start batch").click()
    t0 = time.monotonic()
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    # Start lands on Batches: the first transcript shows there, no reload and no page change.
    panel = page.get_by_text(re.compile(r"Latest result · #\d+ .+ · \d+ transcript lines"))
    expect(panel).to_be_visible(timeout=60_000)
    first = time.monotonic() - t0
    shown = panel.inner_text()
    batch = read_summaries(home)[0]
    done_at = min((i["finished_at"] for i in read_batch(home, batch.id)[1] if i.get("finished_at")), default=None)
    written = f"{done_at - batch.created_at:.1f} s" if done_at else "?"
    print(f"time to first result: {first:.1f} s from Start (captioned item, loopback, Start 2 s after the preview;"
          f" the engine had it {written} after the batch was created): {shown}")
    page.screenshot(path=str(shots / "status-1-first-result.png"), full_page=True)
    expect(results_tab.get_by_text("Transcript — select a line to play from there")).to_be_visible(timeout=30_000)
    results_tab.close()  # it updated without a reload
    page.get_by_role("link", name="Open in Results").click()
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    expect(page.get_by_text("Transcript — select a line to play from there")).to_be_visible(timeout=30_000)

    # Loopback is paced here (the home's settings): the second download waits, and says so, on Batches.
    page.goto(app_url + "/batches")
    expect(page.get_by_text(re.compile(r"Why #\d+ waits: pacing: account anonymous on the local network until"))
           .first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(shots / "status-2-waiting.png"), full_page=True)

    name = next(s.name for s in read_summaries(home))
    expect(page.get_by_text(re.compile(r"1 failed")).first).to_be_visible(timeout=120_000)
    pick(page, "Item detail", "missing")
    expect(page.get_by_role("alert").filter(has_text="NotFound").first).to_be_visible()
    expect(page.locator("code", has_text="HTTP 404: not found").first).to_be_visible()  # the whole message
    expect(page.get_by_text("Hint: The URL returns 404").first).to_be_visible()
    page.get_by_role("tab", name="Log").click()
    expect(page.locator("code", has_text=re.compile(r"download")).first).to_be_visible()  # its log.txt
    page.screenshot(path=str(shots / "status-3-failed-item.png"), full_page=True)
    page.get_by_role("button", name="Skip").click(timeout=15_000)
    expect(page.get_by_text(re.compile(r"Item \d+ is skipped"))).to_be_visible()
    deadline = time.monotonic() + 180
    while counts(home, name).get("skipped") != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts(home, name).get("skipped") == 1

    expect(page.get_by_text(re.compile(r"3 of 4 done")).first).to_be_visible(timeout=180_000)
    page.goto(app_url + "/results")
    pick(page, "Video", "Sundials")
    audio = page.locator("audio").first
    expect(audio).to_be_attached(timeout=30_000)
    src = audio.get_attribute("src") or ""
    assert src and not src.endswith(".html"), src  # the kept media (served by the app), never the page
    page.screenshot(path=str(shots / "status-4-playback.png"), full_page=True)

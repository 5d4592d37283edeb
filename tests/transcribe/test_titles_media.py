"""Titles from the best metadata, durations before start, honest preview counts, and media kept for playback:
the listing, the probe, the download and export stages, through real yt-dlp and ffprobe on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import load_settings
from pipeline.engine.core import Engine
from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe import kept_media, library
from pipeline.recipes.transcribe.options import TranscribeOptions
from pipeline.recipes.transcribe.source_probe import PROBE_BUDGET_S, PROBE_TIMEOUT_S, probe_entries
from pipeline.recipes.transcribe.sources import expand, media_entry
from pipeline.recipes.transcribe.stages import download, export
from tests.conftest import fast_settings
from tests.media import media_duration
from tests.media_server import FEED_ITEMS, SINGLE_PAGE_TITLE, TAGGED_TITLE, MediaServer


def ctx_for(workdir: Path, options: dict[str, Any] | None = None, stage: str = "download",
            home: Path | None = None) -> StageContext:
    workdir.mkdir(parents=True, exist_ok=True)
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage=stage, workdir=workdir,
                        options=options or {}, attempt=1, account=None, _progress=lambda f: None,
                        _cancelled=lambda: False, home=home or workdir)


@pytest.fixture(autouse=True)
def _fresh_media_ledger() -> None:
    kept_media._used.clear()  # each test's batch folders are new; the per-process tally must be too


# ---------------------------------------------------------------------- preview counts
def test_a_repeated_line_counts_as_a_duplicate(media_server: MediaServer) -> None:
    """9 lines → 8 videos says 1 duplicate removed; a repeated feed line removes each of its videos once more."""
    urls = [media_server.url(f"/media/clip{i}.mp3") for i in range(8)]
    x = expand("\n".join([*urls, urls[3]]))
    assert len(x.entries) == 8 and x.duplicates == 1
    feed = media_server.url("/feed.xml")
    y = expand(f"{feed}\n{feed}\n")
    assert len(y.entries) == len(FEED_ITEMS) and y.duplicates == len(FEED_ITEMS)


def test_a_file_and_its_feed_entry_are_one_video_with_the_feeds_title(media_server: MediaServer,
                                                                     media_files: dict[str, Path]) -> None:
    """The same file as a URL line and as a feed enclosure is one video, with the feed's title and duration
    whichever line came first."""
    direct = media_server.media_url("mp3")
    x = expand(f"{direct}\n{media_server.url('/feed.xml')}\n")
    assert len(x.entries) == len(FEED_ITEMS) and x.duplicates == 1
    first = x.entries[0]
    assert first.url == direct and first.title == "Episode Bravo: Baking Bread" and first.title_from is None
    assert first.duration == pytest.approx(media_duration(media_files["mp3"]), abs=1.0)
    assert first.to_item()["title"] == "Episode Bravo: Baking Bread"


def test_feed_durations_come_from_the_listing(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """itunes:duration reaches every feed entry without a probe: no request goes to the enclosures."""
    x = expand(media_server.url("/feed.xml"))
    want = [media_duration(media_files[name]) for name, *_ in FEED_ITEMS]
    assert [e.duration for e in x.entries] == [pytest.approx(w, abs=1.0) for w in want]
    assert all(media_server.hits(media_server.media[name], None) == 0 for name, *_ in FEED_ITEMS)


def test_already_done_counts_only_what_a_batch_would_reuse(tmp_path: Path) -> None:
    """An id whose finished folder was deleted is redone, so it is not "already done"; repeats count once."""
    for name in ("kept", "gone"):
        wd = tmp_path / name
        wd.mkdir()
        (wd / "transcript.json").write_text("{}")
        library.record(tmp_path, id=name, archive_id=None, workdir=str(wd), batch="old", title=name)
    (tmp_path / "gone" / "transcript.json").unlink()
    assert library.status_of(tmp_path, ["kept", "gone", "new", "kept"]) == {"already_done": 1, "ids": ["kept"]}


# ---------------------------------------------------------------------- titles from the listing
def test_a_pages_only_video_has_the_page_title(media_server: MediaServer) -> None:
    """"Sundials (1)" is "Sundials" when the page has one video; several videos keep their numbers."""
    one = expand(media_server.url("/sundials.html")).entries
    assert [e.title for e in one] == [SINGLE_PAGE_TITLE]
    assert one[0].media_url == media_server.media_url("mp3")  # what plays when nothing is kept
    two = expand(media_server.url("/page.html")).entries
    assert [e.title for e in two] == ["A page with media (1)", "A page with media (2)"]


# ---------------------------------------------------------------------- the probe
def test_probe_gives_durations_and_tag_titles(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """With ``probe``, direct files get their container's duration and title tag; a page's media its duration;
    a redirect is followed; a listing's own titles stay."""
    lines = [media_server.url("/media/ep-delta.mp3"), media_server.media_url("m4a"), media_server.media_url("webm"),
             media_server.url("/redirect.mp3"), media_server.url("/sundials.html")]
    x = expand("\n".join(lines), probe=True)
    got = {e.url: e for e in x.entries}
    tagged = got[lines[0]]
    assert (tagged.title, tagged.title_from) == (TAGGED_TITLE, "tags")
    assert tagged.duration == pytest.approx(media_duration(media_files["mp3"]), abs=0.5)
    assert got[lines[1]].duration == pytest.approx(media_duration(media_files["m4a"]), abs=0.5)
    assert got[lines[1]].title == "talk-alpha"  # no tag: the file name stays
    assert got[lines[2]].duration == pytest.approx(media_duration(media_files["webm"]), abs=0.5)
    assert got[lines[3]].duration == pytest.approx(media_duration(media_files["mp3"]), abs=0.5)
    page = got[lines[4]]
    assert page.title == SINGLE_PAGE_TITLE and page.duration == pytest.approx(media_duration(media_files["mp3"]),
                                                                               abs=0.5)


def test_probe_is_off_by_default(media_server: MediaServer) -> None:
    """A listing for a batch about to run sends no request to direct files."""
    x = expand(media_server.url("/media/ep-delta.mp3"))
    assert x.entries[0].duration is None and media_server.hits("/media/ep-delta.mp3", None) == 0


def test_probe_is_bounded_in_time(media_server: MediaServer) -> None:
    """Servers that never answer cost the probe's budget at most, and leave those durations unknown."""
    entries = [media_entry(media_server.url(p)) for p in ("/hang.mp3", "/stall.mp3", "/trickle.mp3")] + [
        media_entry(media_server.url(f"/hang.mp3?n={i}")) for i in range(6)] + [
        media_entry(media_server.media_url("mp3"))]
    t0 = time.monotonic()
    probe_entries(entries, budget_s=2.0)
    assert time.monotonic() - t0 < 2.0 + 1.5
    assert all(e.duration is None for e in entries[:-1])
    assert PROBE_TIMEOUT_S <= PROBE_BUDGET_S


def test_probe_keeps_the_outbound_rule(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """The probe follows no redirect to another local host or to ``file:``, and goes around no proxy it
    cannot use."""
    other = MediaServer(host="127.0.0.2").start()
    try:
        other.add_file("/other.mp3", media_files["mp3"])
        media_server.add_redirect("/hop.mp3", other.url("/other.mp3"))
        entries = [media_entry(media_server.url(p)) for p in ("/hop.mp3", "/to-file.mp3")]
        probe_entries(entries)
        assert [e.duration for e in entries] == [None, None] and other.hits("/other.mp3", None) == 0
    finally:
        other.stop()
    socks = [media_entry(media_server.media_url("mp3"))]
    assert probe_entries(socks, {"proxy": "socks5://127.0.0.1:9"}) == 0 and socks[0].duration is None
    assert media_server.hits(media_server.media["mp3"], None) == 0


def test_probe_reads_local_files(tmp_path: Path, media_files: dict[str, Path]) -> None:
    """A folder's files get their durations before start, too."""
    (tmp_path / "talk.m4a").write_bytes(media_files["m4a"].read_bytes())
    x = expand(str(tmp_path), probe=True)
    assert x.entries[0].duration == pytest.approx(media_duration(media_files["m4a"]), abs=0.5)


# ---------------------------------------------------------------------- titles from the download
def test_download_takes_the_title_tag_over_a_file_name(media_server: MediaServer, tmp_path: Path,
                                                       media_files: dict[str, Path]) -> None:
    """A direct file's item gets its title tag and duration when it downloads; a title a user gave stays."""
    url = media_server.url("/media/ep-delta.mp3")
    item = media_entry(url).to_item()
    out = download.run(item, ctx_for(tmp_path / "a"))
    assert (out.meta["title"], out.meta["title_from"]) == (TAGGED_TITLE, "tags")
    assert out.meta["duration"] == pytest.approx(media_duration(media_files["mp3"]), abs=0.5)
    mine = download.run({"source": url, "title": "My own name", "meta": {}}, ctx_for(tmp_path / "b"))
    assert "title" not in mine.meta


def test_download_of_a_page_records_its_media_url(media_server: MediaServer, tmp_path: Path) -> None:
    """A page's item records the media file it played, for playback when nothing is kept."""
    item = expand(media_server.url("/sundials.html")).entries[0].to_item()
    assert item["meta"]["media_url"] == media_server.media_url("mp3")
    out = download.run(item, ctx_for(tmp_path))
    assert out.meta.get("media_url", item["meta"]["media_url"]) == media_server.media_url("mp3")
    assert "title" not in out.meta  # the page's title stays


# ---------------------------------------------------------------------- media kept for playback
def _exported(workdir: Path, audio_bytes: bytes, options: dict[str, Any], home: Path) -> tuple[dict[str, str], Path]:
    tmp = workdir / ".tmp"
    tmp.mkdir(parents=True)
    audio = tmp / "audio.mp3"
    audio.write_bytes(audio_bytes)
    (workdir / "transcript.json").write_text(json.dumps({"language": "en", "segments": [
        {"start": 0.0, "end": 1.0, "text": "Hello."}]}))
    item = {"n": 1, "source": "http://127.0.0.1:1/a.mp3", "id": workdir.name, "title": "A",
            "artifacts": {"audio": str(audio)}, "meta": {}}
    return export.run(item, ctx_for(workdir, options, "export", home)).artifacts, audio


def test_export_keeps_media_up_to_the_batch_cap(tmp_path: Path, media_files: dict[str, Path]) -> None:
    """Items keep their audio as media.<ext> (artifact ``media``) until the batch's total would pass
    keep_media_mb; later ones are deleted as before; a re-run export finds what it kept."""
    data = media_files["mp3"].read_bytes()
    cap = {"keep_media_mb": 2.5 * len(data) / 2**20}
    batch = tmp_path / "out" / "batch"
    kept = [_exported(batch / f"000{n}-x", data, cap, tmp_path) for n in (1, 2, 3)]
    assert [Path(a["media"]).name for a, _ in kept[:2]] == ["media.mp3", "media.mp3"]
    assert all(Path(a["media"]).read_bytes() == data and not src.exists() for a, src in kept[:2])
    assert "media" not in kept[2][0] and not kept[2][1].exists()
    again = export.run({"n": 1, "source": "x", "id": "0001-x", "artifacts": {}, "meta": {}},
                       ctx_for(batch / "0001-x", cap, "export", tmp_path))
    assert again.artifacts["media"] == kept[0][0]["media"]
    kept_media._used.clear()  # another process reads what the batch keeps from its folder
    assert "media" not in _exported(batch / "0004-x", data, cap, tmp_path)[0]


def test_keep_media_off_and_keep_audio(tmp_path: Path, media_files: dict[str, Path]) -> None:
    """keep_media_mb 0 keeps nothing; --keep-audio keeps audio.<ext>, uncapped, and it is the media too."""
    data = media_files["mp3"].read_bytes()
    off, src = _exported(tmp_path / "b1" / "0001-x", data, {"keep_media_mb": 0}, tmp_path)
    assert "media" not in off and "audio" not in off and not src.exists()
    kept, _ = _exported(tmp_path / "b2" / "0001-x", data, {"keep_audio": True, "keep_media_mb": 0}, tmp_path)
    assert Path(kept["audio"]).name == "audio.mp3" and kept["media"] == kept["audio"]


def test_keep_media_mb_is_a_downloads_setting(tmp_path: Path) -> None:
    """[downloads] keep_media_mb in settings.toml is every batch's default; a batch's own value wins."""
    (tmp_path / "settings.toml").write_text("[downloads]\nkeep_media_mb = 10\n")
    settings = load_settings(tmp_path)
    assert TranscribeOptions.parse({}, settings).keep_media_mb == 10
    assert TranscribeOptions.parse({"keep_media_mb": "0"}, settings).keep_media_mb == 0
    assert TranscribeOptions.parse({}).keep_media_mb == 2048


def test_a_batch_records_tag_titles_and_kept_media(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                   media_files: dict[str, Path]) -> None:
    """Through the engine: the item, meta.json and the manifest hold the tag title; the item's ``media``
    artifact is the kept file in its folder; a captioned page's item has its page title and media URL."""
    engine = make_engine(settings=fast_settings())
    x = expand(media_server.url("/media/ep-delta.mp3") + "\n" + media_server.url("/captioned.html"))
    engine.submit("kept", [e.to_item() for e in x.entries], recipe="transcribe", options={"summarizer": "offline"})
    s = engine.wait("kept", timeout=120)
    assert s.state == "done", s
    tagged, page = engine.items("kept")
    assert tagged["title"] == TAGGED_TITLE and tagged["meta"]["title_from"] == "tags"
    media = Path(tagged["artifacts"]["media"])
    assert media.name == "media.mp3" and media.parent == Path(tagged["workdir"]) and media.is_file()
    assert json.loads((media.parent / "meta.json").read_text())["title"] == TAGGED_TITLE
    manifest = json.loads((Path(s.output_dir) / "manifest.json").read_text())
    assert TAGGED_TITLE in json.dumps(manifest, ensure_ascii=False)
    assert page["title"] == "A captioned video" and page["meta"]["media_url"] == media_server.media_url("mp4")
    assert "media" not in page["artifacts"]  # captions: nothing downloaded, playback streams the media URL

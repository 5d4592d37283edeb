"""Input parsing, classification, filters and local folders (no network needed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipeline.errors import InvalidInput
from pipeline.sources import Entry, Filters, apply_filters, classify, expand, local_entries, parse_lines


def test_parse_skips_blanks_comments_and_reports_bad_lines() -> None:
    """Blank lines and # comments vanish; control characters are reported with the line number."""
    text = "# header\n\nhttps://a.example/x\n  https://a.example/y  \nbad\x01line\nhttps://a.example/x\n"
    sources, invalid = parse_lines(text)
    assert sources == ["https://a.example/x", "https://a.example/y"]
    assert [(b.line_no, b.reason) for b in invalid] == [(5, "control characters in line")]


@pytest.mark.parametrize(
    "line,kind",
    [
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "video"),
        ("https://youtu.be/dQw4w9WgXcQ", "video"),
        ("https://www.youtube.com/playlist?list=PL123", "playlist"),
        ("https://www.youtube.com/@somechannel", "channel"),
        ("https://www.youtube.com/channel/UC123", "channel"),
        ("http://127.0.0.1:8000/a/talk.mp3", "media"),
        ("http://127.0.0.1:8000/feed.xml", "page"),
    ],
)
def test_classify_urls(line: str, kind: str) -> None:
    """URLs are classified into video, playlist, channel, direct media or a page for yt-dlp."""
    assert classify(line) == kind


@pytest.mark.parametrize(
    "line,reason",
    [
        ("not a url", "not a URL or an existing file"),
        ("www.example.com/video", "without http"),
        ("ftp://example.com/a.mp3", "unsupported scheme"),
        ("/no/such/file.mp3", "no such file"),
        ("http:///path-only", "malformed URL"),
    ],
)
def test_classify_rejects_with_a_reason(line: str, reason: str) -> None:
    """Malformed lines are refused with a reason a user can act on."""
    with pytest.raises(InvalidInput) as err:
        classify(line)
    assert reason in str(err.value)


def test_expand_reports_invalid_lines_and_keeps_the_rest(tmp_path: Path) -> None:
    """One malformed line is reported with its number; the local file on the next line is still listed."""
    media = tmp_path / "talk.mp3"
    media.write_bytes(b"ID3" + b"\0" * 100)
    x = expand(f"# list\nnot a url\n{media}\n")
    assert [(b.line_no, b.text) for b in x.invalid] == [(2, "not a url")]
    assert [e.title for e in x.entries] == ["talk"]


def test_local_folder_lists_media_and_dedupes_by_content(tmp_path: Path) -> None:
    """A folder expands to its media files; the same bytes in two places are one video."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.mp3").write_bytes(b"x" * 5000)
    (tmp_path / "a" / "copy.m4a").write_bytes(b"x" * 5000)
    (tmp_path / "a" / "notes.txt").write_text("not media")
    entries = local_entries(str(tmp_path / "a"))
    assert sorted(e.title for e in entries) == ["copy", "one"]
    assert entries[0].id == entries[1].id
    x = expand(str(tmp_path / "a"))
    assert len(x.entries) == 1 and x.duplicates == 1


def entry(i: int, dur: float | None, day: str | None, title: str) -> Entry:
    return Entry(source="s", url=f"u{i}", id=f"id{i}", archive_id=f"generic id{i}", title=title, duration=dur,
                 upload_date=day)


def test_filters_duration_date_title_and_newest() -> None:
    """Filters keep what matches; unknown durations pass; newest N sorts by date when all are dated."""
    es = [entry(1, 60, "20240101", "Intro"), entry(2, 3600, "20240301", "Lecture 2"),
          entry(3, None, "20240201", "Lecture 1"), entry(4, 1800, "20231201", "Bonus")]
    assert [e.id for e in apply_filters(es, Filters(min_duration=120))] == ["id2", "id3", "id4"]
    assert [e.id for e in apply_filters(es, Filters(max_duration=1800))] == ["id1", "id3", "id4"]
    assert [e.id for e in apply_filters(es, Filters(date_after=date(2024, 1, 15)))] == ["id2", "id3"]
    assert [e.id for e in apply_filters(es, Filters(date_before=date(2023, 12, 31)))] == ["id4"]
    assert [e.id for e in apply_filters(es, Filters(match_title="^lecture"))] == ["id2", "id3"]
    assert [e.id for e in apply_filters(es, Filters(newest=2))] == ["id2", "id3"]


def test_bad_filter_values_are_invalid_input() -> None:
    """A broken regex or newest 0 is a clear error."""
    with pytest.raises(InvalidInput):
        Filters(match_title="(unclosed")
    with pytest.raises(InvalidInput):
        Filters(newest=0)

"""Input parsing, classification, filters and local folders (no network needed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.sources import (
    Entry,
    Filters,
    apply_filters,
    classify,
    clean_title,
    decode_input,
    drop_undecodable,
    expand,
    local_entries,
    numbered_lines,
    parse_lines,
    read_input,
    repair_feed,
)
from tests.media_server import MediaServer


def test_parse_skips_blanks_comments_and_reports_bad_lines() -> None:
    """Blank lines and # comments vanish; control characters are reported with the line number."""
    text = "# header\n\nhttps://a.example/x\n  https://a.example/y  \nbad\x01line\nhttps://a.example/x\n"
    sources, invalid = parse_lines(text)
    assert sources == ["https://a.example/x", "https://a.example/y"]
    assert [(b.line_no, b.reason) for b in invalid] == [(5, "control characters in line (U+0001 at column 4)")]


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


# ---------------------------------------------------------------------- bad input never aborts a run
SEPARATORS = ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_only_newline_breaks_a_line(sep: str) -> None:
    """A character splitlines() breaks on is inside its line (reported there); the next line keeps its number."""
    lines, invalid = numbered_lines(f"https://a.example/1\nhttps://a.example/{sep}2\nhttps://a.example/3\n")
    assert lines == [(1, "https://a.example/1"), (3, "https://a.example/3")]
    assert [(b.line_no, b.reason.split(" (")[0]) for b in invalid] == [(2, "control characters in line")]


def test_crlf_is_one_line_break_and_a_bom_is_ignored() -> None:
    """Windows line ends count once; the byte-order mark of the first line is not part of it."""
    lines, invalid = numbered_lines("\ufeffhttps://a.example/1\r\n\r\nnot\x07ok\r\nhttps://a.example/4\r\n")
    assert lines == [(1, "https://a.example/1"), (4, "https://a.example/4")] and [b.line_no for b in invalid] == [3]


def test_one_bad_utf8_byte_costs_one_line(tmp_path: Path) -> None:
    """A file with one invalid byte: that line is reported by number (shown with U+FFFD), the rest is read."""
    p = tmp_path / "list.txt"
    p.write_bytes(b"https://a.example/1\nhttps://a.example/caf\xe9.mp3\nhttps://a.example/3\n")
    sources, invalid = parse_lines(read_input(str(p)))
    assert sources == ["https://a.example/1", "https://a.example/3"]
    assert [(b.line_no, b.text) for b in invalid] == [(2, "https://a.example/caf\ufffd.mp3")]
    assert "not valid UTF-8" in invalid[0].reason
    # stdin arrives as bytes and is read the same way
    assert parse_lines(read_input("-", p.read_bytes()))[0] == sources
    cleaned, reported = drop_undecodable(read_input(str(p)))
    assert cleaned.split("\n")[1] == "" and [b.line_no for b in reported] == [2]


@pytest.mark.parametrize("data", ["x\n".encode("utf-16"), b"\xff\xfe\x00\x81", b"\xc3\x28\n\xa0\n"])
def test_a_file_with_no_utf8_line_is_refused_whole(data: bytes) -> None:
    """UTF-16, or bytes where no line is text: one clear refusal instead of a report per line."""
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        decode_input(data, "list.txt")


def test_endless_input_stops_at_the_cap() -> None:
    """/dev/zero as the input file is refused by size, not read until memory runs out."""
    with pytest.raises(InvalidInput, match="larger than"):
        read_input("/dev/zero")


def test_a_fifo_input_is_read(tmp_path: Path) -> None:
    """`tubemill run <(grep …)` hands us a pipe: it is read like a file."""
    import os
    import threading

    fifo = tmp_path / "list"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text("https://a.example/1\n"))
    writer.start()
    assert read_input(str(fifo)) == "https://a.example/1\n"
    writer.join()


def test_a_repeated_bad_line_is_reported_at_each_occurrence() -> None:
    """The same bad line three times is three reports, each with its own number; a repeated good line lists once."""
    x = expand("http://[::1/x.mp3\nhttps://a.example/a.mp3\nhttp://[::1/x.mp3\nhttps://a.example/a.mp3\n"
               "http://[::1/x.mp3\n")
    assert [b.line_no for b in x.invalid] == [1, 3, 5]
    assert len(x.entries) == 1


@pytest.mark.parametrize(
    "line,reason",
    [
        ("http://[::1/x.mp3", "malformed URL (Invalid IPv6 URL)"),
        ("http://:80/", "no host name"),
        ("http://127.0.0.1:99999/x.mp3", "Port out of range"),
        ("http://127.0.0.1:abc/x.mp3", "Port could not be cast"),
        ("http://127.0.0.1:0/x.mp3", "port 0"),
        ("http://exa<mple.com/x.mp3", "is not a host name"),
        ("http://[1.2.3]/x.mp3", "does not appear to be an IPv4 or IPv6 address"),
        ("https://a.example/a b.mp3", "a space in it"),
        ("file:///etc/passwd", "file: URLs are refused"),
        ("FILE:/etc/passwd", "file: URLs are refused"),
        ("file:etc/passwd", "file: URLs are refused"),
        ("/", "filesystem root"),
        ("/proc", "a system path (/proc)"),
        ("/proc/self/status", "a system path (/proc)"),
        ("/sys/kernel", "a system path (/sys)"),
        ("/dev", "a system path (/dev)"),
        ("/dev/null", "not a regular file or folder"),
        ("~nosuchuser-tubemill/x.mp3", "no such user"),
        ("/" + "n" * 300 + ".mp3", "File name too long"),
        ("data:audio/mp3;base64,AAAA", "not a URL or an existing file"),
    ],
)
def test_hostile_lines_are_refused_with_a_reason(line: str, reason: str) -> None:
    """Each hostile line is InvalidInput with a reason (never ValueError, PermissionError or a yt-dlp error)."""
    with pytest.raises(InvalidInput) as err:
        classify(line)
    assert reason in str(err.value)


def test_good_lines_still_classify(tmp_path: Path) -> None:
    """An IPv6 literal, a port, a name with a trailing dot and an existing non-media path stay valid input."""
    assert classify("http://[::1]:8000/a/talk.mp3") == "media"
    assert classify("https://bücher.example./feed") == "page"
    assert classify("HTTPS://www.youtube.com/watch?v=dQw4w9WgXcQ") == "video"
    assert classify("https://notyoutube.com/watch?v=x") == "page"
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert classify(str(notes)) == "local"  # a path line is still a path: its file is what the user named


def test_fifo_and_symlink_loop_lines(tmp_path: Path) -> None:
    """A FIFO named .mp3 (opening it would block forever) and a symlink loop are refused, not opened."""
    import os

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.mp3"
    os.symlink(loop, loop)
    x = expand(f"{fifo}\n{loop}\n")
    assert [(b.line_no, b.reason) for b in x.invalid] == [
        (1, "not a regular file or folder (a device, pipe or socket)"),
        (2, "cannot read this path (Too many levels of symbolic links)"),
    ]


UNREADABLE = "/proc/sys/vm/compact_memory"  # sysctl mode 0200: read is refused even to root


def _unreadable() -> bool:
    try:
        open(UNREADABLE, "rb").close()
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def test_a_folders_unreadable_entries_are_reported_and_the_rest_listed(tmp_path: Path) -> None:
    """Broken symlinks, a FIFO, a non-UTF-8 name, an unreadable file: each reported on the folder's line with a
    reason, the readable file listed; symlinked folders (a link to /, a loop) are not walked."""
    import os

    folder = tmp_path / "lectures"
    folder.mkdir()
    (folder / "good.mp3").write_bytes(b"ID3" + b"x" * 100)
    os.symlink(folder / "gone.mp3", folder / "broken.mp3")
    os.mkfifo(folder / "pipe.mp3")
    (folder / os.fsdecode(b"caf\xe9.mp3")).write_bytes(b"y" * 10)
    os.symlink("/", folder / "root")
    os.symlink(folder, folder / "loop")
    if _unreadable():
        os.symlink(UNREADABLE, folder / "locked.mp3")
    x = expand(f"# one folder\n{folder}\n")
    assert [e.title for e in x.entries] == ["good"]
    reasons = {Path(b.text).name: b.reason for b in x.invalid}
    assert all(b.line_no == 2 for b in x.invalid)
    assert reasons["broken.mp3"] == "broken symlink"
    assert reasons["pipe.mp3"].startswith("not a regular file")
    assert reasons["caf\ufffd.mp3"].startswith("file name is not valid UTF-8")
    if _unreadable():
        assert reasons["locked.mp3"] == "cannot read this file (Permission denied)"


def test_a_line_linking_into_proc_is_refused(tmp_path: Path) -> None:
    """A media path line that is a symlink to an unreadable /proc file is refused by where it leads."""
    import os

    link = tmp_path / "locked.mp3"
    os.symlink(UNREADABLE, link)
    x = expand(f"{link}\n")
    assert [(b.line_no, b.reason) for b in x.invalid] == [(1, "a system path (/proc), not media")]


def test_folder_walk_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder with more entries than the cap is refused with a reason instead of walked for an hour."""
    import pipeline.recipes.transcribe.source_local as sources

    monkeypatch.setattr(sources, "MAX_FOLDER_ENTRIES", 5)
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("x")
    x = expand(f"{tmp_path}\n")
    assert [(b.line_no, b.reason.split(";")[0]) for b in x.invalid] == [(1, "more than 5 entries under this folder")]


def test_titles_are_cleaned() -> None:
    """A NUL, an ESC sequence, a direction override or a newline in a title becomes a space; length is bounded."""
    assert clean_title("Bad\x00title") == "Bad title"
    assert clean_title("\x1b[31mred\x1b[0m") == "[31mred [0m"
    assert clean_title("a\u202eb\nc") == "a b c"
    assert clean_title("\x00\x01") is None
    assert len(clean_title("x" * 10_000) or "") == 500


def test_repair_feed_keeps_every_entry() -> None:
    """RSS with a NUL, an ESC reference and a bare '&' parses after repair; entity declarations are refused."""
    feed = (b'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>T&#0;</title>'
            b'<item><title>A\x00B</title><enclosure url="http://h/a.mp3"/></item>'
            b'<item><title>Salt & Pepper &#x1b;</title><enclosure url="http://h/b.mp3"/></item>'
            b"</channel></rss>")
    doc = repair_feed(feed)
    assert doc is not None
    assert [it.findtext("title") for it in doc.findall("./channel/item")] == ["AB", "Salt & Pepper "]
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rss><channel/></rss>'
    assert repair_feed(bomb) is None
    assert repair_feed(b"<html><body>not a feed</body></html>") is None


def test_a_broken_feed_keeps_its_entries_with_the_clean_ids(media_server: MediaServer) -> None:
    """A NUL in one title no longer loses the feed: the entries come back with the ids a clean feed gives,
    and a file: enclosure is refused on the feed's line while the others stay."""
    from tests.media_server import rss_feed

    items = [{"title": "One", "url": media_server.media["mp3"], "guid": "g1"},
             {"title": "Two", "url": media_server.media["m4a"], "guid": "g2"},
             {"title": "Leak", "url": "file:///etc/passwd", "guid": "g3"}]
    clean = rss_feed(media_server.base_url, items)
    media_server.add_text("/clean.xml", clean, "application/rss+xml")
    broken = clean.replace("<title>Two</title>", "<title>T\x00wo</title>")
    media_server.add_text("/broken.xml", broken, "application/rss+xml")
    good = expand(media_server.url("/clean.xml") + "\n")
    bad = expand("# a comment\n" + media_server.url("/broken.xml") + "\n")
    assert not bad.failed, bad.failed
    assert [e.title for e in bad.entries] == ["One", "Two"]
    assert [e.url for e in bad.entries] == [e.url for e in good.entries]
    # ids hash the URL: the repaired listing and the clean one agree, so reuse across batches still works
    assert [e.id.split("-")[-1] for e in bad.entries] == [e.id.split("-")[-1] for e in good.entries]
    assert [(b.line_no, b.reason) for b in bad.invalid] == [(2, "feed or page entry refused: file: URL")]

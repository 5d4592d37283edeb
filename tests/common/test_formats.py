"""Transcript writers and caption parsers: cue limits, time invariants, round trips, rolling captions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipeline.common.formats import (
    build_cues,
    fmt_timestamp,
    parse_srt,
    parse_vtt,
    summary_markdown,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
)

LONG = ("Whisper segments are often much longer than a subtitle should be, so the writer has to cut them "
        "into several cues that each fit on two short lines of text.")


def tr(*segments: dict[str, Any]) -> dict[str, Any]:
    return {"language": "en", "duration": 60.0, "source": "whisper", "model": "tiny.en", "segments": list(segments)}


def seg(start: float, end: float, text: str, **kw: Any) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text, **kw}


def cue_blocks(srt: str) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) per SRT block, read with a strict regex independent of the parser under test."""
    out = []
    for block in srt.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].isdigit(), block
        m = re.fullmatch(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", lines[1])
        assert m, lines[1]
        g = [int(x) for x in m.groups()]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000,
                    lines[2:]))
    return out


def assert_cue_invariants(srt: str, max_chars: int = 42, max_lines: int = 2) -> list[tuple[float, float, list[str]]]:
    cues = cue_blocks(srt)
    prev_end = 0.0
    for start, end, lines in cues:
        assert 1 <= len(lines) <= max_lines, lines
        assert all(0 < len(line) <= max_chars for line in lines), lines
        assert end > start, (start, end)
        assert start >= prev_end, (prev_end, start)
        prev_end = end
    return cues


PATHOLOGICAL = [
    tr(seg(0, 10, "first segment overlapping the next"), seg(5, 8, "second starts inside the first"),
       seg(6, 6, "zero length"), seg(6, 6, "zero length again"), seg(7.5, 7.0, "end before start")),
    tr(seg(1, 2, "x" * 200), seg(2, 2.001, "https://example.com/" + "a/b?c=d&" * 30)),
    tr(seg(0, 4, "日本語のテキストはスペースなしで続きます。" * 6), seg(4, 6, "Ünïcödé ✓ — «quotes» 🦊 emoji")),
    tr(seg(-3, -1, "negative times"), seg(0, 0, "   "), seg(float("nan"), 2, "not a number start")),
    tr(*[seg(i * 0.001, i * 0.001, f"burst {i}") for i in range(30)]),
]


@pytest.mark.parametrize("transcript", PATHOLOGICAL)
def test_cues_respect_limits_and_never_overlap(transcript: dict[str, Any]) -> None:
    """Every cue has 1-2 lines of at most 42 characters and times that only move forward, even on bad input."""
    cues = assert_cue_invariants(to_srt(transcript))
    assert cues, "non-empty text must produce cues"
    words_in = "".join("".join(str(s["text"]).split()) for s in transcript["segments"])
    words_out = "".join("".join(line.split()) for _, _, lines in cues for line in lines)
    assert words_out == words_in  # nothing lost or invented, only re-spaced


def test_long_segment_splits_into_several_cues_proportionally() -> None:
    """A long segment without word timings becomes several cues covering its span, timed by characters."""
    cues = assert_cue_invariants(to_srt(tr(seg(10, 20, LONG))))
    assert len(cues) >= 2
    assert cues[0][0] == pytest.approx(10) and cues[-1][1] == pytest.approx(20)
    assert " ".join(" ".join(c[2]) for c in cues) == LONG
    # the first cue covers its share of the characters
    first_chars = len(" ".join(cues[0][2]))
    assert cues[0][1] - 10 == pytest.approx(10 * first_chars / len(LONG), abs=0.2)


def test_word_timings_place_the_cuts() -> None:
    """With word timings, each cue starts at its first word's start and ends at its last word's end."""
    words, t = [], 0.0
    for w in LONG.split():
        words.append({"start": t, "end": t + 0.3, "word": " " + w, "probability": 0.9})
        t += 0.5 if w.endswith(",") else 0.4
    cues = build_cues(tr(seg(0, t, LONG, words=words)))
    assert len(cues) >= 2
    starts = {round(w["start"] * 1000) for w in words}
    ends = {round(w["end"] * 1000) for w in words}
    for c in cues:
        assert c.start_ms in starts
        assert c.end_ms in ends or c.end_ms - c.start_ms >= 500
    assert " ".join(line for c in cues for line in c.lines) == LONG


def test_cjk_word_timings_join_without_spaces() -> None:
    """Per-character word timings for Japanese are rejoined without inserting spaces."""
    text = "今日はいい天気ですね"
    words = [{"start": i * 0.2, "end": i * 0.2 + 0.2, "word": ch, "probability": 1.0} for i, ch in enumerate(text)]
    cues = build_cues(tr(seg(0, 2, text, words=words)))
    assert ["".join(c.lines) for c in cues] == [text]


def test_min_duration_extends_short_cues_when_there_is_room() -> None:
    """A 10 ms segment is stretched to a readable 0.5 s when the next cue starts later."""
    (c1, c2) = build_cues(tr(seg(1.0, 1.01, "blink"), seg(5, 6, "later")))
    assert (c1.start_ms, c1.end_ms) == (1000, 1500) and c2.start_ms == 5000


def test_two_line_cues_are_balanced() -> None:
    """A two-line cue splits near the middle rather than leaving a one-word second line."""
    text = "one two three four five six seven eight nine ten eleven"
    (cue,) = build_cues(tr(seg(0, 5, text)))
    assert len(cue.lines) == 2 and abs(len(cue.lines[0]) - len(cue.lines[1])) <= 8


def test_srt_and_vtt_round_trip() -> None:
    """Text and times written to SRT or VTT come back the same through the parsers."""
    t = tr(seg(0.0, 2.5, "Hello there."), seg(2.5, 4.25, "Fish & chips <cheap> tonight?"),
           seg(3661.123, 3663.0, "Über eine Stunde später."))
    expect = [(s["start"], s["end"], s["text"]) for s in t["segments"]]
    for parsed in (parse_srt(to_srt(t)), parse_vtt(to_vtt(t))):
        assert [(p["start"], p["end"], p["text"]) for p in parsed] == expect
    vtt = to_vtt(t)
    assert vtt.startswith("WEBVTT\n\n") and "01:01:01.123 --> 01:01:03.000" in vtt and "&amp;" in vtt
    assert "01:01:01,123 --> 01:01:03,000" in to_srt(t)


def test_round_trip_of_split_cues_keeps_all_text() -> None:
    """Splitting a long segment into cues and parsing them back keeps every word in order."""
    parsed = parse_srt(to_srt(tr(seg(0, 12, LONG))))
    assert " ".join(p["text"] for p in parsed) == LONG
    assert all(a["end"] <= b["start"] for a, b in zip(parsed, parsed[1:], strict=False))


def test_parse_vtt_tolerates_headers_notes_styles_settings_and_tags() -> None:
    """Headers, NOTE/STYLE blocks, identifiers, cue settings, inline tags and short timestamps are handled."""
    vtt = (
        "\ufeffWEBVTT - some title\r\nKind: captions\r\nLanguage: en\r\n\r\n"
        "STYLE\n::cue { color: yellow }\n\n"
        "NOTE this is a comment\nspanning lines\n\n"
        "intro-1\n00:01.000 --> 00:03.500 align:start position:10% line:0\n"
        "<v Roger>Hi <b>there</b>,</v> <i>friend</i> &amp; co\n\n"
        "00:00:04.000 --> 00:00:06.000\n<c.colorE5E5E5>karaoke</c><00:00:04.500><c> style</c>\n"
    )
    assert parse_vtt(vtt) == [
        {"start": 1.0, "end": 3.5, "text": "Hi there, friend & co"},
        {"start": 4.0, "end": 6.0, "text": "karaoke style"},
    ]


def test_parse_srt_tolerates_missing_blank_lines_and_formatting() -> None:
    """SRT without blank lines, with ASS tags and HTML font tags, still yields clean segments."""
    srt = ("1\n00:00:01,000 --> 00:00:02,000\n{\\an8}<font color=\"#ff0\">Top</font> line\n"
           "2\n00:00:02,000 --> 00:00:03,000\nsecond\nline two\n\n\n3\n00:00:05,5 --> 00:00:06,000\nthird\n")
    assert parse_srt(srt) == [
        {"start": 1.0, "end": 2.0, "text": "Top line"},
        {"start": 2.0, "end": 3.0, "text": "second line two"},
        {"start": 5.5, "end": 6.0, "text": "third"},
    ]


# YouTube pads its cues with lines holding one space; they are written "~" here to survive editors.
YOUTUBE_AUTO = """WEBVTT
Kind: captions
Language: en

00:00:00.080 --> 00:00:02.070 align:start position:0%
~
so<00:00:00.320><c> today</c><00:00:00.640><c> we're</c><00:00:00.960><c> going</c><00:00:01.280><c> to</c>

00:00:02.070 --> 00:00:02.080 align:start position:0%
so today we're going to
~

00:00:02.080 --> 00:00:04.230 align:start position:0%
so today we're going to
talk<00:00:02.560><c> about</c><00:00:02.880><c> caption</c><00:00:03.200><c> files</c>

00:00:04.230 --> 00:00:04.240 align:start position:0%
talk about caption files
~

00:00:04.240 --> 00:00:06.000 align:start position:0%
talk about caption files
and<00:00:04.800><c> why</c><00:00:05.100><c> they</c><00:00:05.400><c> repeat</c>
""".replace("\n~\n", "\n \n")


def test_youtube_rolling_auto_captions_are_deduplicated() -> None:
    """YouTube's rolling two-line auto-captions yield each spoken line once, with its own times."""
    segs = parse_vtt(YOUTUBE_AUTO)
    assert [s["text"] for s in segs] == ["so today we're going to", "talk about caption files", "and why they repeat"]
    assert [(s["start"], s["end"]) for s in segs] == [(0.08, 2.08), (2.08, 4.24), (4.24, 6.0)]


def test_growing_single_line_captions_are_deduplicated() -> None:
    """Cues that repeat and extend the previous line keep only the new words; a later genuine repeat survives."""
    srt = ("1\n00:00:00,000 --> 00:00:01,000\nhello\n\n2\n00:00:01,000 --> 00:00:02,000\nhello world\n\n"
           "3\n00:00:02,000 --> 00:00:03,000\nhello world\n\n4\n00:00:10,000 --> 00:00:11,000\nhello world\n")
    assert parse_srt(srt) == [
        {"start": 0.0, "end": 1.0, "text": "hello"},
        {"start": 1.0, "end": 3.0, "text": "world"},
        {"start": 10.0, "end": 11.0, "text": "hello world"},
    ]


def test_to_txt_makes_paragraphs_at_pauses() -> None:
    """Plain text joins segments with spaces and starts a paragraph after a long pause; CJK joins without spaces."""
    t = tr(seg(0, 1, " Hello"), seg(1, 2, "world. "), seg(10, 11, "After a pause."), seg(11, 12, "你好"),
           seg(12, 13, "世界"), seg(13, 14, "  "))
    assert to_txt(t) == "Hello world.\n\nAfter a pause. 你好世界\n"
    assert to_txt(tr()) == ""


def test_to_json_keeps_unicode_readable() -> None:
    """JSON output is pretty-printed, round-trips, and keeps non-ASCII characters as they are."""
    t = tr(seg(0, 1, "naïve 東京"))
    out = to_json(t)
    assert "naïve 東京" in out and json.loads(out) == t and "\n  " in out


def test_fmt_timestamp() -> None:
    """Timestamps read MM:SS under an hour and H:MM:SS from an hour on; junk reads as zero."""
    assert [fmt_timestamp(x) for x in (0, 59.9, 61, 3599, 3600, 36061, -5, None)] == [
        "00:00", "00:59", "01:01", "59:59", "1:00:00", "10:01:01", "00:00", "00:00"]


def test_summary_markdown_sections() -> None:
    """The summary Markdown has the title, TL;DR, key points, timestamped chapters and tags."""
    md = summary_markdown("My *talk*", {
        "tldr": "Short version.", "key_points": ["First", "Second"],
        "chapters": [{"start": 3725, "title": "Late"}, {"start": 65, "title": "Early"}],
        "tags": ["ai", "video"], "engine": "llm", "model": "gpt-4o-mini",
    })
    assert md.startswith("# My \\*talk\\*\n"), "a title is source metadata: shown as text, never as Markdown"
    for part in ("## TL;DR\n\nShort version.", "## Key points\n\n- First\n- Second", "## Chapters\n\n- [01:05] Early\n"
                 "- [1:02:05] Late", "## Tags\n\nai, video", "gpt-4o-mini"):
        assert part in md
    assert "## Key points" not in summary_markdown("t", {"tldr": "x", "key_points": []})

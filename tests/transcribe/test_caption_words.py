"""Caption word times: YouTube's inline ``<00:00:01.000><c> word</c>`` times become segment words, only where the
track timed every word, with the segments themselves exactly as without words."""

from __future__ import annotations

from pipeline.common.caption_parse import parse_srt, parse_vtt
from tests.common.test_formats import YOUTUBE_AUTO  # the same rolling automatic captions, with word times


def _plain(segments: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "words"} for s in segments]


def test_youtube_inline_times_become_words() -> None:
    """Each rolling line's words carry the track's own times; the first word starts with its cue."""
    segs = parse_vtt(YOUTUBE_AUTO, words=True)
    assert _plain(segs) == parse_vtt(YOUTUBE_AUTO)  # segments unchanged by keeping words
    assert [[w["word"] for w in s["words"]] for s in segs] == [
        ["so", "today", "we're", "going", "to"], ["talk", "about", "caption", "files"],
        ["and", "why", "they", "repeat"]]
    assert [w["start"] for w in segs[0]["words"]] == [0.08, 0.32, 0.64, 0.96, 1.28]
    assert [w["end"] for w in segs[0]["words"]] == [0.32, 0.64, 0.96, 1.28, 2.07]
    assert segs[1]["words"][0] == {"start": 2.08, "end": 2.56, "word": "talk"}
    for s in segs:
        assert all(s["start"] <= w["start"] <= w["end"] <= s["end"] for w in s["words"])


def test_default_parse_keeps_todays_shape() -> None:
    """Without ``words=True`` no segment carries words (the callers and tests of today see no change)."""
    assert all("words" not in s for s in parse_vtt(YOUTUBE_AUTO))


def test_untimed_tracks_get_no_words() -> None:
    """A manual track (no inline times) and an SRT give no words: exports estimate them, never this parser."""
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nHello <b>there</b> &amp; you\n"
    assert parse_vtt(vtt, words=True) == [{"start": 1.0, "end": 3.0, "text": "Hello there & you"}]
    srt = "1\n00:00:01,000 --> 00:00:02,000\nplain words\n"
    assert parse_srt(srt) == [{"start": 1.0, "end": 2.0, "text": "plain words"}]


def test_partly_timed_cue_gets_no_words() -> None:
    """A new untimed line next to a timed one: the segment's words would be half guessed, so it has none."""
    vtt = ("WEBVTT\n\n00:00:10.000 --> 00:00:12.000\nfresh untimed line\n"
           "timed<00:00:11.000><c> words</c>\n")
    segs = parse_vtt(vtt, words=True)
    assert segs == [{"start": 10.0, "end": 12.0, "text": "fresh untimed line timed words"}]


def test_out_of_order_and_entity_words() -> None:
    """Times that step backwards or past the cue are pulled into it; entities decode inside words."""
    vtt = ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n"
           "A<00:00:01.500><c> &amp;</c><00:00:01.200><c> B</c><00:00:09.000><c> C</c>\n")
    (seg,) = parse_vtt(vtt, words=True)
    assert seg["text"] == "A & B C"
    assert [w["word"] for w in seg["words"]] == ["A", "&", "B", "C"]
    starts = [w["start"] for w in seg["words"]]
    assert starts == sorted(starts) and starts[-1] <= 2.0 and seg["words"][-1]["end"] == 2.0


def test_growing_cues_keep_only_new_words() -> None:
    """A cue that repeats the previous text and adds one timed word: the new segment holds just that word."""
    vtt = ("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n\n"
           "00:00:01.000 --> 00:00:02.000\nhello<00:00:01.400><c> world</c>\n")
    segs = parse_vtt(vtt, words=True)
    assert _plain(segs) == [{"start": 0.0, "end": 1.0, "text": "hello"}, {"start": 1.0, "end": 2.0, "text": "world"}]
    assert segs[1]["words"] == [{"start": 1.4, "end": 2.0, "word": "world"}]
    assert "words" not in segs[0]


def test_source_facts_fill_only_what_is_missing() -> None:
    """The look-up's channel (cleaned) and upload date reach the item's meta only where it has none."""
    from pipeline.recipes.transcribe.stages.captions import source_facts

    info = {"uploader": "Some\x00 Channel\n", "upload_date": "20240102"}
    assert source_facts(info, {"meta": {}}) == {"channel": "Some Channel", "upload_date": "20240102"}
    assert source_facts(info, {"meta": {"channel": "Feed", "upload_date": "20230101"}}) == {}
    assert source_facts({"channel": "C", "uploader": "U", "upload_date": "2024-01-02"}, {}) == {"channel": "C"}

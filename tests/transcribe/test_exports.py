"""Portable exports (--formats): Obsidian Markdown with YAML front matter, DOCX, word-level SRT/VTT and ASS karaoke,
read back with real parsers; hostile titles stay text; one batch on the loopback server writes them all."""

from __future__ import annotations

import datetime
import io
import json
import re
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docx
import pytest
import yaml
from PIL import Image

from pipeline.common.ffmpeg import ffmpeg_exe
from pipeline.common.transcript_text import clean_text
from pipeline.engine.core import Engine
from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe import exports
from pipeline.recipes.transcribe.sources import expand
from pipeline.recipes.transcribe.stages.export import EXPORT_FLAG, write_exports
from tests.media_server import MediaServer, html_page
from tests.transcribe.test_caption_words import YOUTUBE_AUTO

YT = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
TRANSCRIPT = {"language": "en", "duration": 20.0, "source": "whisper", "segments": [
    {"start": 0.0, "end": 2.5, "text": "Hello world, this is it.", "words": [
        {"start": 0.0, "end": 0.5, "word": " Hello", "probability": 0.9},
        {"start": 0.6, "end": 1.0, "word": " world,", "probability": 0.9},
        {"start": 1.1, "end": 1.4, "word": " this", "probability": 0.9},
        {"start": 1.5, "end": 1.8, "word": " is", "probability": 0.9},
        {"start": 1.9, "end": 2.4, "word": " it.", "probability": 0.9}]},
    {"start": 5.0, "end": 11.0, "text": "A longer second segment without word times, which is cut into several "
                                        "karaoke lines {\\an8} because it runs past forty-two characters."},
    {"start": 65.0, "end": 66.5, "text": "Late ![beacon](http://evil.example/p.png) [[Vault note]] %%gone%% $x$"},
]}
SUMMARY = {"tldr": "A short talk.", "key_points": ["Greeting", "A long line"], "tags": ["Talk Show", "2024", "ai"],
           "chapters": [{"start": 65, "title": "Late part"}, {"start": 0, "title": "Opening"}]}
HOSTILE_TITLES = [
    "../../etc/passwd", 'She said "hi" and \'bye\'', "Line one\nLine two\r\nthree", "---\ntitle: injected\n---",
    "key: value # not a comment", "@at &anchor *alias !tag | > [flow] {map}", "%%hidden%% $math$ ==mark==",
    "tab\there nul\x00 esc\x1b[31m bell\x07", "emoji 🦊 東京 line\u2028sep", "# Heading ![img](http://x/y.png)",
]


def record(title: str = "My talk: part 1", url: str = YT, **kw: Any) -> dict[str, Any]:
    return {"title": title, "url": url, "source": url, "duration": 125.4, "language": "en", "parent": "Chan: nel",
            "upload_date": "20240501", "transcript_source": "whisper", **kw}


def front(md: str) -> dict[str, Any]:
    assert md.startswith("---\n")
    head, _, _ = md[4:].partition("\n---\n")
    return yaml.safe_load(head)


def read_cues(text: str) -> list[tuple[float, float, str]]:
    """A strict little SRT/VTT reader of our own word files (each cue: a time line, then one text line)."""
    def sec(ts: str) -> float:
        h, m, s = ts.replace(",", ".").split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    cues = re.findall(r"^(\d\d:\d\d:\d\d[.,]\d{3}) --> (\d\d:\d\d:\d\d[.,]\d{3})\n(.+)$", text, re.M)
    return [(sec(a), sec(b), t) for a, b, t in cues]


def dialogue_k(ass: str) -> list[tuple[float, float, list[int], str]]:
    """(start, end, \\k values, text without tags) of every ASS Dialogue line."""
    def sec(ts: str) -> float:
        h, m, s = ts.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    out = []
    for line in ass.splitlines():
        if line.startswith("Dialogue:"):
            parts = line.split(",", 9)
            text = parts[9]
            out.append((sec(parts[1]), sec(parts[2]), [int(k) for k in re.findall(r"\{\\k(\d+)\}", text)],
                        re.sub(r"\{[^}]*\}", "", text)))
    return out


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_front_matter_keeps_hostile_titles_as_text(title: str) -> None:
    """Any title loads back from the YAML as exactly its one-line text, adds no keys, and is no Markdown."""
    md = exports.obsidian_markdown(record(title), TRANSCRIPT, SUMMARY)
    meta = front(md)
    assert meta["title"] == clean_text(title)
    assert set(meta) == {"title", "url", "channel", "date", "duration", "language", "tags", "transcript"}
    body = md[4:].partition("\n---\n")[2]
    heading = next(line for line in body.splitlines() if line.startswith("# "))
    assert "![" not in heading and "](" not in heading and "%%" not in heading
    assert "\n---\n" not in body and body.count("\n# ") <= 1


def test_front_matter_facts() -> None:
    """Front matter: channel, ISO date, whole seconds, language, Obsidian-safe tags (no spaces, not all digits)."""
    meta = front(exports.obsidian_markdown(record(), TRANSCRIPT, SUMMARY))
    assert meta == {"title": "My talk: part 1", "url": YT, "channel": "Chan: nel",
                    "date": datetime.date(2024, 5, 1), "duration": 125, "language": "en",
                    "tags": ["talk-show", "ai"], "transcript": "whisper"}
    local = front(exports.obsidian_markdown(record(url="/home/me/Talks/talk.mp3", upload_date=None), TRANSCRIPT, None))
    assert local["file"] == "talk.mp3" and "url" not in local and "date" not in local


def test_timestamps_link_to_the_source_at_that_time() -> None:
    """YouTube gets t=Ns (youtu.be t=N), other web media a #t= fragment, a local file plain timestamps."""
    md = exports.obsidian_markdown(record(), TRANSCRIPT, SUMMARY)
    assert f"[00:00]({YT}&t=0s) Hello world, this is it." in md
    assert f"[01:05]({YT}&t=65s)" in md
    assert md.index("[00:00](") < md.index("Opening") < md.index("Late part")  # chapters sorted, linked
    assert exports.time_link("https://youtu.be/abc?si=x&t=3", 65) == "https://youtu.be/abc?si=x&t=65"
    assert exports.time_link("https://m.youtube.com/watch?v=a&t=9s", 7.9) == "https://m.youtube.com/watch?v=a&t=7s"
    assert exports.time_link("http://host/a b(1).mp3#old", 3) == "http://host/a%20b%281%29.mp3#t=3"
    assert exports.time_link("/tmp/a.mp3", 3) is None and exports.time_link("javascript:alert(1)//", 3) is None
    page = record(url="http://host/talk.html", media_url="http://host/media/talk.mp3")
    assert exports.link_base(page) == "http://host/media/talk.mp3"  # a fragment seeks a file, not a page
    assert "[00:05](http://host/media/talk.mp3#t=5)" in exports.obsidian_markdown(page, TRANSCRIPT, None)
    assert exports.link_base(record(media_url="http://host/m.mp3")) == YT  # YouTube seeks its own page
    local = exports.obsidian_markdown(record(url="/tmp/talk.mp3"), TRANSCRIPT, None)
    assert "**00:05** A longer second" in local and "](" not in local.partition("## Transcript")[2]


def test_transcript_text_is_not_markup() -> None:
    """Images, wikilinks, Obsidian comments and math in spoken text are escaped; no beacon can load."""
    md = exports.obsidian_markdown(record(), TRANSCRIPT, {"tldr": "See ![x](http://evil.example/b.png) %%hide%%"})
    assert "![" not in md and "](http://evil" not in md and "[[Vault" not in md
    assert "%%gone" not in md and "%%hide" not in md and "$x$" not in md
    assert "\\[\\[Vault note\\]\\]" in md and "`http://evil.example/p.png`" in md


def test_docx_opens_with_title_facts_summary_and_linked_transcript() -> None:
    """The DOCX opens in python-docx with the title, a facts table, the summary and time-linked paragraphs."""
    doc = docx.Document(io.BytesIO(exports.docx_bytes(record(), TRANSCRIPT, SUMMARY)))
    texts = [p.text for p in doc.paragraphs]
    assert texts[0] == "My talk: part 1" and doc.core_properties.title == "My talk: part 1"
    facts = {r.cells[0].text: r.cells[1].text for r in doc.tables[0].rows}
    assert facts == {"Source": YT, "Channel": "Chan: nel", "Date": "2024-05-01", "Duration": "02:05",
                     "Language": "en", "Tags": "talk-show, ai"}
    assert "A short talk." in texts and "Greeting" in texts and "00:00 Opening" in texts
    line = next(p for p in doc.paragraphs if p.text.startswith("01:05 Late"))
    assert [h.address for h in line.hyperlinks] == [f"{YT}&t=65s"]
    hostile = docx.Document(io.BytesIO(exports.docx_bytes(record(HOSTILE_TITLES[7]), TRANSCRIPT, None)))
    assert hostile.paragraphs[0].text == clean_text(HOSTILE_TITLES[7])  # controls gone, no XML error


def test_word_srt_and_vtt_have_one_cue_per_word() -> None:
    """Word files: one cue per word at the transcript's word times, monotonic and never overlapping."""
    srt, vtt = exports.words_srt(TRANSCRIPT), exports.words_vtt(TRANSCRIPT)
    for cues in (read_cues(srt), read_cues(vtt)):
        n_words = sum(len(s["text"].split()) for s in TRANSCRIPT["segments"])
        assert len(cues) == n_words
        assert cues[:2] == [(0.0, 0.5, "Hello"), (0.6, 1.0, "world,")]
        assert all(a < b for a, b, _ in cues)
        assert all(c[1] <= d[0] for c, d in zip(cues, cues[1:], strict=False))
    assert vtt.startswith("WEBVTT\n\nNOTE word times estimated by word length for 2 of 3 segments")
    assert "&lt;" not in vtt and srt.startswith("1\n00:00:00,000 --> 00:00:00,500\nHello\n")


def test_estimated_words_stay_in_their_segment_by_length() -> None:
    """Without word times, each segment's words share its span by length: long words last longer."""
    cues = read_cues(exports.words_vtt({"segments": [{"start": 10.0, "end": 13.0, "text": "a extraordinary b"}]}))
    assert [t for *_, t in cues] == ["a", "extraordinary", "b"]
    assert cues[0][0] == 10.0 and cues[-1][1] == 13.0
    assert cues[1][1] - cues[1][0] > 5 * (cues[0][1] - cues[0][0])
    assert exports.words_srt({"segments": []}) == "" and "Dialogue" not in exports.ass_karaoke({})


def test_ass_karaoke_k_sums_equal_segment_durations() -> None:
    """Every ASS event's \\k add up to its length, a segment's events tile it, and override braces are text."""
    ass = exports.ass_karaoke(TRANSCRIPT, "Title {\\b1}")
    assert "PlayResY: 1080" in ass and "; word times estimated" in ass and "Title (/b1)" in ass
    events = dialogue_k(ass)
    for start, end, ks, _ in events:
        assert sum(ks) == round((end - start) * 100)
    for seg in TRANSCRIPT["segments"]:
        mine = [e for e in events if seg["start"] <= e[0] < seg["end"]]
        assert mine and sum(sum(e[2]) for e in mine) == round(seg["end"] * 100) - round(seg["start"] * 100)
    assert events[0][2] == [60, 50, 40, 40, 60]  # each word lasts to the next word's start
    long = [e for e in events if 5.0 <= e[0] < 11.0]
    assert len(long) >= 2 and all(len(line) <= 42 for e in long for line in e[3].split("\\N"))
    assert "{\\an8}" not in ass and "(/an8)" in ass


def test_libass_lights_the_words_as_they_are_spoken(tmp_path: Path) -> None:
    """Burnt in by ffmpeg's libass, the karaoke line turns from white to yellow word by word, all yellow at its end."""
    ass = tmp_path / "k.ass"
    ass.write_text(exports.ass_karaoke(TRANSCRIPT, "x", width=640, height=360), encoding="utf-8")
    counts = []
    for t in (0.3, 1.2, 2.45):
        frame = tmp_path / f"f{t}.png"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "color=c=black:s=640x360:d=3", "-ss", str(t), "-vf", f"subtitles={ass.name}", "-frames:v", "1",
                        frame.name], cwd=tmp_path, check=True, timeout=30)
        px = list(Image.open(frame).convert("RGB").getdata())
        counts.append((sum(1 for r, g, b in px if r > 200 and g > 200 and b < 80),  # yellow: spoken
                       sum(1 for r, g, b in px if min(r, g, b) > 200)))  # white: still to come
    (y1, w1), (y2, w2), (y3, w3) = counts
    assert 0 < y1 < y2 < y3 and w1 > w2 > w3 == 0


def _ctx(workdir: Path, **options: Any) -> StageContext:
    workdir.mkdir(parents=True, exist_ok=True)
    return StageContext("b", "b", 1, "export", workdir, options, 1, None, lambda f: None, lambda: False)


def test_a_failing_format_is_recorded_and_the_rest_written(tmp_path: Path) -> None:
    """A format that cannot be written lands in export_errors with a flag; the others are written anyway."""
    ctx = _ctx(tmp_path / "item", formats="obsidian,docx,words,ass")
    (tmp_path / "item" / "transcript.docx").mkdir()  # a folder where the file should go: the write fails
    arts, meta = write_exports({"source": YT, "flags": ["keep-me"]}, ctx, TRANSCRIPT, record())
    assert set(arts) == {"notes", "words_srt", "words_vtt", "ass"}
    assert list(meta["export_errors"]) == ["docx"] and meta["flags"] == [EXPORT_FLAG, "keep-me"]
    assert meta["words_estimated"] == "2 of 3 segments"
    (tmp_path / "item" / "transcript.docx").rmdir()
    arts, meta = write_exports({"source": YT, "flags": [EXPORT_FLAG], "meta": {"export_errors": {"docx": "x"}}},
                               ctx, TRANSCRIPT, record())
    assert "docx" in arts and meta["export_errors"] == {} and meta["flags"] == []  # fixed on the next run


def test_batch_writes_every_format_from_youtube_style_captions(make_engine: Callable[..., Engine]) -> None:
    """A captioned page with YouTube-style inline word times: words kept, every --formats file written and listed."""
    with MediaServer() as server:
        server.add_text("/auto.vtt", YOUTUBE_AUTO, "text/vtt; charset=utf-8")
        server.add_text("/talk.html", html_page('Auto: "captions" #1', (
            '<video controls><source src="/never-fetched.mp4" type="video/mp4">\n'
            '<track kind="subtitles" srclang="en" label="English" src="/auto.vtt" default></video>')))
        e = make_engine()
        entries = expand(server.url("/talk.html")).entries
        e.submit("fmt", [x.to_item() for x in entries], recipe="transcribe",
                 options={"formats": "obsidian,docx,words,ass", "summarizer": "offline"})
        assert e.wait("fmt", timeout=60).state == "done"
        (item,) = e.items("fmt")
        assert server.hits("/never-fetched.mp4") == 0
    wd = Path(item["workdir"])
    tr = json.loads((wd / "transcript.json").read_text())
    assert [w["word"] for w in tr["segments"][1]["words"]] == ["talk", "about", "caption", "files"]
    assert item["meta"]["word_times"] == "captions" and item["meta"]["words_estimated"] == "0 of 3 segments"
    assert not item["meta"].get("export_errors") and EXPORT_FLAG not in item["flags"]
    names = {"notes": "notes.md", "docx": "transcript.docx", "words_srt": "transcript.words.srt",
             "words_vtt": "transcript.words.vtt", "ass": "transcript.ass"}
    assert {k: Path(item["artifacts"][k]).name for k in names} == names
    meta = front((wd / "notes.md").read_text())
    assert meta["title"] == item["title"] and meta["transcript"] == "captions"
    assert read_cues((wd / "transcript.words.srt").read_text())[1][:2] == (0.32, 0.64)
    assert "NOTE" not in (wd / "transcript.words.vtt").read_text()
    assert docx.Document(str(wd / "transcript.docx")).paragraphs[0].text == item["title"]
    folder = Path(e.summary("fmt").output_dir)
    files = json.loads((folder / "manifest.json").read_text())["items"][0]["files"]
    assert all(files[k] and (folder / files[k]).is_file() for k in names)
    zipped = zipfile.ZipFile(next(folder.glob("*.zip"))).namelist()
    assert all(any(n.endswith("/" + name) for n in zipped) for name in names.values())

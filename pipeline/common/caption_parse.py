"""Caption parsers: WebVTT and SubRip files as they come from YouTube and other tools, read into transcript
segments (tags, cue settings and YouTube's rolling repeats removed), so captions can stand in for a transcript.

YouTube's automatic captions also time every word inline (``so<00:00:00.320><c> today</c>``); with
``words=True`` those times are kept as the segment's ``words``, in faster-whisper's shape, so word-level
subtitles and karaoke files need no Whisper run. A segment gets words only when every one of its words
was timed by the track itself; otherwise it has none, and exports estimate them (never invent "real" times).

Our own reader, not ``pysubs2`` or ``webvtt-py``: both were tried on the cases in tests/common/test_formats.py
and neither removes rolling repeats or reads inline word times (pysubs2 leaves ``<00:00:00.320>`` and
``&amp;`` in the text; webvtt-py drops the word times, keeps ``{\\an8}`` and reads ``00:00:05,5`` as 5.005 s),
so they could replace only the line reader below, and would lose behaviour there.
"""

from __future__ import annotations

import html
import re
from typing import Any

from pipeline.common.transcript_text import clean_text, join_text, no_space_script

_TS = r"(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d{1,3})?"
_ARROW = re.compile(rf"^\s*({_TS})\s*-->\s*({_TS})(?:\s.*)?$")
# Known caption markup only (b/i/u/s, c.class, v Speaker, lang, ruby/rt, font, span, br, <00:00:01.000>),
# so literal text such as "<cheap>" in an SRT survives.
_TAG = re.compile(r"</?(?:[biusc]|v|lang|ruby|rt|font|span|br)(?:[.\s][^>\n]*)?/?>|<\d[\d:.]*>", re.I)
_ASS_TAG = re.compile(r"\{\\[^}]*\}")
_SKIP_BLOCKS = ("NOTE", "STYLE", "REGION", "WEBVTT")
_CONTIGUOUS_S = 0.5  # rolling captions follow each other; a repeat after a real gap is kept
_STAMP = re.compile(r"<(\d{1,2}(?::\d{1,2}){1,2}(?:[.,]\d{1,3})?)>")  # an inline word time, <00:00:01.000>
_Word = tuple[str, float | None, float | None]  # text, start, end (None: the track did not time it)


def _parse_ts(ts: str) -> float:
    ts = ts.replace(",", ".")
    main, _, frac = ts.partition(".")
    parts = [int(p) for p in main.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return h * 3600 + m * 60 + s + (float("0." + frac) if frac else 0.0)


def _clean_cue_line(line: str) -> str:
    line = _ASS_TAG.sub("", _TAG.sub("", line))
    line = html.unescape(line).replace("\u00a0", " ")
    return clean_text(line)


def _parse_cues(text: str) -> list[tuple[float, float, list[str]]]:
    """A line-based reader that tolerates missing blank lines, CRLF, BOMs and header junk."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    cues: list[tuple[float, float, list[str]]] = []
    cur: tuple[float, float, list[str]] | None = None
    skipping = False
    for raw in text.split("\n"):
        line = raw.strip()
        m = _ARROW.match(line)
        if m:
            if cur is not None:
                # No blank line before this cue: a bare number just before it is an SRT index.
                if cur[2] and cur[2][-1].strip().isdigit():
                    cur[2].pop()
                cues.append(cur)
            skipping = False
            cur = (_parse_ts(m.group(1)), _parse_ts(m.group(2)), [])
            continue
        # Inside a cue only a truly empty line ends it: YouTube pads its cues with " " lines.
        if (cur is None and not line) or (cur is not None and not raw):
            if cur is not None:
                cues.append(cur)
                cur = None
            skipping = False
            continue
        if cur is not None:
            cur[2].append(raw)
        elif skipping:
            continue
        elif line.split(" ", 1)[0].split(":", 1)[0] in _SKIP_BLOCKS or line.startswith("WEBVTT"):
            skipping = True  # header, NOTE, STYLE or REGION block: ignored up to the next blank line
        # else: a cue identifier (or stray text) before the timing line
    if cur is not None:
        cues.append(cur)
    return cues


def _join_lines(lines: list[str]) -> str:
    body = ""
    for x in lines:
        body = join_text(body, x)
    return body


def _line_words(raw: str, start: float, end: float) -> list[_Word]:
    """The words of one cue line, timed when the line carries inline times (each time starts the text after
    it; the text before the first starts with the cue). Several words between two times share that span by
    length. Times out of order or outside the cue are pulled into it."""
    parts = _STAMP.split(raw)
    if len(parts) == 1:
        return [(w, None, None) for w in _clean_cue_line(raw).split(" ") if w]
    marks = [start]
    for ts in parts[1::2]:
        marks.append(min(max(_parse_ts(ts), marks[-1]), end))
    marks.append(end)
    out: list[_Word] = []
    for i, piece in enumerate(parts[0::2]):
        words = [w for w in _clean_cue_line(piece).split(" ") if w]
        a, b = marks[i], marks[i + 1]
        total = sum(len(w) for w in words) or 1
        pos = 0
        for w in words:
            ws = a + (b - a) * pos / total
            pos += len(w)
            out.append((w, ws, a + (b - a) * pos / total))
    return out


def _timed_suffix(tokens: list[_Word], text: str) -> list[dict[str, Any]] | None:
    """The words (start, end, word) of the cue's last tokens that spell ``text``, when all are timed."""
    joined = ""
    for k in range(1, len(tokens) + 1):
        joined = join_text(tokens[-k][0], joined)
        if joined == text:
            timed = [(w, s, e) for w, s, e in tokens[-k:] if s is not None and e is not None]
            if len(timed) < k:
                return None
            return [{"start": round(s, 3), "end": round(e, 3), "word": w} for w, s, e in timed]
        if len(joined) > len(text):
            return None
    return None


def _dedupe(cues: list[tuple[float, float, list[str]]], words: bool = False) -> list[dict[str, Any]]:
    """Segments from cues, with YouTube-style rolling duplicates removed.

    YouTube auto-captions show each line twice: once in the cue where it is typed, and
    again as the top line of the next cue while the new line is typed below it (plus
    10 ms "hold" cues that repeat it alone). Other tools grow one line cue by cue
    ("hello" -> "hello world"). So when a cue follows the previous one without a gap
    and its text starts with the previous cue's text from some line onwards, only the
    rest is new; a cue with nothing new just extends the previous segment. Matching
    whole trailing lines (not single words) keeps a genuine "the … / the …" intact.
    """
    segments: list[dict[str, Any]] = []
    prev: list[str] = []
    for start, end, raw_lines in cues:
        end = max(end, start)
        lines = [x for x in (_clean_cue_line(r) for r in raw_lines) if x]
        if not lines:
            continue
        text = _join_lines(lines)
        if segments and prev and start <= segments[-1]["end"] + _CONTIGUOUS_S:
            for i in range(len(prev)):
                shown = _join_lines(prev[i:])
                if text == shown:
                    text = ""
                    break
                if text.startswith(shown) and (text[len(shown)] == " " or no_space_script(shown[-1])):
                    text = text[len(shown) :].strip()
                    break
        if text:
            segments.append({"start": round(start, 3), "end": round(end, 3), "text": text})
            if words:
                tokens = [t for r in raw_lines for t in _line_words(r, start, end)]
                timed = _timed_suffix(tokens, text)
                if timed:
                    segments[-1]["words"] = timed
        elif segments:
            segments[-1]["end"] = max(segments[-1]["end"], round(end, 3))
        prev = lines
    return segments


def parse_vtt(text: str, *, words: bool = False) -> list[dict[str, Any]]:
    """WebVTT (or SRT) text -> ``[{"start", "end", "text"}]`` with tags, settings and rolling repeats removed.

    Accepts ``MM:SS.mmm`` and ``H:MM:SS,mmm`` times, cue settings after the timing,
    ``<c>``/``<00:00:01.000>``/``<i>``/``<v Name>`` tags and HTML entities. ``words=True`` keeps the
    track's inline word times as each segment's ``words`` (``[{"start", "end", "word"}]``) where it has them.
    """
    return _dedupe(_parse_cues(text), words)


def parse_srt(text: str) -> list[dict[str, Any]]:
    """SubRip text -> segments; the same tolerant reader as :func:`parse_vtt` (files in the wild mix the two)."""
    return _dedupe(_parse_cues(text))

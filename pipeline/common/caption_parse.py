"""Caption parsers: WebVTT and SubRip files as they come from YouTube and other tools, read into transcript
segments (tags, cue settings and YouTube's rolling repeats removed), so captions can stand in for a transcript.
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


def _dedupe(cues: list[tuple[float, float, list[str]]]) -> list[dict[str, Any]]:
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
        elif segments:
            segments[-1]["end"] = max(segments[-1]["end"], round(end, 3))
        prev = lines
    return segments


def parse_vtt(text: str) -> list[dict[str, Any]]:
    """WebVTT (or SRT) text -> ``[{"start", "end", "text"}]`` with tags, settings and rolling repeats removed.

    Accepts ``MM:SS.mmm`` and ``H:MM:SS,mmm`` times, cue settings after the timing,
    ``<c>``/``<00:00:01.000>``/``<i>``/``<v Name>`` tags and HTML entities.
    """
    return _dedupe(_parse_cues(text))


def parse_srt(text: str) -> list[dict[str, Any]]:
    """SubRip text -> segments; the same tolerant reader as :func:`parse_vtt` (files in the wild mix the two)."""
    return _dedupe(_parse_cues(text))

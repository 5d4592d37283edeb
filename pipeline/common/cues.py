"""Subtitle cues and their writers: transcript segments cut into cues within broadcast line limits, written
as SubRip or WebVTT.

Subtitle cueing obeys the usual broadcast limits (42 characters a line, 2 lines a
cue): Whisper segments are often 20 s and 200 characters long, which no player
shows legibly, so long segments are cut into several cues. Cue times are forced to
be monotonic and non-overlapping because players differ wildly in how they handle
overlaps (some stack cues, some drop them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.common.transcript_text import clean_text, finite, no_space_script

MIN_CUE_S = 0.5  # a cue shorter than this cannot be read; extend it when the next cue leaves room
HARD_MIN_CUE_S = 0.1  # when cues collide, squeeze the earlier one down to this, never to zero


def _fmt_cue_time(ms: int, sep: str) -> str:
    h, rem = divmod(max(0, ms), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


@dataclass
class _Tok:
    text: str
    start: float
    end: float
    glue: bool = False  # joins the previous token without a space (a piece of a long word, CJK)


@dataclass
class Cue:
    """One subtitle cue: integer milliseconds (so rounding cannot create overlaps) and its lines."""

    start_ms: int
    end_ms: int
    lines: list[str]


def _seg_tokens(seg: dict[str, Any], max_chars: int) -> list[_Tok]:
    start = finite(seg.get("start"))
    end = max(start, finite(seg.get("end"), start))
    toks: list[_Tok] = []
    words = [w for w in seg.get("words") or [] if isinstance(w, dict) and clean_text(w.get("word"))]
    if words:
        for w in words:
            ws = min(max(finite(w.get("start"), start), start), end)
            we = min(max(finite(w.get("end"), ws), ws), end)
            text = clean_text(w.get("word"))
            # Word timings for Chinese/Japanese come one character at a time: join those without spaces.
            glue = bool(toks) and no_space_script(toks[-1].text[-1]) and no_space_script(text[0])
            toks.append(_Tok(text, ws, we, glue))
        # Whisper word times can step backwards a little; keep them ordered.
        for a, b in zip(toks, toks[1:], strict=False):
            if b.start < a.start:
                b.start = a.start
            b.end = max(b.end, b.start)
    else:
        text = clean_text(seg.get("text"))
        if not text:
            return []
        parts = text.split(" ")
        total = len(text)
        pos = 0
        for p in parts:
            a = start + (end - start) * pos / total
            pos += len(p)
            b = start + (end - start) * pos / total
            pos += 1  # the space
            toks.append(_Tok(p, a, b))
    out: list[_Tok] = []
    for t in toks:
        if len(t.text) <= max_chars:
            out.append(t)
            continue
        # A word longer than a line (a URL, unspaced CJK text): cut it, sharing its time by length.
        n = len(t.text)
        for i in range(0, n, max_chars):
            piece = t.text[i : i + max_chars]
            a = t.start + (t.end - t.start) * i / n
            b = t.start + (t.end - t.start) * min(n, i + max_chars) / n
            out.append(_Tok(piece, a, b, glue=i > 0))
    return out


def _sep(prev: str, tok: _Tok) -> str:
    return "" if not prev or tok.glue else " "


def _line_text(toks: list[_Tok]) -> str:
    s = ""
    for t in toks:
        s += _sep(s, t) + t.text
    return s


def _wrap(toks: list[_Tok], max_chars: int) -> list[list[_Tok]]:
    """Greedy line filling; every token is at most ``max_chars`` long so each fits somewhere."""
    lines: list[list[_Tok]] = []
    cur: list[_Tok] = []
    text = ""
    for t in toks:
        sep = _sep(text, t)
        if cur and len(text) + len(sep) + len(t.text) > max_chars:
            lines.append(cur)
            cur, text, sep = [], "", ""
        cur.append(t)
        text += sep + t.text
    if cur:
        lines.append(cur)
    return lines


def _balance(toks: list[_Tok], max_chars: int, n_lines: int) -> list[str]:
    """Two lines of similar length read better than a full line and a stub."""
    if n_lines != 2 or len(toks) < 2:
        return [_line_text(line) for line in _wrap(toks, max_chars)]
    full = ""
    cuts: list[tuple[int, int]] = []  # (end of line 1, start of line 2) at each space between tokens
    for t in toks:
        sep = _sep(full, t)
        if full and not t.glue:
            cuts.append((len(full), len(full) + len(sep)))
        full += sep + t.text
    best: tuple[int, list[str]] | None = None
    for a_end, b_start in cuts:
        a, b = full[:a_end], full[b_start:]
        if len(a) <= max_chars and len(b) <= max_chars:
            score = max(len(a), len(b))
            if best is None or score < best[0]:
                best = (score, [a, b])
    return best[1] if best else [_line_text(line) for line in _wrap(toks, max_chars)]


def build_cues(transcript: dict[str, Any], max_chars: int = 42, max_lines: int = 2,
               min_duration: float = MIN_CUE_S) -> list[Cue]:
    """Segments -> cues within the line limits, with monotonic, non-overlapping times.

    Word timings (when the segment has them) place each cut exactly; otherwise time is
    shared out in proportion to characters. Overlaps are resolved by ending the earlier
    cue where the next begins; a cue left shorter than ``HARD_MIN_CUE_S`` pushes the
    next one later instead, so no cue ever has zero length.
    """
    max_chars = max(1, int(max_chars))
    max_lines = max(1, int(max_lines))
    segs = [s for s in transcript.get("segments") or [] if isinstance(s, dict)]
    segs.sort(key=lambda s: finite(s.get("start")))
    raw: list[tuple[float, float, list[str]]] = []
    for seg in segs:
        toks = _seg_tokens(seg, max_chars)
        if not toks:
            continue
        lines = _wrap(toks, max_chars)
        for i in range(0, len(lines), max_lines):
            group = [t for line in lines[i : i + max_lines] for t in line]
            raw.append((group[0].start, group[-1].end, _balance(group, max_chars, len(lines[i : i + max_lines]))))
    raw.sort(key=lambda c: c[0])  # stable: cues of one segment keep their order

    min_ms = max(int(round(min_duration * 1000)), 1)
    hard_ms = min(int(round(HARD_MIN_CUE_S * 1000)), min_ms)
    cues: list[Cue] = []
    cursor = 0
    for i, (s, e, lines) in enumerate(raw):
        start = max(int(round(max(s, 0.0) * 1000)), cursor)
        end = max(int(round(e * 1000)), start + min_ms)
        if i + 1 < len(raw):
            nxt = int(round(max(raw[i + 1][0], 0.0) * 1000))
            if end > nxt:
                end = max(nxt, start + hard_ms)
        cues.append(Cue(start, end, lines))
        cursor = end
    return cues


def srt_text(cues: list[Cue]) -> str:
    """SubRip text of cues: numbered, ``HH:MM:SS,mmm`` times; no escaping (SRT has none)."""
    blocks = []
    for n, c in enumerate(cues, 1):
        times = f"{_fmt_cue_time(c.start_ms, ',')} --> {_fmt_cue_time(c.end_ms, ',')}"
        blocks.append(f"{n}\n{times}\n" + "\n".join(c.lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt_text(cues: list[Cue], note: str | None = None) -> str:
    """WebVTT text of cues: ``HH:MM:SS.mmm`` times, ``& < >`` escaped as the spec needs, a ``NOTE`` first."""
    out = ["WEBVTT", ""]
    if note:
        out += [f"NOTE {note}", ""]
    for c in cues:
        out.append(f"{_fmt_cue_time(c.start_ms, '.')} --> {_fmt_cue_time(c.end_ms, '.')}")
        out.extend(_vtt_escape(line) for line in c.lines)
        out.append("")
    return "\n".join(out)


def to_srt(transcript: dict[str, Any], max_chars: int = 42, max_lines: int = 2) -> str:
    """SubRip of the transcript's cues (:func:`build_cues`)."""
    return srt_text(build_cues(transcript, max_chars, max_lines))


def to_vtt(transcript: dict[str, Any], max_chars: int = 42, max_lines: int = 2) -> str:
    """WebVTT of the same cues as :func:`to_srt`."""
    return vtt_text(build_cues(transcript, max_chars, max_lines))

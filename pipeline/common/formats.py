"""Transcript formats: writers for txt/srt/vtt/json/Markdown and parsers for caption files.

Pure functions over plain dicts, so stages, exports and tests share one implementation.
A transcript is ``{"language", "duration", "source", "model", "segments": [...]}`` where
each segment is ``{"start", "end", "text", "words"?}`` and a word is
``{"start", "end", "word", "probability"}`` (faster-whisper's shape, as dicts).

Subtitle cueing obeys the usual broadcast limits (42 characters a line, 2 lines a
cue): Whisper segments are often 20 s and 200 characters long, which no player
shows legibly, so long segments are cut into several cues. Cue times are forced to
be monotonic and non-overlapping because players differ wildly in how they handle
overlaps (some stack cues, some drop them).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from typing import Any

MIN_CUE_S = 0.5  # a cue shorter than this cannot be read; extend it when the next cue leaves room
HARD_MIN_CUE_S = 0.1  # when cues collide, squeeze the earlier one down to this, never to zero
_EPS = 1e-9


# ---------------------------------------------------------------- timestamps


def fmt_timestamp(seconds: float | None) -> str:
    """``MM:SS`` below an hour, ``H:MM:SS`` from one hour: what people expect next to chapters."""
    s = _finite(seconds)
    total = int(max(0.0, s))
    h, rem = divmod(total, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def _finite(x: Any, default: float = 0.0) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _fmt_cue_time(ms: int, sep: str) -> str:
    h, rem = divmod(max(0, ms), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{milli:03d}"


# ---------------------------------------------------------------- text helpers

_WS = re.compile(r"\s+")


def _clean(text: Any) -> str:
    """One line of text: control characters dropped, whitespace collapsed."""
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in str(text or ""))
    return _WS.sub(" ", text).strip()


def _no_space_script(ch: str) -> bool:
    """CJK, kana, Thai…: scripts written without spaces between words, so joins add none."""
    if not ch:
        return False
    cp = ord(ch)
    return (
        0x2E80 <= cp <= 0x9FFF  # CJK radicals, kana, CJK unified
        or 0xF900 <= cp <= 0xFAFF
        or 0xFF00 <= cp <= 0xFFEF
        or 0x0E00 <= cp <= 0x0E7F  # Thai
        or 0x20000 <= cp <= 0x2FFFF
    )


def _join(a: str, b: str) -> str:
    if not a:
        return b
    if not b:
        return a
    if _no_space_script(a[-1]) and _no_space_script(b[0]):
        return a + b
    return a + " " + b


# ---------------------------------------------------------------- plain text


def to_txt(transcript: dict[str, Any], *, paragraph_gap_s: float = 2.0, paragraph_chars: int = 600) -> str:
    """Plain paragraphs: segments joined into running text, a new paragraph after a pause or a long run.

    Subtitle-sized fragments one per line read badly; a pause of ``paragraph_gap_s``
    (or a sentence end after ``paragraph_chars``) is a cheap, language-free proxy for
    a paragraph break.
    """
    paragraphs: list[str] = []
    cur = ""
    prev_end: float | None = None
    for seg in transcript.get("segments") or []:
        text = _clean(seg.get("text"))
        if not text:
            continue
        start = _finite(seg.get("start"))
        gap = prev_end is not None and start - prev_end >= paragraph_gap_s
        long_enough = len(cur) >= paragraph_chars and cur[-1:] in ".!?。！？…"
        if cur and (gap or long_enough):
            paragraphs.append(cur)
            cur = ""
        cur = _join(cur, text)
        prev_end = max(prev_end or 0.0, _finite(seg.get("end"), start))
    if cur:
        paragraphs.append(cur)
    return "\n\n".join(paragraphs) + ("\n" if paragraphs else "")


def to_json(transcript: dict[str, Any]) -> str:
    """Pretty JSON that keeps non-ASCII text readable (``ensure_ascii=False``)."""
    return json.dumps(transcript, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------- cueing


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
    start = _finite(seg.get("start"))
    end = max(start, _finite(seg.get("end"), start))
    toks: list[_Tok] = []
    words = [w for w in seg.get("words") or [] if isinstance(w, dict) and _clean(w.get("word"))]
    if words:
        for w in words:
            ws = min(max(_finite(w.get("start"), start), start), end)
            we = min(max(_finite(w.get("end"), ws), ws), end)
            text = _clean(w.get("word"))
            # Word timings for Chinese/Japanese come one character at a time: join those without spaces.
            glue = bool(toks) and _no_space_script(toks[-1].text[-1]) and _no_space_script(text[0])
            toks.append(_Tok(text, ws, we, glue))
        # Whisper word times can step backwards a little; keep them ordered.
        for a, b in zip(toks, toks[1:], strict=False):
            if b.start < a.start:
                b.start = a.start
            b.end = max(b.end, b.start)
    else:
        text = _clean(seg.get("text"))
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
    segs.sort(key=lambda s: _finite(s.get("start")))
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


def to_srt(transcript: dict[str, Any], max_chars: int = 42, max_lines: int = 2) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times; no escaping (SRT has none)."""
    blocks = []
    for n, c in enumerate(build_cues(transcript, max_chars, max_lines), 1):
        times = f"{_fmt_cue_time(c.start_ms, ',')} --> {_fmt_cue_time(c.end_ms, ',')}"
        blocks.append(f"{n}\n{times}\n" + "\n".join(c.lines) + "\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(transcript: dict[str, Any], max_chars: int = 42, max_lines: int = 2) -> str:
    """WebVTT: the same cues as :func:`to_srt`, ``HH:MM:SS.mmm`` times, ``& < >`` escaped as the spec needs."""
    out = ["WEBVTT", ""]
    for c in build_cues(transcript, max_chars, max_lines):
        out.append(f"{_fmt_cue_time(c.start_ms, '.')} --> {_fmt_cue_time(c.end_ms, '.')}")
        out.extend(_vtt_escape(line) for line in c.lines)
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- parsing

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
    return _clean(line)


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
        body = _join(body, x)
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
                if text.startswith(shown) and (text[len(shown)] == " " or _no_space_script(shown[-1])):
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


# ---------------------------------------------------------------- summary


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!<>#|~])")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto|file|data|javascript):[^>\s]*)>", re.IGNORECASE)
_BARE_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s`]+|\bwww\.[^\s`]+|\b(?:data|javascript|mailto):[^\s`]+",
                       re.IGNORECASE)


def _md_inline(text: Any) -> str:
    """Text from the internet (titles, feed metadata) as Markdown that renders as exactly that text.

    A title like ``![b](http://host/track.png)`` must not make a reader's browser fetch a
    tracking image, nor ``[click](…)`` become a link: every Markdown special is escaped, and
    URLs go into code spans, where GFM's autolinking (which sees through escapes) finds none.
    """
    t = _clean(text)
    out, pos = [], 0
    for m in _BARE_URL.finditer(t):
        url = _url_end(m.group(0))
        out.append(_MD_SPECIAL.sub(r"\\\1", t[pos:m.start()]))
        out.append(f"`{url}`")
        pos = m.start() + len(url)
    out.append(_MD_SPECIAL.sub(r"\\\1", t[pos:]))
    return "".join(out)


def _url_end(url: str) -> str:
    """A URL found in running text without the punctuation that closes the sentence or a bracket around it."""
    while url and (url[-1] in ".,;:!?'\"" or (url[-1] in ")]" and url.count("(") + url.count("[")
                                                < url.count(")") + url.count("]"))):
        url = url[:-1]
    return url


def _origin(url: str | None) -> str | None:
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url or "")
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme in ("http", "https") and parts.netloc else None


def md_model_text(text: Any, source_url: str | None = None) -> str:
    """LLM-written text as Markdown: images dropped, links kept only when they point at the item's own source.

    A model that read a hostile transcript may echo a beacon image or a phishing link;
    what is left renders as plain text (raw HTML and bare URLs are defanged too).
    """
    own = _origin(source_url)
    t = _clean(text)
    t = _MD_IMAGE.sub(lambda m: m.group(1), t)

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2)
        if own and _origin(url) == own:
            return f"[{label.replace(']', '')}]({url})"
        return label

    kept: list[str] = []

    def stash(m: re.Match[str]) -> str:
        kept.append(link(m))
        return f"\x00{len(kept) - 1}\x00"

    t = _MD_LINK.sub(stash, t)
    t = _MD_AUTOLINK.sub(lambda m: m.group(1), t)
    t = _BARE_URL.sub(lambda m: m.group(0) if own and _origin(m.group(0)) == own
                      else f"`{_url_end(m.group(0))}`{m.group(0)[len(_url_end(m.group(0))):]}", t)
    t = t.replace("<", "&lt;").replace(">", "&gt;")
    return re.sub("\x00(\\d+)\x00", lambda m: kept[int(m.group(1))], t)


def summary_markdown(title: str, summary: dict[str, Any], source_url: str | None = None) -> str:
    """A summary dict -> Markdown: title, TL;DR, key points, chapters with timestamps, tags.

    The title is source metadata (escaped to plain text); the rest is model-written
    (:func:`md_model_text`: no images, links only to the item's own source).
    """
    def model(text: Any) -> str:
        return md_model_text(text, source_url)

    out = [f"# {_md_inline(title) or 'Untitled'}", ""]
    tldr = model(summary.get("tldr"))
    if tldr:
        out += ["## TL;DR", "", tldr, ""]
    points = [model(p) for p in summary.get("key_points") or [] if _clean(p)]
    if points:
        out += ["## Key points", "", *[f"- {p}" for p in points], ""]
    chapters = [c for c in summary.get("chapters") or [] if isinstance(c, dict)]
    if chapters:
        chapters.sort(key=lambda c: _finite(c.get("start")))
        out += ["## Chapters", ""]
        out += [f"- [{fmt_timestamp(c.get('start'))}] {model(c.get('title')) or '—'}" for c in chapters]
        out.append("")
    tags = [_md_inline(t) for t in summary.get("tags") or [] if _clean(t)]
    if tags:
        out += ["## Tags", "", ", ".join(tags), ""]
    engine = summary.get("engine")
    if engine:
        model = summary.get("model")
        out += [f"_Summary: {engine}{f' ({model})' if model else ''}_", ""]
    return "\n".join(out)

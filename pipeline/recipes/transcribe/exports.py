"""Portable exports of one item (``--formats``): Obsidian-style Markdown, DOCX, word-level SRT/VTT, ASS karaoke.

Pure functions from the item's record (``meta.json``), transcript and summary to file content. What they show
comes from the internet (titles, captions) or a model (summaries), so it is written as text, never structure:
YAML scalars double-quoted and escaped, Markdown and Obsidian markup escaped, ASS override braces defused.
Word times are the transcript's own (Whisper's, or YouTube's inline caption times); a segment without them
gets times shared out by word length, and the files say so (a VTT ``NOTE``, an ASS comment, item meta).
"""

from __future__ import annotations

import io
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from pipeline.common.cues import Cue, srt_text, vtt_text
from pipeline.common.cues import _fmt_cue_time as _ts
from pipeline.common.formats import _md_inline, md_model_text
from pipeline.common.transcript_text import clean_text, finite, fmt_timestamp, join_text

PARAGRAPH_GAP_S = 2.0  # a pause this long starts a new paragraph (and a new timestamp)
PARAGRAPH_MAX_S = 60.0  # else a paragraph ends at a sentence end after this long
MIN_WORD_MS = 40  # a word cue shorter than this cannot be seen; lengthened when the next word leaves room
_SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
_YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be")


def time_link(url: str | None, seconds: float) -> str | None:
    """``url`` opened at ``seconds``: YouTube's ``t=`` parameter, else a ``#t=`` media fragment (W3C Media
    Fragments, which browsers honour for media files); None for a local file or a non-web URL."""
    try:
        parts = urllib.parse.urlsplit(str(url or ""))
    except ValueError:
        parts = urllib.parse.urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    t = int(max(0.0, finite(seconds)))
    host = (parts.hostname or "").lower()
    if host in _YOUTUBE_HOSTS:
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "t"]
        query.append(("t", f"{t}s" if host != "youtu.be" else str(t)))
        parts = parts._replace(query=urllib.parse.urlencode(query), fragment="")
    else:
        parts = parts._replace(fragment=f"t={t}")
    # Characters that would end a Markdown link destination early are percent-encoded.
    return urllib.parse.urlunsplit(parts).replace(" ", "%20").replace("(", "%28").replace(")", "%29") \
        .replace("<", "%3C").replace(">", "%3E")


def link_base(record: dict[str, Any]) -> str | None:
    """What timestamps open: YouTube's page (it seeks with ``t=``), else the media file behind a page when
    known (a ``#t=`` fragment seeks a file, not a page), else the source itself; None for a local file."""
    url = str(record.get("url") or record.get("source") or "")
    if time_link(url, 0) is None:
        return None
    media = str(record.get("media_url") or "")
    youtube = (urllib.parse.urlsplit(url).hostname or "").lower() in _YOUTUBE_HOSTS
    return media if not youtube and time_link(media, 0) else url


def yaml_str(value: Any) -> str:
    """A YAML double-quoted scalar that loads back as exactly ``value``'s text (``:``, ``#``, quotes, ``---``,
    newlines, non-printables); YAML 1.1 and 1.2 read it the same."""
    out = ['"']
    for ch in str(value).encode("utf-8", "surrogatepass").decode("utf-8", "replace"):
        cp = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 0x20 <= cp < 0x7F or (cp > 0xA0 and ch.isprintable() and cp not in (0x2028, 0x2029, 0xFEFF)):
            out.append(ch)
        else:
            out.append(f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}")
    return "".join(out) + '"'


def md_text(text: Any) -> str:
    """Source text as Obsidian Markdown showing exactly that text: :func:`_md_inline`'s escapes, then Obsidian's
    own markup (``%%`` comments hide text, ``$`` math, ``==`` highlights, ``^`` ids, ``&``) outside code spans."""
    src, out, i, code = _md_inline(text), [], 0, False
    while i < len(src):
        ch = src[i]
        step = 2 if ch == "\\" and not code else 1  # an escape made by _md_inline: copied as it is
        code = not code if ch == "`" else code
        out.append("\\" + ch if not code and ch in "%$=^&" else src[i : i + step])
        i += step
    return "".join(out)


def _model_md(text: Any, url: str | None) -> str:
    """Model-written text (links to the source kept) with Obsidian's hiding and math markup defused."""
    t = md_model_text(text, url)
    return t.replace("%%", "%\\%").replace("$", "\\$").replace("==", "=\\=").replace("[[", "[\\[")


def facts(record: dict[str, Any], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """The facts every document shows: title, url (web sources only), file (local ones), channel, date,
    duration, language, tags; each cleaned to one line, absent ones left out."""
    url = str(record.get("url") or record.get("source") or "")
    web = time_link(url, 0) is not None
    date = str(record.get("upload_date") or "")
    tags: list[str] = []
    for raw in [*((summary or {}).get("tags") or []), *(record.get("tags") or [])]:
        tag = re.sub(r"[^\w/-]+", "-", clean_text(raw).lower()).strip("-/")
        if tag and not tag.isdigit() and tag not in tags:
            tags.append(tag)  # Obsidian tags: no spaces, not all digits
    out = {
        "title": clean_text(record.get("title")) or "Untitled",
        "url": url if web else None,
        "file": url.replace("\\", "/").rsplit("/", 1)[-1] if url and not web else None,
        "channel": clean_text(record.get("channel") or record.get("uploader") or record.get("parent")) or None,
        "date": f"{date[:4]}-{date[4:6]}-{date[6:]}" if re.fullmatch(r"\d{8}", date) else None,
        "duration": round(finite(record.get("duration"))) or None,
        "language": clean_text(record.get("language")) or None,
        "tags": tags,
    }
    return {k: v for k, v in out.items() if v not in (None, "", [])}


def front_matter(record: dict[str, Any], summary: dict[str, Any] | None = None) -> str:
    """The YAML front matter block (``---`` … ``---``) of the Markdown note."""
    lines = ["---"]
    for key, value in facts(record, summary).items():
        if key == "tags":
            lines += ["tags:", *(f"  - {yaml_str(t)}" for t in value)]
        elif key in ("date", "duration"):
            lines.append(f"{key}: {value}")  # unquoted: a YAML date (validated digits), whole seconds
        else:
            lines.append(f"{key}: {yaml_str(value)}")
    if record.get("transcript_source"):
        lines.append(f"transcript: {yaml_str(clean_text(record['transcript_source']))}")
    return "\n".join([*lines, "---", ""])


def paragraphs(transcript: dict[str, Any]) -> list[tuple[float, str]]:
    """(start, text) paragraphs: segments run together, a new one after a pause or a long run."""
    out: list[tuple[float, str]] = []
    start, cur, prev_end = 0.0, "", None
    for seg in sorted((s for s in transcript.get("segments") or [] if isinstance(s, dict)),
                      key=lambda s: finite(s.get("start"))):
        text = clean_text(seg.get("text"))
        if not text:
            continue
        s = finite(seg.get("start"))
        long_run = s - start >= PARAGRAPH_MAX_S and cur.endswith(_SENTENCE_END)
        if cur and ((prev_end is not None and s - prev_end >= PARAGRAPH_GAP_S) or long_run
                    or s - start >= 3 * PARAGRAPH_MAX_S):
            out.append((start, cur))
            cur = ""
        start, cur = (start if cur else s), join_text(cur, text)
        prev_end = max(prev_end or 0.0, finite(seg.get("end"), s))
    if cur:
        out.append((start, cur))
    return out


def _summary_parts(summary: dict[str, Any]) -> tuple[Any, list[Any], list[dict[str, Any]]]:
    """The summary's TL;DR, key points and chapters (by start), the empty ones left out."""
    chapters = [c for c in summary.get("chapters") or [] if isinstance(c, dict)]
    return (summary.get("tldr") if clean_text(summary.get("tldr")) else None,
            [p for p in summary.get("key_points") or [] if clean_text(p)],
            sorted(chapters, key=lambda c: finite(c.get("start"))))


def _stamp_md(url: str | None, seconds: float) -> str:
    link = time_link(url, seconds)
    return f"[{fmt_timestamp(seconds)}]({link})" if link else f"**{fmt_timestamp(seconds)}**"


def obsidian_markdown(record: dict[str, Any], transcript: dict[str, Any], summary: dict[str, Any] | None) -> str:
    """An Obsidian note: YAML front matter, the summary, then the transcript with timestamps that open the
    source at that moment (plain timestamps for a local file)."""
    url, base = facts(record).get("url"), link_base(record)
    tldr, points, chapters = _summary_parts(summary or {})
    out = [front_matter(record, summary), f"# {md_text(record.get('title')) or 'Untitled'}", ""]
    if tldr or points or chapters:
        out += ["## Summary", ""]
        if tldr:
            out += [_model_md(tldr, url), ""]
        if points:
            out += [*(f"- {_model_md(p, url)}" for p in points), ""]
        if chapters:
            out += ["### Chapters", "", *(f"- {_stamp_md(base, finite(c.get('start')))} "
                                          f"{_model_md(c.get('title'), url) or '—'}" for c in chapters), ""]
    out += ["## Transcript", ""]
    for start, text in paragraphs(transcript):
        out += [f"{_stamp_md(base, start)} {md_text(text)}", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- DOCX
def _docx_stamp(paragraph: Any, base: str | None, seconds: float) -> None:
    """The timestamp as a link to the source at that time (python-docx has no API for hyperlinks, so the
    element is built by hand), or bold text when there is nothing to link to."""
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml.shared import OxmlElement, qn

    url, text = time_link(base, seconds), fmt_timestamp(seconds)
    if url is None:
        paragraph.add_run(text).bold = True
        return
    r_id = paragraph.part.relate_to(url, RELATIONSHIP_TYPE.HYPERLINK, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), r_id)
    run, props, body = OxmlElement("w:r"), OxmlElement("w:rPr"), OxmlElement("w:t")
    for tag, val in (("w:color", "0563C1"), ("w:u", "single")):
        props.append(OxmlElement(tag, attrs={qn("w:val"): val}))
    body.text = text
    run.extend((props, body))
    link.append(run)
    paragraph._p.append(link)


def docx_bytes(record: dict[str, Any], transcript: dict[str, Any], summary: dict[str, Any] | None) -> bytes:
    """A Word document: title, a table of facts, the summary, the transcript with (linked) timestamps."""
    from docx import Document

    info, (tldr, points, chapters) = facts(record, summary), _summary_parts(summary or {})
    url = link_base(record)
    doc = Document()
    doc.core_properties.title = info["title"][:255]
    doc.add_heading(info["title"], level=0)
    shown = {"url": "Source", "file": "File", "channel": "Channel", "date": "Date", "duration": "Duration",
             "language": "Language", "tags": "Tags"}
    table = doc.add_table(rows=0, cols=2)
    for key, label in ((k, v) for k, v in shown.items() if k in info):
        value = info[key]
        cells = table.add_row().cells
        cells[0].text = label
        cells[1].text = fmt_timestamp(value) if key == "duration" else ", ".join(value) if key == "tags" else str(value)
    if tldr or points or chapters:
        doc.add_heading("Summary", level=1)
        if tldr:
            doc.add_paragraph(clean_text(tldr))
        for point in points:
            doc.add_paragraph(clean_text(point), style="List Bullet")
        for c in chapters:
            p = doc.add_paragraph(style="List Bullet")
            _docx_stamp(p, url, finite(c.get("start")))
            p.add_run(" " + (clean_text(c.get("title")) or "—"))
    doc.add_heading("Transcript", level=1)
    for start, text in paragraphs(transcript):
        p = doc.add_paragraph()
        _docx_stamp(p, url, start)
        p.add_run(" " + text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


# ---------------------------------------------------------------- word times
@dataclass
class Word:
    start: float
    end: float
    text: str


@dataclass
class Line:
    """One segment's span and words, clamped so segments never overlap and words stay inside their segment."""
    start: float
    end: float
    words: list[Word]
    estimated: bool  # the transcript had no word times here: shared out by word length


def timed_lines(transcript: dict[str, Any]) -> list[Line]:
    """Every non-empty segment with word times: its own, clamped and ordered, else estimated by length."""
    segs = sorted((s for s in transcript.get("segments") or [] if isinstance(s, dict) and clean_text(s.get("text"))),
                  key=lambda s: finite(s.get("start")))
    lines: list[Line] = []
    for i, seg in enumerate(segs):
        start = max(0.0, finite(seg.get("start")))
        end = max(start, finite(seg.get("end"), start))
        if i + 1 < len(segs):
            end = max(start, min(end, finite(segs[i + 1].get("start"), end)))
        own = [w for w in seg.get("words") or [] if isinstance(w, dict) and clean_text(w.get("word"))]
        words: list[Word] = []
        for w in own:
            ws = min(max(finite(w.get("start"), start), words[-1].start if words else start), end)
            words.append(Word(ws, min(max(finite(w.get("end"), ws), ws), end), clean_text(w.get("word"))))
        if not words:
            parts = clean_text(seg.get("text")).split(" ")
            total, pos = sum(len(p) for p in parts), 0
            for p in parts:
                a = start + (end - start) * pos / total
                pos += len(p)
                words.append(Word(a, start + (end - start) * pos / total, p))
        lines.append(Line(start, end, words, estimated=not own))
    return lines


def estimated_note(lines: list[Line]) -> str | None:
    """What the files say when some word times are estimates, or None when all came with the transcript."""
    n = sum(1 for ln in lines if ln.estimated)
    return f"word times estimated by word length for {n} of {len(lines)} segments" if n else None


def _word_cues(lines: list[Line]) -> list[Cue]:
    """One cue per word (integer ms): monotonic, never overlapping, never empty."""
    words = [w for ln in lines for w in ln.words]
    cues: list[Cue] = []
    cursor = 0
    for i, w in enumerate(words):
        start = max(round(w.start * 1000), cursor)
        end = max(round(w.end * 1000), start + MIN_WORD_MS)
        if i + 1 < len(words):
            end = min(end, max(round(words[i + 1].start * 1000), start + 1))
        cues.append(Cue(start, end, [w.text]))
        cursor = end
    return cues


def words_srt(transcript: dict[str, Any]) -> str:
    """SubRip with one cue per word (SRT has no comments: an estimate is said in the item's meta)."""
    return srt_text(_word_cues(timed_lines(transcript)))


def words_vtt(transcript: dict[str, Any]) -> str:
    """WebVTT with one cue per word; a ``NOTE`` says when word times were estimated."""
    lines = timed_lines(transcript)
    return vtt_text(_word_cues(lines), estimated_note(lines))


def _ass_time(cs: int) -> str:
    """``H:MM:SS.cc``, ASS's own clock (centiseconds, hours unpadded)."""
    return f"{max(0, cs) // 360_000}:{_ts(max(0, cs) * 10 % 3_600_000, '.')[3:-1]}"


def _ass_escape(text: str) -> str:
    # "{…}" is an override block and "\N" a break in ASS: spoken text stays literal.
    return text.replace("\\", "/").replace("{", "(").replace("}", ")")


def _chunks(words: list[Word], max_chars: int, max_lines: int) -> list[list[list[Word]]]:
    """Words cut into events of at most ``max_lines`` lines of at most ``max_chars`` (a longer word alone)."""
    lines: list[list[Word]] = []
    width = 0
    for w in words:
        if lines and width + 1 + len(w.text) <= max_chars:
            lines[-1].append(w)
            width += 1 + len(w.text)
        else:
            lines.append([w])
            width = len(w.text)
    return [lines[i : i + max_lines] for i in range(0, len(lines), max_lines)]


def ass_karaoke(transcript: dict[str, Any], title: str = "", *, width: int = 1920, height: int = 1080,
                max_chars: int = 42, max_lines: int = 2) -> str:
    """An ASS file for burn-in (``ffmpeg -vf subtitles=transcript.ass``) whose words light up as spoken.

    Each ``{\\kN}`` holds a word for N centiseconds, from its start to the next word's (a pause before the
    first word is an empty ``{\\kN}``); times are rounded once, cumulatively, so the ``\\k`` of a segment's
    events add up to exactly its duration and each event's to its own. ``PlayResX/Y`` are set (libass would
    otherwise size fonts on a 384×288 canvas) and libass scales them to the video.
    """
    lines = timed_lines(transcript)
    size = round(height * 0.06)
    head = ["[Script Info]", f"Title: {_ass_escape(clean_text(title))}", "ScriptType: v4.00+",
            f"PlayResX: {width}", f"PlayResY: {height}", "WrapStyle: 2", "ScaledBorderAndShadow: yes"]
    if note := estimated_note(lines):
        head.append(f"; {note}")
    head += ["", "[V4+ Styles]",
             "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
             "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, "
             "Alignment, MarginL, MarginR, MarginV, Encoding",
             # \k: a word turns from SecondaryColour (white, still to come) to PrimaryColour (yellow, spoken).
             f"Style: Default,DejaVu Sans,{size},&H0000FFFF,&H00FFFFFF,&H00000000,&H80000000,-1,0,0,0,100,100,0,0,"
             f"1,{max(1, size // 16)},0,2,{width // 20},{width // 20},{height // 18},1",
             "", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]
    events: list[str] = []
    for ln in lines:
        groups = _chunks(ln.words, max_chars, max_lines)
        for g, group in enumerate(groups):
            ev_start = ln.start if g == 0 else group[0][0].start
            ev_end = groups[g + 1][0][0].start if g + 1 < len(groups) else ln.end
            flat = [w for row in group for w in row]
            marks = [round(t * 100) for t in (ev_start, *(w.start for w in flat), ev_end)]  # centiseconds
            for k in range(1, len(marks)):
                marks[k] = min(max(marks[k], marks[k - 1]), marks[-1])  # ordered, inside the event
            text = f"{{\\k{marks[1] - marks[0]}}}" if marks[1] > marks[0] else ""
            i = 0
            for r, row in enumerate(group):
                for j, w in enumerate(row):
                    sep = "\\N" if r and not j else " " if i else ""
                    text += f"{sep}{{\\k{marks[i + 2] - marks[i + 1]}}}{_ass_escape(w.text)}"
                    i += 1
            events.append(f"Dialogue: 0,{_ass_time(marks[0])},{_ass_time(marks[-1])},Default,,0,0,0,,{text}")
    return "\n".join(head + events) + "\n"

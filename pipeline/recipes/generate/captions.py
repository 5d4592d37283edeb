"""Caption styles for the burnt-in subtitles: presets, the ASS document, and word-by-word highlighting.

A preset (``caption_style``: classic, boxed, bold, karaoke) sets every part of the look; each
``caption_*`` option then overrides its own part (:func:`resolve`). The colour options always
apply, since their defaults are values, not "unset". Sizes are given for a 1080 px short side
and scaled with it; an explicit ``caption_size`` is in pixels of the frame (the ASS canvas is
the frame: ``PlayResX/PlayResY`` are the video size, else libass scales from 384×288, see NOTES).

ASS colours are ``&HAABBGGRR`` (alpha first, 00 opaque, then blue, green, red): ``#FFD400``
is ``&H0000D4FF``. A box is ``BorderStyle 3``: libass fills each line's box with the
*outline* colour, padded by the ``Outline`` width, so ``caption_outline`` is the box colour too.

Word by word (karaoke, or ``caption_words``): one Dialogue line per word, each holding the
whole cue with the spoken word recoloured by a ``{\\1c}`` override, from that word's start to
the next one's. Not ASS karaoke tags: ``\\k`` turns a syllable from SecondaryColour to
PrimaryColour when it starts and leaves it so, which lights the cue cumulatively (every word
said so far stays lit); only one colour change per event shows the *current* word alone.
The lines of one cue abut exactly (same centisecond), so libass never stacks them as
colliding events, and recolouring does not change glyph metrics, so the text never moves.

Word times come from narration.json: edge-tts WordBoundary offsets, or espeak-ng's estimate
(in proportion to characters, with pauses after punctuation, over the scene's speech span).
A cue that has no timed words is shared out by characters here in the same way.

Cost (libass alone, 1,800 frames of 1080×1920, ffmpeg ``-benchmark`` user time on a loaded
2-core machine): no subtitles 0.6–1.2 s, classic 7.6–9.2 s, boxed 6.8–8.2 s, karaoke
7.7–9.9 s (210 events instead of 30): word by word costs about what classic does.
"""

from __future__ import annotations

import bisect
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from PIL import ImageFont

from pipeline.common.cues import Cue, build_cues
from pipeline.common.transcript_text import clean_text
from pipeline.recipes.generate.options import GenerateOptions
from pipeline.recipes.generate.video import font_path

MAX_CHARS = 42  # the broadcast line length; the ASS is cut shorter when the font would not fit
MIN_CHARS = 8
DEFAULT_FONT = "DejaVu Sans"
FONTS_DIR = "fonts"  # workdir folder holding a caption_font given as a file, for libass's fontsdir
BOX_ALPHA = 0x40  # the box is 75 % opaque: the picture shows through a little
SHADOW = "&H80000000"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")

# Parts of each preset at a 1080 px short side: size, outline (box padding when boxed), shadow.
PRESETS: dict[str, dict[str, Any]] = {
    "classic": {"size": 64, "outline": 4, "shadow": 2, "box": False, "words": False, "upper": False},
    "boxed": {"size": 60, "outline": 12, "shadow": 0, "box": True, "words": False, "upper": False},
    "bold": {"size": 84, "outline": 7, "shadow": 3, "box": False, "words": False, "upper": True},
    "karaoke": {"size": 72, "outline": 5, "shadow": 2, "box": False, "words": True, "upper": False},
}
ALIGNMENT = {"bottom": 2, "middle": 5, "top": 8}  # numpad layout, centred


@dataclass(frozen=True)
class CaptionStyle:
    """Everything the ASS needs, in frame pixels."""

    preset: str
    font: str  # family name written into the ASS
    font_file: Path  # the face measured for line lengths (and copied for libass when it was a path)
    bold: bool
    size: int
    outline: int
    shadow: int
    box: bool
    words: bool
    upper: bool
    position: str
    lines: int
    color: str  # #RRGGBB
    highlight: str
    outline_color: str
    margin_lr: int
    margin_v: int
    font_from_path: bool = False
    font_note: str | None = None  # why the requested font was not used

    def key(self) -> dict[str, Any]:
        """The parts that change the ASS (for the stage's fingerprint)."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["font_file"] = str(self.font_file)
        return d


def ass_colour(rgb: str, alpha: int = 0) -> str:
    """``#RRGGBB`` (and an alpha, 0 opaque … 255 clear) → ASS ``&HAABBGGRR``."""
    h = rgb.lstrip("#")
    if not re.fullmatch(r"[0-9A-Fa-f]{6}", h):
        raise ValueError(f"colour must be #RRGGBB, not {rgb!r}")
    r, g, b = h[0:2], h[2:4], h[4:6]
    return f"&H{alpha:02X}{b}{g}{r}".upper()


@cache
def _fc_match(family: str, bold: bool) -> tuple[str, str] | None:
    """fontconfig's (family, file) for a family name, or None without fc-match."""
    exe = shutil.which("fc-match")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-f", "%{family}|%{file}", f"{family}:{'bold' if bold else 'regular'}"],
                             capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fam, _, file = out.partition("|")
    return (fam.split(",")[0].strip(), file.strip()) if file.strip() else None


def _font(name: str | None, bold: bool) -> tuple[str, Path, bool, bool, str | None]:
    """(ASS family, file to measure, bold, from a path, note): the requested font, else DejaVu with a reason."""
    default = (DEFAULT_FONT, font_path(bold=bold), bold, False)
    if not name:
        return (*default, None)
    p = Path(name).expanduser()
    if p.suffix.lower() in FONT_SUFFIXES or "/" in name:
        try:
            family, style = ImageFont.truetype(str(p), 20).getname()
        except OSError as exc:
            return (*default, f"caption_font {name!r} cannot be read ({exc}); using {DEFAULT_FONT}")
        return str(family), p, "bold" in str(style).lower(), True, None
    found = _fc_match(name, bold)
    if found is None:
        return name, font_path(bold=bold), bold, False, f"no fc-match: {name!r} measured with {DEFAULT_FONT}"
    if found[0].lower() != name.lower():
        return (*default, f"caption_font {name!r} is not installed (fontconfig offers {found[0]!r}); "
                          f"using {DEFAULT_FONT}")
    return name, Path(found[1]), bold, False, None


def resolve(opts: GenerateOptions, width: int, height: int) -> CaptionStyle:
    """The preset named by ``caption_style`` with every ``caption_*`` option laid over it."""
    name = opts.caption_style if opts.caption_style in PRESETS else "classic"
    pre = PRESETS[name]
    k = min(width, height) / 1080
    size = max(10, round(pre["size"] * k))
    if opts.caption_size:
        size = max(6, int(opts.caption_size))
    box = pre["box"] if opts.caption_box is None else bool(opts.caption_box)
    if box == pre["box"]:
        outline = round(pre["outline"] * size / pre["size"])
    else:  # the box's padding is a fifth of the size; a plain outline a sixteenth
        outline = round(size * (0.2 if box else 1 / 16))
    shadow = round(pre["shadow"] * size / pre["size"]) if not box else 0
    family, file, bold, from_path, note = _font(opts.caption_font, True)
    portrait = height > width
    margin_v = {"bottom": round(height * (0.14 if portrait else 0.07)),  # clear of Shorts/Reels buttons
                "top": round(height * (0.10 if portrait else 0.07)), "middle": 0}[opts.caption_position]
    return CaptionStyle(
        preset=name, font=family, font_file=file, bold=bold, size=size, outline=max(1, outline),
        shadow=max(0, shadow), box=box, words=pre["words"] if opts.caption_words is None else bool(opts.caption_words),
        upper=pre["upper"], position=opts.caption_position, lines=max(1, int(opts.caption_lines)),
        color=opts.caption_color, highlight=opts.caption_highlight, outline_color=opts.caption_outline,
        margin_lr=round(width * 0.06), margin_v=margin_v, font_from_path=from_path, font_note=note)


def style_line(st: CaptionStyle) -> str:
    """The ``Style: Default`` line (V4+ field order)."""
    primary = ass_colour(st.color)
    secondary = ass_colour(st.highlight)
    outline = ass_colour(st.outline_color, BOX_ALPHA if st.box else 0)
    return (f"Style: Default,{st.font},{st.size},{primary},{secondary},{outline},{SHADOW},{-1 if st.bold else 0},"
            f"0,0,0,100,100,0,0,{3 if st.box else 1},{st.outline},{st.shadow},{ALIGNMENT[st.position]},"
            f"{st.margin_lr},{st.margin_lr},{st.margin_v},1")


# ---------------------------------------------------------------- cues and their words


def styled_transcript(transcript: dict[str, Any], st: CaptionStyle) -> dict[str, Any]:
    """The transcript as it is drawn (upper case for the bold preset)."""
    if not st.upper:
        return transcript
    segs = []
    for s in transcript.get("segments") or []:
        seg = dict(s, text=str(s.get("text") or "").upper())
        if s.get("words"):
            seg["words"] = [dict(w, word=str(w.get("word") or "").upper()) for w in s["words"]]
        segs.append(seg)
    return {**transcript, "segments": segs}


def line_chars(transcript: dict[str, Any], width: int, st: CaptionStyle) -> int:
    """Longest line length (≤ 42) whose cues all fit the frame width in the caption font."""
    font = ImageFont.truetype(str(st.font_file), st.size)
    room = width - 2 * st.margin_lr - 2 * st.outline
    n = min(MAX_CHARS, max(MIN_CHARS, int(room / (0.6 * st.size))))
    while n > MIN_CHARS:
        cues = build_cues(transcript, n, st.lines)
        if all(font.getlength(line) <= room for c in cues for line in c.lines):
            return n
        n -= 1
    return n


def _nonspace(text: str) -> int:
    return len(text.replace(" ", ""))


def _timed_tokens(transcript: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Every word in cue order with its times; a segment without words is shared out by characters."""
    out: list[tuple[str, float, float]] = []
    segs = sorted((s for s in transcript.get("segments") or [] if isinstance(s, dict)),
                  key=lambda s: float(s.get("start") or 0.0))
    for seg in segs:
        words = [w for w in seg.get("words") or [] if clean_text(w.get("word"))]
        if words:
            out += [(clean_text(w["word"]), float(w["start"]), float(w["end"])) for w in words]
            continue
        out += _share([t for t in clean_text(seg.get("text")).split(" ") if t],
                      float(seg.get("start") or 0.0), float(seg.get("end") or 0.0))
    return out


def _share(tokens: list[str], start: float, end: float) -> list[tuple[str, float, float]]:
    total = sum(len(t) for t in tokens) or 1
    out, pos = [], 0
    for t in tokens:
        a = start + (end - start) * pos / total
        pos += len(t)
        out.append((t, a, start + (end - start) * pos / total))
    return out


def cue_words(cues: list[Cue], transcript: dict[str, Any]) -> list[list[tuple[int, float]]]:
    """For each cue: (token index within the cue, start s) for every token on its lines.

    Cues hold the transcript's words in order, but not always whole (a word longer than a line
    is cut into glued pieces) nor one token each, so tokens are matched to words by their
    position in the run of non-space characters, and a piece starts part-way through its word.
    A cue whose match lands more than half a second off its own start (the texts disagree) is
    shared out by characters over its own span instead.
    """
    stream = _timed_tokens(transcript)
    offsets, total = [], 0
    for text, _, _ in stream:
        offsets.append(total)
        total += _nonspace(text)
    out, g = [], 0
    for c in cues:
        tokens = " ".join(c.lines).split()
        starts = []
        for tok in tokens:
            if g >= total:
                break
            k = bisect.bisect_right(offsets, g) - 1
            text, a, b = stream[k]
            starts.append(a + (b - a) * (g - offsets[k]) / max(1, _nonspace(text)))
            g += len(tok)
        if len(starts) == len(tokens) and abs(starts[0] - c.start_ms / 1000) <= 0.5:
            out.append(list(enumerate(starts)))
        else:
            shared = _share(tokens, c.start_ms / 1000, c.end_ms / 1000)
            out.append([(i, a) for i, (_, a, _) in enumerate(shared)])
    return out


# ---------------------------------------------------------------- the document


def ass_time(ms: int) -> str:
    """``H:MM:SS.cc``, floored: monotonic, so non-overlapping cues stay non-overlapping."""
    cs = max(0, ms) // 10
    h, rem = divmod(cs, 360_000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}"


def ass_escape(line: str) -> str:
    """Narration text kept literal: ``{…}`` is an override block and ``\\N`` a break in ASS."""
    return line.replace("\\", "/").replace("{", "(").replace("}", ")")


def _text(lines: list[str], lit: int | None, hl: str) -> str:
    out, k = [], 0
    for line in lines:
        toks = []
        for tok in line.split(" "):
            if not tok:
                continue
            esc = ass_escape(tok)
            toks.append(f"{{\\1c{hl}}}{esc}{{\\r}}" if k == lit else esc)
            k += 1
        out.append(" ".join(toks))
    return "\\N".join(out)


def events(cues: list[Cue], transcript: dict[str, Any], st: CaptionStyle) -> list[str]:
    """Dialogue lines: one per cue, or one per spoken word with that word lit."""
    if not st.words:
        return [f"Dialogue: 0,{ass_time(c.start_ms)},{ass_time(c.end_ms)},Default,,0,0,0,,{_text(c.lines, None, '')}"
                for c in cues]
    hl = "&H" + ass_colour(st.highlight)[4:] + "&"  # \1c takes &HBBGGRR& (no alpha byte)
    out = []
    for c, words in zip(cues, cue_words(cues, transcript), strict=True):
        c0, c1 = c.start_ms // 10, c.end_ms // 10  # centiseconds, as ASS stores them
        marks = [(i, min(max(c0, int(round(a * 100))), c1)) for i, a in words]
        marks[0] = (marks[0][0], c0)  # the cue shows with its first word lit
        for n, (i, a) in enumerate(marks):
            b = marks[n + 1][1] if n + 1 < len(marks) else c1
            if b <= a:
                continue  # a word shorter than a centisecond: the next one takes over
            out.append(f"Dialogue: 0,{ass_time(a * 10)},{ass_time(b * 10)},Default,,0,0,0,,{_text(c.lines, i, hl)}")
    return out


def to_ass(transcript: dict[str, Any], width: int, height: int, st: CaptionStyle, key: str = "") -> tuple[str, int]:
    """The ASS document and the line length used."""
    shown = styled_transcript(transcript, st)
    chars = line_chars(shown, width, st)
    head = [
        "[Script Info]",
        f"; tubemill-key: {key}",
        f"; tubemill-caption-style: {st.preset}",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",  # lines are cut here, measured with the real font; libass wraps only as a safety net
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: TV.709",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        style_line(st),
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    cues = build_cues(shown, chars, st.lines)
    return "\n".join(head + events(cues, shown, st)) + "\n", chars


def install_font(st: CaptionStyle, workdir: Path) -> CaptionStyle:
    """A font given as a file is copied into ``<workdir>/fonts`` (render's libass ``fontsdir``).

    The bundled DejaVu faces go with it, so that folder alone serves any later style of the item.
    """
    if not st.font_from_path:
        return st
    folder = workdir / FONTS_DIR
    folder.mkdir(exist_ok=True)
    for src in (st.font_file, font_path(bold=True), font_path(bold=False)):
        dest = folder / src.name
        if not dest.exists() or dest.stat().st_size != src.stat().st_size:
            shutil.copyfile(src, dest)
    return replace(st, font_file=folder / st.font_file.name)


def fonts_dir(workdir: Path) -> Path:
    """The folder libass should load fonts from for this item: its own fonts, else the bundled DejaVu."""
    own = Path(workdir) / FONTS_DIR
    return own if own.is_dir() and any(own.iterdir()) else font_path(bold=True).parent

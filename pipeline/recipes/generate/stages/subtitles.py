"""subtitles: ``narration.json`` word timings → ``subtitles.srt`` (for upload) and ``subtitles.ass`` (burn-in).

Cueing is :func:`pipeline.common.formats.build_cues` (≤ 42 characters a line, ≤ 2 lines a cue,
monotonic, never overlapping). Words are first grouped into phrases at sentence ends,
pauses and scene changes, so a cue never straddles two sentences or two pictures.
Without word timings (an engine that gives none) each scene's narration is shared over
the scene's time by characters, which build_cues does for segments without words.

The SRT keeps the broadcast 42-character lines: players draw it at their own size.
The ASS is drawn by us, on the video: ``PlayResX/PlayResY`` equal the video size
(otherwise libass scales sizes from a 384×288 canvas, see NOTES), the style is 64 px
DejaVu Sans Bold at 1080 px (scaled with the short side) with an outline, above the
bottom UI band, and its lines are cut shorter when 42 characters of that font would
not fit the frame width (≈ 22 on a 1080 px wide vertical video). Every ASS line is
measured with the real font, so nothing is wrapped again or cropped by libass.

Idempotent: both files present and the ASS carrying the fingerprint of its inputs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from PIL import ImageFont

from pipeline import errors
from pipeline.common.formats import build_cues, to_srt
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.video import NARRATION, PLAN, font_path, plan_size, read_json
from state.storage import atomic_write_bytes

SRT = "subtitles.srt"
ASS = "subtitles.ass"
MAX_CHARS = 42
MAX_LINES = 2
PAUSE_S = 0.6  # a silence this long starts a new phrase
CUT_SLACK_S = 0.05
SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
FONT_NAME = "DejaVu Sans"


def phrases(words: list[dict[str, Any]], breaks: list[float] | None = None) -> list[dict[str, Any]]:
    """Words → transcript segments (with ``words``) cut at sentence ends, pauses and the ``breaks`` times."""
    cuts = sorted(b for b in (breaks or []) if b > 0)
    segs: list[dict[str, Any]] = []
    cur: list[dict[str, Any]] = []

    def flush() -> None:
        if cur:
            segs.append({"start": cur[0]["start"], "end": cur[-1]["end"],
                         "text": " ".join(w["word"] for w in cur), "words": list(cur)})
            cur.clear()

    for w in words:
        text = " ".join(str(w.get("text") or w.get("word") or "").split())
        if not text:
            continue
        try:
            start, end = float(w["start"]), float(w["end"])
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.PermanentError(f"narration.json has a word without times: {w!r}") from exc
        word = {"start": start, "end": max(start, end), "word": text}
        if cur:
            # A cut within CUT_SLACK_S of a word's start counts as that word's (rounded times).
            crossed = any(cur[-1]["start"] + CUT_SLACK_S < c <= start + CUT_SLACK_S for c in cuts)
            if start - cur[-1]["end"] >= PAUSE_S or crossed:
                flush()
        cur.append(word)
        if text.endswith(SENTENCE_END):
            flush()
    flush()
    return segs


def transcript_from(narration: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """A formats-style transcript: timed words when narration has them, else scene texts over scene times."""
    scenes = [s for s in narration.get("scenes") or [] if isinstance(s, dict)]
    words = [w for w in narration.get("words") or [] if isinstance(w, dict)]
    if words:
        return {"segments": phrases(words, [float(s.get("start") or 0.0) for s in scenes])}
    texts = {int(s.get("index", k)): str(s.get("narration") or "")
             for k, s in enumerate(plan.get("scenes") or [], 1) if isinstance(s, dict)}
    segs = [{"start": float(s.get("start") or 0.0), "end": float(s.get("end") or 0.0),
             "text": texts.get(int(s.get("index", k)), "")} for k, s in enumerate(scenes, 1)]
    return {"segments": [s for s in segs if s["text"].strip() and s["end"] > s["start"]]}


# ---------------------------------------------------------------- ASS


def ass_style(width: int, height: int) -> dict[str, int]:
    """Sizes in video pixels: 64 px text, outline and margins at 1080 px, scaled with the short side."""
    k = min(width, height) / 1080
    portrait = height > width
    return {
        "size": max(10, round(64 * k)),
        "outline": max(1, round(4 * k)),
        "shadow": max(0, round(2 * k)),
        "margin_lr": round(width * 0.06),
        # Vertical videos: keep clear of the Shorts/Reels buttons and caption band at the bottom.
        "margin_v": round(height * (0.14 if portrait else 0.07)),
    }


def _ass_time(ms: int) -> str:
    cs = max(0, ms) // 10  # floor: monotonic, so non-overlapping cues stay non-overlapping
    h, rem = divmod(cs, 360_000)
    m, rem = divmod(rem, 6000)
    s, c = divmod(rem, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}"


def _ass_escape(line: str) -> str:
    # "{…}" is an override block and "\N" a break in ASS: keep narration text literal.
    return line.replace("\\", "/").replace("{", "(").replace("}", ")")


def ass_chars(transcript: dict[str, Any], width: int, style: dict[str, int]) -> int:
    """Longest line length (≤ 42) whose cues all fit the frame width in the burn-in font."""
    font = ImageFont.truetype(str(font_path(bold=True)), style["size"])
    room = width - 2 * style["margin_lr"] - 2 * style["outline"]
    n = min(MAX_CHARS, max(8, int(room / (0.6 * style["size"]))))
    while n > 8:
        cues = build_cues(transcript, n, MAX_LINES)
        if all(font.getlength(line) <= room for c in cues for line in c.lines):
            return n
        n -= 1
    return n


def to_ass(transcript: dict[str, Any], width: int, height: int, key: str = "") -> tuple[str, int]:
    """The ASS document and the line length used."""
    st = ass_style(width, height)
    chars = ass_chars(transcript, width, st)
    head = [
        "[Script Info]",
        f"; tubemill-key: {key}",
        "ScriptType: v4.00+",
        f"PlayResX: {width}",
        f"PlayResY: {height}",
        "WrapStyle: 0",
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: TV.709",
        "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, "
        "Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, "
        "MarginR, MarginV, Encoding",
        f"Style: Default,{FONT_NAME},{st['size']},&H00FFFFFF,&H000000FF,&H00000000,&H80000000,-1,0,0,0,100,100,0,0,"
        f"1,{st['outline']},{st['shadow']},2,{st['margin_lr']},{st['margin_lr']},{st['margin_v']},1",
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = [f"Dialogue: 0,{_ass_time(c.start_ms)},{_ass_time(c.end_ms)},Default,,0,0,0,,"
              + "\\N".join(_ass_escape(x) for x in c.lines)
              for c in build_cues(transcript, chars, MAX_LINES)]
    return "\n".join(head + events) + "\n", chars


def _key(narration: dict[str, Any], plan: dict[str, Any], size: tuple[int, int]) -> str:
    basis = {"words": narration.get("words"), "scenes": narration.get("scenes"), "size": size,
             "texts": [s.get("narration") for s in plan.get("scenes") or [] if isinstance(s, dict)], "v": 1}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _existing_key(ctx: StageContext) -> str | None:
    srt, ass = ctx.path(SRT), ctx.path(ASS)
    if not (srt.exists() and ass.exists()):
        return None
    with ass.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("; tubemill-key:"):
                return line.split(":", 1)[1].strip()
            if line.startswith("[V4+ Styles]"):
                break
    return None


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    plan = read_json(ctx.path(PLAN), "plan")
    narration = read_json(ctx.path(NARRATION), "narrate")
    size = plan_size(plan)
    key = _key(narration, plan, size)
    artifacts = {"srt": str(ctx.path(SRT)), "ass": str(ctx.path(ASS))}
    if _existing_key(ctx) == key:
        return StageResult(artifacts=artifacts, meta={"subtitles_reused": True})
    transcript = transcript_from(narration, plan)
    srt = to_srt(transcript, MAX_CHARS, MAX_LINES)
    ass, chars = to_ass(transcript, *size, key=key)
    atomic_write_bytes(ctx.path(SRT), srt.encode("utf-8"))
    atomic_write_bytes(ctx.path(ASS), ass.encode("utf-8"))  # last: its key marks the pair complete
    ctx.progress(1.0)
    cues = len(build_cues(transcript, MAX_CHARS, MAX_LINES))
    return StageResult(artifacts=artifacts, meta={"cues": cues, "ass_line_chars": chars,
                                                  "word_timed": bool(narration.get("words"))})


register(Stage("subtitles", run, resource="cpu", doc="narration.json → subtitles.srt + subtitles.ass"))

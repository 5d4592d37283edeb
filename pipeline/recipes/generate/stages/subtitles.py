"""subtitles: ``narration.json`` word timings → ``subtitles.srt`` (for upload) and ``subtitles.ass`` (burn-in).

Cueing is :func:`pipeline.common.formats.build_cues` (≤ 42 characters a line, ≤ 2 lines a cue,
monotonic, never overlapping). Words are first grouped into phrases at sentence ends,
pauses and scene changes, so a cue never straddles two sentences or two pictures.
Without word timings (an engine that gives none) each scene's narration is shared over
the scene's time by characters, which build_cues does for segments without words.

The SRT keeps the broadcast 42-character, 2-line cues whatever the caption style: players
draw it at their own size. The ASS is drawn by us, on the video, in the style the
``caption_*`` options choose (:mod:`pipeline.recipes.generate.captions`: presets, colours,
box, position, line count, word-by-word highlight); its lines are cut shorter when 42
characters of the caption font would not fit the frame width, measured with the real font.

edge-tts reports words without punctuation (Microsoft's WordBoundary events carry the bare
word), which would also hide sentence ends from the phrasing: words are matched back to the
scene's script first (:func:`restore_punctuation`), so both files read like the script.

Idempotent: both files present and the ASS carrying the fingerprint of its inputs (and of the style).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pipeline import errors
from pipeline.common.formats import build_cues, to_srt
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate import captions
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.video import NARRATION, PLAN, plan_size, read_json
from state.storage import atomic_write_bytes

SRT = "subtitles.srt"
ASS = "subtitles.ass"
MAX_CHARS = 42
MAX_LINES = 2
PAUSE_S = 0.6  # a silence this long starts a new phrase
CUT_SLACK_S = 0.05
SENTENCE_END = (".", "!", "?", "…", "。", "！", "？")
LOOKAHEAD = 4  # script tokens searched for a TTS word before it is kept as spoken


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
    words = restore_punctuation([w for w in narration.get("words") or [] if isinstance(w, dict)], plan)
    if words:
        return {"segments": phrases(words, [float(s.get("start") or 0.0) for s in scenes])}
    texts = {int(s.get("index", k)): str(s.get("narration") or "")
             for k, s in enumerate(plan.get("scenes") or [], 1) if isinstance(s, dict)}
    segs = [{"start": float(s.get("start") or 0.0), "end": float(s.get("end") or 0.0),
             "text": texts.get(int(s.get("index", k)), "")} for k, s in enumerate(scenes, 1)]
    return {"segments": [s for s in segs if s["text"].strip() and s["end"] > s["start"]]}


# ---------------------------------------------------------------- edge-tts words → the script's words


def _norm(token: str) -> str:
    return re.sub(r"[\W_]+", "", token.casefold())


def restore_punctuation(words: list[dict[str, Any]], plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Words with the script's spelling and punctuation where they match it (edge-tts drops punctuation).

    Each word is matched, in order, against its scene's narration tokens, looking a few tokens
    ahead so a word the voice said differently ("100" spoken as "one hundred") keeps the spoken
    form without losing the place. espeak-ng's words are the script's tokens already: a no-op.
    """
    texts = {int(s.get("index", k)): str(s.get("narration") or "").split()
             for k, s in enumerate(plan.get("scenes") or [], 1) if isinstance(s, dict)}
    pos: dict[int, int] = {}
    out = []
    for w in words:
        scene = w.get("scene")
        sc = int(scene) if isinstance(scene, int | float) else None
        toks = texts.get(sc) if sc is not None else None
        text = str(w.get("text") or w.get("word") or "")
        if sc is not None and toks and _norm(text):
            p = pos.get(sc, 0)
            for q in range(p, min(p + LOOKAHEAD, len(toks))):
                if _norm(toks[q]) == _norm(text):
                    text, pos[sc] = toks[q], q + 1
                    break
        out.append({**w, "text": text})
    return out


def word_timing(narration: dict[str, Any]) -> str:
    """Where the word times came from: "measured" (edge-tts boundaries), "estimated" (espeak-ng), "mixed", "none"."""
    if not narration.get("words"):
        return "none"
    kinds = {"measured" if s.get("engine") == "edge-tts" else "estimated"
             for s in narration.get("scenes") or [] if isinstance(s, dict) and s.get("engine") != "silence"}
    if not kinds:  # scenes without an engine: the document's own
        kinds = {"measured" if narration.get("engine") == "edge-tts" else "estimated"}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _key(narration: dict[str, Any], plan: dict[str, Any], size: tuple[int, int],
         style: captions.CaptionStyle) -> str:
    basis = {"words": narration.get("words"), "scenes": narration.get("scenes"), "size": size,
             "texts": [s.get("narration") for s in plan.get("scenes") or [] if isinstance(s, dict)],
             "style": style.key(), "v": 2}
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
    style = captions.resolve(options_of(ctx).for_item(item), *size)
    key = _key(narration, plan, size, style)
    artifacts = {"srt": str(ctx.path(SRT)), "ass": str(ctx.path(ASS))}
    if _existing_key(ctx) == key:
        return StageResult(artifacts=artifacts, meta={"subtitles_reused": True})
    style = captions.install_font(style, ctx.workdir)
    transcript = transcript_from(narration, plan)
    srt = to_srt(transcript, MAX_CHARS, MAX_LINES)  # players draw the SRT: broadcast lines, whatever the style
    ass, chars = captions.to_ass(transcript, *size, style, key=key)
    atomic_write_bytes(ctx.path(SRT), srt.encode("utf-8"))
    atomic_write_bytes(ctx.path(ASS), ass.encode("utf-8"))  # last: its key marks the pair complete
    ctx.progress(1.0)
    cues = len(build_cues(transcript, MAX_CHARS, MAX_LINES))
    meta: dict[str, Any] = {"cues": cues, "ass_line_chars": chars, "word_timed": bool(narration.get("words")),
                            "caption_style": style.preset, "caption_words": style.words}
    meta["word_timing"] = word_timing(narration)
    if style.font_note:
        meta["caption_font_fallback"] = style.font_note
    return StageResult(artifacts=artifacts, meta=meta)


register(Stage("subtitles", run, resource="cpu", doc="narration.json → subtitles.srt + subtitles.ass"))

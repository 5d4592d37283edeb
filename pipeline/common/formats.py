"""Transcript formats: writers for txt/srt/vtt/json/Markdown and parsers for caption files.

Pure functions over plain dicts, so stages, exports and tests share one implementation.
A transcript is ``{"language", "duration", "source", "model", "segments": [...]}`` where
each segment is ``{"start", "end", "text", "words"?}`` and a word is
``{"start", "end", "word", "probability"}`` (faster-whisper's shape, as dicts).

This module is the one place callers import formats from; it holds the plain-text and
JSON writers and re-exports the rest, which live by job: :mod:`~pipeline.common.cues`
(cueing, SRT and WebVTT), :mod:`~pipeline.common.caption_parse` (reading caption files),
:mod:`~pipeline.common.summary_md` (summaries as Markdown) and
:mod:`~pipeline.common.transcript_text` (the text and time primitives they share).
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.common.caption_parse import parse_srt, parse_vtt
from pipeline.common.cues import HARD_MIN_CUE_S, MIN_CUE_S, Cue, build_cues, to_srt, to_vtt
from pipeline.common.summary_md import _md_inline as _md_inline  # the app's views escape titles with it
from pipeline.common.summary_md import md_model_text, summary_markdown
from pipeline.common.transcript_text import clean_text, finite, fmt_timestamp, join_text

__all__ = [
    "HARD_MIN_CUE_S", "MIN_CUE_S", "Cue", "build_cues", "fmt_timestamp", "md_model_text", "parse_srt",
    "parse_vtt", "summary_markdown", "to_json", "to_srt", "to_txt", "to_vtt",
]


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
        text = clean_text(seg.get("text"))
        if not text:
            continue
        start = finite(seg.get("start"))
        gap = prev_end is not None and start - prev_end >= paragraph_gap_s
        long_enough = len(cur) >= paragraph_chars and cur[-1:] in ".!?。！？…"
        if cur and (gap or long_enough):
            paragraphs.append(cur)
            cur = ""
        cur = join_text(cur, text)
        prev_end = max(prev_end or 0.0, finite(seg.get("end"), start))
    if cur:
        paragraphs.append(cur)
    return "\n\n".join(paragraphs) + ("\n" if paragraphs else "")


def to_json(transcript: dict[str, Any]) -> str:
    """Pretty JSON that keeps non-ASCII text readable (``ensure_ascii=False``)."""
    return json.dumps(transcript, ensure_ascii=False, indent=2) + "\n"

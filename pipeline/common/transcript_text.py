"""Text and time primitives that every transcript format shares: the writers, the caption parsers and the
summary's Markdown all clean text, join words across scripts and read times the same way, so they live below
all three (and below :mod:`pipeline.common.formats`, which re-exports the formats)."""

from __future__ import annotations

import math
import re
from typing import Any

_WS = re.compile(r"\s+")


def finite(x: Any, default: float = 0.0) -> float:
    """``x`` as a float, or ``default`` when it is missing, not a number, NaN or infinite (transcripts from
    the internet and from models carry all of those)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def fmt_timestamp(seconds: float | None) -> str:
    """``MM:SS`` below an hour, ``H:MM:SS`` from one hour: what people expect next to chapters."""
    s = finite(seconds)
    total = int(max(0.0, s))
    h, rem = divmod(total, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def clean_text(text: Any) -> str:
    """One line of text: control characters dropped, whitespace collapsed."""
    text = "".join(ch if ch.isprintable() or ch.isspace() else " " for ch in str(text or ""))
    return _WS.sub(" ", text).strip()


def no_space_script(ch: str) -> bool:
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


def join_text(a: str, b: str) -> str:
    """``a`` and ``b`` as running text: a space between them unless both sides are a no-space script."""
    if not a:
        return b
    if not b:
        return a
    if no_space_script(a[-1]) and no_space_script(b[0]):
        return a + b
    return a + " " + b

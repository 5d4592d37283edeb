"""The text checks of the hallucination guard (:mod:`.quality`): what a segment's words alone say about it.

Kept apart from the audio and repair half so each stays readable: these need no model, no audio and no
VAD, and the unit tests craft their inputs by hand.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter, defaultdict
from typing import Any

# Whisper's stock phrases (from its subtitle training data), normalized as :func:`normalize` does.
PHRASES = frozenset({
    "you", "thank you", "thanks", "thank you very much", "bye", "bye bye", "okay", "oh", "hmm", "um",
    "music", "applause", "laughter", "silence", "the end", "subscribe", "please subscribe", "like and subscribe",
    "thank you for watching", "thanks for watching", "thank you so much for watching", "see you next time",
    "see you in the next video", "thank you for listening",
})
LONG_PHRASES = ("thanks for watching", "thank you for watching", "subscribe to", "like and subscribe",
                "amara org", "subtitles by", "transcribed by", "captions by", "dot com")  # whole words


def normalize(text: str) -> str:
    """Lower case, punctuation and symbols gone: "Thank you!" and "thank you." are one text."""
    return re.sub(r"[^\w]+", " ", text.lower()).replace("_", " ").strip()


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes, exactly as Whisper computes it (``get_compression_ratio``)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def loop_in(text: str) -> tuple[int, int] | None:
    """The longest run of one n-gram repeated inside ``text``: (n, times), or None.

    Runs that a speaker makes ("very very very", "no no no") stay under the bar: one word must come five
    times in a row, two words four times, three words three times. A phrase of four words or more counts
    three times anywhere in the segment, words between or not: Whisper's loops drift ("see you next week,
    and we'll see you next week, and we'll see you next week").
    """
    words = normalize(text).split()
    best: tuple[int, int] | None = None
    for n in range(1, min(8, len(words) // 3) + 1):
        need = 5 if n == 1 else 4 if n == 2 else 3
        for start in range(n):  # every alignment of the n-gram grid
            run, prev = 1, None
            for i in range(start, len(words) - n + 1, n):
                gram = words[i:i + n]
                run = run + 1 if gram == prev else 1
                prev = gram
                if run >= need and (best is None or run * n > best[0] * best[1]):
                    best = (n, run)
        if n >= 4:
            at: dict[tuple[str, ...], list[int]] = defaultdict(list)
            for i in range(len(words) - n + 1):
                at[tuple(words[i:i + n])].append(i)
            for places in at.values():
                times, last = 0, -n
                for i in places:  # occurrences that do not overlap
                    if i >= last + n:
                        times, last = times + 1, i
                if times >= 3 and (best is None or times * n > best[0] * best[1]):
                    best = (n, times)
    return best


def repetition_flag(segments: list[dict[str, Any]], run: int = 3, total: int = 5, share: float = 0.2) -> str | None:
    """The classic Whisper hallucination over a whole transcript: one text over and over. A description or None.

    Flags ``run`` identical segments in a row, or one text in ≥ ``total`` segments making
    up ≥ ``share`` of them. Very short texts ("yeah") still count: loops are often short.
    """
    texts = [t for t in (normalize(s.get("text", "")) for s in segments) if t]
    if not texts:
        return None
    longest, current = 1, 1
    for a, b in zip(texts, texts[1:], strict=False):
        current = current + 1 if a == b else 1
        longest = max(longest, current)
    if longest >= run:
        return f"the same segment text repeats {longest} times in a row"
    text, count = Counter(texts).most_common(1)[0]
    if count >= total and count / len(texts) >= share:
        return f"{text[:40]!r} makes up {count} of {len(texts)} segments"
    return None


def stock_phrase(raw: str, norm: str) -> bool:
    """A stock phrase (or symbols only): what Whisper writes over silence and noise from its subtitle data."""
    if raw.strip() and not norm:  # "♪", "...", "-": symbols only
        return True
    if norm in PHRASES:
        return True
    return len(norm.split()) <= 12 and any(f" {p} " in f" {norm} " for p in LONG_PHRASES)

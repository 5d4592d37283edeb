"""Word error rate against a human reference text, after the normalisation both sides need.

Whisper writes "Mr. Dashwood," "ill-disposed" and capitals; LibriVox-style references write "mister dashwood",
"ill disposed" and no punctuation. Without normalising, such spelling differences would count as errors and hide
real misrecognitions. Numbers are compared as they appear: the references used here hold none.
"""

from __future__ import annotations

import re

# Spellings of one spoken word: Whisper's abbreviation -> the reference's written-out form.
SPOKEN = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation gone: hyphens and dashes split words, apostrophes stay inside them."""
    text = re.sub(r"[\u2018\u2019]", "'", text.lower())
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return [SPOKEN.get(w, w) for w in words if w]


def word_edits(ref: list[str], hyp: list[str]) -> int:
    """Substitutions + deletions + insertions turning ``ref`` into ``hyp`` (Levenshtein over words)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words, by edit distance."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    return word_edits(ref, hyp) / max(1, len(ref))


def corpus_wer(pairs: list[tuple[str, str]]) -> float:
    """Errors over all clips / reference words over all clips: short clips do not weigh more than long ones."""
    errors = sum(wer(r, h) * max(1, len(normalise(r))) for r, h in pairs)
    return errors / max(1, sum(max(1, len(normalise(r))) for r, _ in pairs))

"""Offline extractive summaries: no network, no model, deterministic.

This is what a batch gets when no LLM is configured, and what the LLM path falls back
to for an empty transcript. It picks sentences that already exist in the transcript
(so it can never invent a fact), scores them by how many of the video's frequent,
distinctive words they carry, and cuts the timeline into chapters where the
vocabulary changes most. Pure Python and linear in the transcript: a two-hour talk
(~20k words) takes tens of milliseconds.

Non-English text gets the same treatment with one language-agnostic guard (words
found in a large share of the sentences count as stopwords), which is crude but
never crashes and rarely picks function words as tags.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.recipes.transcribe.summary_model import Chapter, Summary

log = logging.getLogger("tubemill.extractive")

# English function words plus the fillers of spoken language ("um", "gonna", "you know"):
# transcripts are speech, and speech is full of words that carry no topic.
_STOPWORD_TEXT = """
a about above across actually after again against ago ah ahead all almost along already also although always am
among an and another any anybody anyone anything anyway anyways anywhere are aren't around as ask asked at away back
basically be became because become been before behind being below besides best better between beyond big both bring
but by came can can't cannot come comes coming could couldn't did didn't different do does doesn't doing don't done
down during each easy either else end enough especially etc even ever every everybody everyone everything exactly
example far few find first for found from front fun further gave get gets getting give given go goes going gone
gonna good got gotta great guess guy guys had hadn't happen happens has hasn't have haven't having he he'd he'll he's
hello her here here's hers herself hey hi him himself his hmm honestly how how's however i i'd i'll i'm i've idea if
important in inside instead into is isn't it it'd it'll it's its itself just keep kind kinda know known last later
least less let let's lets like likely little look looking looks lot lots made make makes making many may maybe me
mean means might mine more most mostly much must my myself need needs never new next nice no nobody none nor not
nothing now of off often oh ok okay old on once one ones only onto or other others otherwise ought our ours
ourselves out over own part people perhaps point pretty probably put quite rather really right said same saw say
saying says see seem seems seen several shall she she'd she'll she's should shouldn't show since so some somebody
someone something sometimes somewhat soon sorry sort start started still stuff such sure take taken takes talk
talking tell than thank thanks that that'll that's the their theirs them themselves then there there's these they
they'd they'll they're they've thing things think thinking this those though thought through thus till time times
to today together too took toward towards try trying two uh uhm um under unless until up upon us use used using
usually very via want wanna wanted wants was wasn't way ways we we'd we'll we're we've well went were weren't what
what's whatever when where where's whether which while who who's whole whom whose why will with within without
won't wonder work works would wouldn't wow yeah yep yes yet you you'd you'll you're you've your yours yourself
yourselves
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

_FILLERS = re.compile(r"\b(?:um+|uh+|uhm|erm|hmm+)\b[,.]?\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")
_ENDS_SENTENCE = re.compile(r"[.!?。！？][\"')\]]*$")
# A word starts with a letter (so "2024" and "10x" never become tags) and may carry
# inner apostrophes or hyphens ("don't", "open-source").
_WORD = re.compile(r"[^\W\d_][\w'’-]*")

MAX_SENTENCE_WORDS = 40  # unpunctuated captions: cut a "sentence" at a segment end past this many words
CHAPTER_SECONDS = 240.0  # about one chapter per four minutes
MAX_CHAPTERS = 30  # a ten-hour stream gets 20-minute chapters, not 150 of them
MAX_KEYWORD_CHARS = 24  # unspaced scripts (Chinese, Japanese) make whole clauses one "word": not a tag
MAX_TEXT_CHARS = 280  # longer sentences are trimmed at a word boundary for display


@dataclass(frozen=True)
class _Sentence:
    index: int
    start: float
    text: str
    words: tuple[str, ...]  # lowercased words in order; content words only once stopwords are known
    pairs: tuple[str, ...] = ()  # two content words side by side in the speech ("dutch oven"), for phrases


def summarize(transcript: Mapping[str, Any], title: str = "") -> Summary:
    """Summarize a transcript without any model; same input and output always agree."""
    segments = list(transcript.get("segments") or [])
    sentences = _split_sentences(segments)
    duration = _duration(transcript, segments)
    if not sentences:
        return Summary(tldr="", key_points=[], chapters=[], tags=[], engine="offline", model=None)

    stop = _stopwords(sentences)
    sentences = [_content(s, stop) for s in sentences]
    weights = _word_weights(sentences)
    scores = [_score(s, weights) for s in sentences]

    bounds = _chapter_bounds(sentences, duration)
    tldr_ids = _pick_tldr(sentences, scores)
    key_ids = _pick_key_points(sentences, scores, duration, bounds, exclude=set(tldr_ids))
    chapters = _chapters(sentences, bounds, weights)
    tags = _keywords(sentences, weights, title, limit=8)
    return Summary(
        tldr=" ".join(_display(sentences[i].text) for i in tldr_ids),
        key_points=[_display(sentences[i].text) for i in key_ids],
        chapters=chapters,
        tags=tags,
        engine="offline",
        model=None,
    )


# -- sentences ---------------------------------------------------------------------------------------------------


def _split_sentences(segments: list[Mapping[str, Any]]) -> list[_Sentence]:
    """Sentences with the start time of the segment each one began in.

    Whisper output is punctuated; auto-captions often are not, so an unpunctuated run is
    also cut at a segment boundary once it is long enough to read as one point.
    """
    out: list[_Sentence] = []
    buf: list[str] = []
    buf_start = 0.0

    def flush() -> None:
        text = " ".join(buf).strip()
        buf.clear()
        text = _FILLERS.sub("", text).strip()
        if text:
            words = tuple(w.lower().replace("’", "'").strip("'-") for w in _WORD.findall(text))
            out.append(_Sentence(len(out), buf_start, text, tuple(w for w in words if w)))

    for seg in segments:
        text = " ".join(str(seg.get("text") or "").split())
        if not text:
            continue
        start = float(seg.get("start") or 0.0)
        pieces = _SENTENCE_END.split(text)
        for n, piece in enumerate(pieces):
            if not buf:
                buf_start = start
            buf.append(piece)
            last = n == len(pieces) - 1
            if not last or _ENDS_SENTENCE.search(piece):
                flush()
        if buf and sum(len(p.split()) for p in buf) >= MAX_SENTENCE_WORDS:
            flush()
    if buf:
        flush()
    return out


def _content(s: _Sentence, stop: frozenset[str]) -> _Sentence:
    pairs = tuple(f"{a} {b}" for a, b in zip(s.words, s.words[1:], strict=False)
                  if a != b and a not in stop and b not in stop)
    return _Sentence(s.index, s.start, s.text, tuple(w for w in s.words if w not in stop), pairs)


def _duration(transcript: Mapping[str, Any], segments: list[Mapping[str, Any]]) -> float:
    ends = [float(s.get("end") or s.get("start") or 0.0) for s in segments]
    return max([float(transcript.get("duration") or 0.0), *ends]) if ends else float(transcript.get("duration") or 0.0)


def _stopwords(sentences: list[_Sentence]) -> frozenset[str]:
    """English stopwords, plus words in over 30% of sentences (function words of any language), short words."""
    df = Counter(w for s in sentences for w in set(s.words))
    common = {w for w, n in df.items() if len(sentences) >= 10 and n > 0.3 * len(sentences)}
    short = {w for w in df if len(w) < 3}
    return STOPWORDS | common | short


# -- scoring -----------------------------------------------------------------------------------------------------


def _word_weights(sentences: list[_Sentence]) -> dict[str, float]:
    """Term frequency damped by log, times a mild inverse sentence frequency.

    Frequent words are the topic; the idf factor keeps a word that is everywhere from
    outranking the words that tell one part from another.
    """
    tf = Counter(w for s in sentences for w in s.words)
    df = Counter(w for s in sentences for w in set(s.words))
    n = len(sentences)
    return {w: (1.0 + math.log(c)) * (1.0 + math.log((1 + n) / (1 + df[w]))) for w, c in tf.items()}


def _score(s: _Sentence, weights: Mapping[str, float]) -> float:
    """Sum of distinct word weights over sqrt(length): favours dense sentences, not merely long ones."""
    if not s.words:
        return 0.0
    n_raw = len(s.text.split())
    dense = sum(weights[w] for w in set(s.words)) / math.sqrt(len(s.words))
    if n_raw < 6:  # "Right, exactly." is never a key point
        dense *= 0.3
    elif n_raw > 60:
        dense *= 0.7
    return dense


def _pick_tldr(sentences: list[_Sentence], scores: list[float]) -> list[int]:
    """The best sentence, plus the runner-up when the best is short: one or two, in spoken order."""
    order = _ranked(scores)
    picked = [order[0]]
    if len(sentences[order[0]].text.split()) < 18:
        for i in order[1:]:
            if _overlap(sentences[i], sentences[order[0]]) < 0.5:
                picked.append(i)
                break
    return sorted(picked)


def _pick_key_points(sentences: list[_Sentence], scores: list[float], duration: float, bounds: list[int],
                     exclude: set[int]) -> list[int]:
    """3 to 7 high-scoring sentences, no two saying nearly the same thing, in spoken order.

    The first pass takes each chapter's best sentence (best chapters first), so a video
    that covers three topics gets points on all three, not three on the wordiest one.
    """
    want = max(3, min(7, 3 + int(duration // 600)))
    picked: list[int] = []

    def usable(i: int) -> bool:
        return (i not in exclude and i not in picked and bool(sentences[i].words)
                and all(_overlap(sentences[i], sentences[j]) < 0.5 for j in picked))

    spans = [range(b, bounds[j + 1] if j + 1 < len(bounds) else len(sentences)) for j, b in enumerate(bounds)]
    firsts = [next((i for i in sorted(span, key=lambda i: (-scores[i], i)) if i not in exclude), None)
              for span in spans]
    for i in sorted((i for i in firsts if i is not None), key=lambda i: (-scores[i], i)):
        if len(picked) < want and usable(i):
            picked.append(i)
    for i in _ranked(scores):
        if len(picked) == want:
            break
        if usable(i):
            picked.append(i)
    if len(picked) < 3:  # a short transcript: allow the tl;dr's sentences rather than return too few
        for i in _ranked(scores):
            if len(picked) == 3:
                break
            if i not in picked:
                picked.append(i)
    return sorted(picked)


def _ranked(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _overlap(a: _Sentence, b: _Sentence) -> float:
    sa, sb = set(a.words), set(b.words)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))


def _display(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text[:1].upper() + text[1:]


# -- chapters and keywords ---------------------------------------------------------------------------------------


def _chapter_bounds(sentences: list[_Sentence], duration: float) -> list[int]:
    """Indices of the sentences that open chapters: about one per four minutes, placed where the vocabulary changes.

    Around each evenly spaced target time, candidate boundaries are sentence starts within a
    third of a chapter's length; the one whose neighbouring windows share the fewest words
    wins (a TextTiling-lite), ties going to the candidate nearest the target.
    """
    n = max(1, round(duration / CHAPTER_SECONDS)) if duration > 0 else 1
    n = min(n, len(sentences), MAX_CHAPTERS)
    step = duration / n if duration > 0 else 0.0
    bounds = [0]
    for k in range(1, n):
        target = k * step
        cands = [i for i in range(bounds[-1] + 1, len(sentences)) if abs(sentences[i].start - target) <= step / 3]
        if not cands:
            continue
        best = min(cands, key=lambda i: (_similarity(sentences, i), abs(sentences[i].start - target), i))
        bounds.append(best)
    return bounds


def _chapters(sentences: list[_Sentence], bounds: list[int], weights: Mapping[str, float]) -> list[Chapter]:
    """A chapter per boundary, named by its keywords; the first starts at 0."""
    chapters = []
    for j, b in enumerate(bounds):
        end = bounds[j + 1] if j + 1 < len(bounds) else len(sentences)
        part = sentences[b:end]
        start = 0.0 if j == 0 else round(sentences[b].start, 2)
        chapters.append(Chapter(start=start, title=_chapter_title(part, weights)))
    return chapters


def _similarity(sentences: list[_Sentence], i: int, window: int = 4) -> float:
    """Cosine similarity of the word bags just before and just after sentence i."""
    left = Counter(w for s in sentences[max(0, i - window):i] for w in s.words)
    right = Counter(w for s in sentences[i:i + window] for w in s.words)
    dot = sum(c * right[w] for w, c in left.items())
    norm = math.sqrt(sum(c * c for c in left.values())) * math.sqrt(sum(c * c for c in right.values()))
    return dot / norm if norm else 0.0


def _chapter_title(part: list[_Sentence], weights: Mapping[str, float]) -> str:
    words = _keywords(part, weights, "", limit=3, local=True)
    if words:
        title = ", ".join(words)
        return title[:1].upper() + title[1:]
    text = " ".join((part[0].text if part else "").split()[:8])
    return _display(text[:60]) or "Part"


def _keywords(sentences: list[_Sentence], weights: Mapping[str, float], title: str, *, limit: int,
              local: bool = False) -> list[str]:
    """Ranked keywords and two-word phrases, lowercase, no stopwords, no digits.

    A phrase ("sourdough starter") must recur to count; once picked, its words are not
    picked again on their own. ``local`` ranks a chapter's words by their count there
    times their global weight, so a chapter is named for what it says most.
    """
    uni = Counter(w for s in sentences for w in s.words)
    bi = Counter(p for s in sentences for p in s.pairs)
    title_words = {w.lower() for w in _WORD.findall(title)}
    score: dict[str, float] = {}
    for w, c in uni.items():
        if len(w) > MAX_KEYWORD_CHARS:
            continue
        base = c * weights.get(w, 1.0) if local else weights.get(w, 1.0) * math.log1p(c)
        score[w] = base * (1.5 if w in title_words else 1.0)
    for p, c in bi.items():
        a, b = p.split(" ")
        if c >= 2 and a in score and b in score:
            score[p] = 0.8 * (score[a] + score[b]) * min(1.0, c / max(uni[a], uni[b]) + 0.3)
    picked: list[str] = []
    used: set[str] = set()
    for k in sorted(score, key=lambda k: (-score[k], k)):
        if len(picked) == limit:
            break
        parts = k.split(" ")
        if any(p in used for p in parts) or any(k in q.split(" ") for q in picked):
            continue
        picked.append(k)
        used.update(parts)
    return picked

"""The offline summarizer: real sentences from the transcript, deterministic, fast, never crashes."""

from __future__ import annotations

import time
from typing import Any

from pipeline.recipes.transcribe import extractive
from pipeline.recipes.transcribe.summary_model import Summary

TOPICS = [
    [
        "Welcome back to the channel, today we are talking about sourdough bread.",
        "A sourdough starter is just flour and water that wild yeast and bacteria have colonized.",
        "You feed the starter every day with equal weights of flour and water.",
        "Um, a healthy starter doubles in size within six hours of feeding.",
        "Hydration is the ratio of water to flour in the dough.",
        "For a beginner loaf I recommend seventy five percent hydration.",
        "The bulk fermentation takes about five hours at room temperature.",
        "During bulk fermentation you do four sets of stretch and folds.",
        "Shaping builds surface tension so the loaf holds its shape in the oven.",
        "Bake the sourdough loaf in a preheated Dutch oven at two hundred fifty degrees.",
        "Keep the lid on the Dutch oven for the first twenty minutes to trap steam.",
        "The crust gets its colour once you take the lid off.",
    ],
    [
        "Now let's switch gears and talk about fixing a flat bicycle tire.",
        "First remove the wheel from the bike frame by opening the quick release.",
        "Use two tire levers to pry the tire bead off the rim.",
        "Pull out the inner tube and inflate it a little to find the puncture.",
        "Run your fingers inside the tire to find the thorn or glass that caused the flat.",
        "Patch the inner tube with a glueless patch or replace the tube entirely.",
        "Put a little air in the new tube before you push it back into the tire.",
        "Work the tire bead back onto the rim with your thumbs, not the tire levers.",
        "Pump the tire to the pressure printed on the sidewall.",
        "Reinstall the wheel on the bike and close the quick release firmly.",
        "Spin the wheel to check the tire sits evenly on the rim.",
        "A spare tube and a mini pump belong in every bike saddle bag.",
    ],
    [
        "Finally, a few words about a monthly budget.",
        "A budget starts with writing down your monthly income after taxes.",
        "List every fixed expense such as rent, insurance and loan payments.",
        "Variable expenses like groceries and fuel change from month to month.",
        "The fifty thirty twenty rule splits income into needs, wants and savings.",
        "Put your savings into an emergency fund before anything else.",
        "An emergency fund should cover three to six months of expenses.",
        "Track every expense for a month to see where the money really goes.",
        "Budgeting apps can import transactions from your bank account automatically.",
        "Review the budget at the end of each month and adjust the categories.",
        "Paying off high interest credit card debt is the best return on your money.",
        "Thanks for watching, and see you next week.",
    ],
]
TOPIC_SECONDS = 360.0  # 12 sentences of 30 s


def multi_topic_transcript() -> dict[str, Any]:
    """Three six-minute topics; each sentence split across two segments, as Whisper does."""
    segs, t = [], 0.0
    for topic in TOPICS:
        for sentence in topic:
            words = sentence.split()
            half = len(words) // 2
            segs.append({"start": t, "end": t + 14.0, "text": " ".join(words[:half])})
            segs.append({"start": t + 14.0, "end": t + 30.0, "text": " ".join(words[half:])})
            t += 30.0
    return {"language": "en", "duration": t, "segments": segs}


ALL_SENTENCES = {s for topic in TOPICS for s in topic}


def test_summary_covers_every_part_of_a_multi_topic_talk() -> None:
    """tl;dr, key points, chapters and tags come out valid and span all three topics."""
    s = extractive.summarize(multi_topic_transcript(), "Three skills")
    Summary.model_validate(s.model_dump())
    assert s.engine == "offline" and s.model is None
    assert s.tldr and 1 <= sum(s.tldr.count(c) for c in ".!?") <= 2
    assert 3 <= len(s.key_points) <= 7
    assert all(p in ALL_SENTENCES for p in s.key_points), "key points are transcript sentences, verbatim"
    topics_hit = {i for i, topic in enumerate(TOPICS) for p in s.key_points if p in topic}
    assert topics_hit == {0, 1, 2}
    assert 3 <= len(s.tags) <= 10
    assert all(t == t.lower() and not t.isdigit() and t not in extractive.STOPWORDS for t in s.tags)
    assert {"dutch oven", "emergency fund"} <= set(s.tags)


def test_chapters_start_at_zero_and_break_near_topic_changes() -> None:
    """Chapters are ~one per four minutes, in order, inside the video, with boundaries at the topic changes."""
    tr = multi_topic_transcript()
    s = extractive.summarize(tr)
    starts = [c.start for c in s.chapters]
    assert starts[0] == 0.0 and starts == sorted(starts) and starts[-1] < tr["duration"]
    assert 3 <= len(s.chapters) <= 6
    assert TOPIC_SECONDS in starts and 2 * TOPIC_SECONDS in starts
    assert all(c.title for c in s.chapters)
    titles = " ".join(c.title.lower() for c in s.chapters)
    assert "oven" in titles and "tire" in titles and "budget" in titles


def test_same_input_same_summary() -> None:
    """Two runs over the same transcript give identical output (no set or hash ordering leaks)."""
    tr = multi_topic_transcript()
    assert extractive.summarize(tr, "x").model_dump() == extractive.summarize(tr, "x").model_dump()


def test_empty_and_blank_transcripts_give_an_empty_summary() -> None:
    """No segments, or only blank text, is a minimal valid summary rather than an error."""
    for tr in ({"language": "en", "duration": 0.0, "segments": []},
               {"segments": [{"start": 0, "end": 2, "text": "  "}, {"start": 2, "text": None}]},
               {}):
        s = extractive.summarize(tr)
        assert (s.tldr, s.key_points, s.chapters, s.tags, s.engine) == ("", [], [], [], "offline")


def test_non_english_and_unpunctuated_text_do_not_crash() -> None:
    """Japanese without spaces and captions without punctuation still summarize."""
    ja = {"language": "ja", "duration": 20.0, "segments": [
        {"start": 0, "end": 5, "text": "今日はパンの焼き方について話します。"},
        {"start": 5, "end": 9, "text": "まず小麦粉と水を混ぜます。"}]}
    s = extractive.summarize(ja)
    assert s.tldr and s.chapters[0].start == 0.0
    words = " ".join(["the bike tire needs air and a new tube"] * 200).split()
    captions = {"language": "en", "duration": 800.0, "segments": [
        {"start": i * 4.0, "end": i * 4.0 + 4, "text": " ".join(words[i * 10:i * 10 + 10])} for i in range(180)]}
    s = extractive.summarize(captions)
    assert s.key_points and all(len(p.split()) <= 60 for p in s.key_points)


def test_two_hour_transcript_is_fast() -> None:
    """About 20,000 words (a two-hour talk) summarize in well under a second."""
    base = multi_topic_transcript()["segments"]
    segs: list[dict[str, Any]] = []
    t = 0.0
    while sum(len(s["text"].split()) for s in segs) < 20_000:
        for n, s in enumerate(base):
            # vary the words a little so the text is not one paragraph repeated verbatim
            segs.append({"start": t, "end": t + 3.0, "text": f"{s['text']} item{len(segs) % 97} part{n % 13}"})
            t += 3.0
    tr = {"language": "en", "duration": t, "segments": segs}
    started = time.perf_counter()
    s = extractive.summarize(tr)
    assert time.perf_counter() - started < 1.0
    assert 3 <= len(s.key_points) <= 7 and len(s.chapters) >= 20 and s.chapters[-1].start < t

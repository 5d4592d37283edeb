"""The hallucination guard on crafted segment lists: each detector, the choice between two decodes, the windows
cut for a re-decode, the splice of a repaired transcript, the translate check and the batch report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import errors
from pipeline.recipes.transcribe import quality as q
from pipeline.recipes.transcribe.options import check_task
from pipeline.recipes.transcribe.quality_text import repetition_flag
from pipeline.recipes.transcribe.report import REPORT, quality_markdown, quality_row


def seg(start: float, end: float, text: str, logprob: float = -0.3, no_speech: float = 0.05) -> dict[str, Any]:
    return {"start": start, "end": end, "text": text, "avg_logprob": logprob, "no_speech_prob": no_speech}


def reasons(findings: list[q.Finding]) -> dict[int, tuple[str, ...]]:
    return {f.index: f.reasons for f in findings}


SPEECH = [(0.0, 30.0), (60.0, 90.0)]  # VAD: speech, half a minute of silence, speech


def test_clean_speech_has_no_findings() -> None:
    """Ordinary sentences inside VAD speech, with ordinary scores, raise nothing."""
    segs = [seg(0, 4, "The quick brown fox jumps over the lazy dog."), seg(4, 9, "Then it ran very very very fast."),
            seg(60, 64, "Thank you for watching this talk about foxes, said the host.")]
    assert q.detect(segs, SPEECH) == []


def test_a_short_text_repeated_three_times_flags_all_but_the_first() -> None:
    """"Thank you." ×3 within the window: the 2nd and 3rd are repeats; the first stays (it may be real)."""
    segs = [seg(0, 4, "Welcome everyone."), seg(4, 5, "Thank you."), seg(5, 6, "Thank you!"), seg(6, 7, "thank you")]
    found = reasons(q.detect(segs))
    assert set(found) == {2, 3} and all("repeat" in r for r in found.values())


def test_a_long_sentence_repeated_once_is_a_repeat_but_not_beyond_the_window() -> None:
    """A sentence of three or more words said again within 30 s is suspect; again after two minutes it is not."""
    s = "and that is how the model learns"
    assert reasons(q.detect([seg(0, 3, s), seg(3, 6, s)])) == {1: ("repeat",)}
    assert q.detect([seg(0, 3, s), seg(120, 123, s)]) == []
    assert q.detect([seg(0, 1, "Yes."), seg(1, 2, "Yes.")]) == []  # a short text twice is speech


def test_an_ngram_loop_inside_one_segment() -> None:
    """One word five times, or a phrase three times back to back, inside a segment is a loop; emphasis is not."""
    assert q.loop_in("I went to the the the the the the store") == (1, 6)
    assert q.loop_in("we will go there we will go there we will go there") == (4, 3)
    assert q.loop_in("it was very very very good, no no no") is None
    drift = "I'm going to see you next week, and we'll see you next week, and we'll see you next week."
    assert q.loop_in(drift) == (4, 3)  # a phrase three times with words between is still a loop
    assert q.loop_in("on the other hand it rains, and on the other hand it is warm") is None  # twice is speech
    found = q.detect([seg(0, 8, "so I said I'm going to I'm going to I'm going to I'm going to")], SPEECH)
    assert found and "loop" in found[0].reasons and found[0].scores["loop_times"] >= 3


def test_compression_ratio_is_whispers_own() -> None:
    """The ratio is faster-whisper's formula (zlib); a looping text passes 2.4, a sentence does not."""
    from faster_whisper.transcribe import get_compression_ratio

    loop = "I don't know what to say. " * 12
    assert q.compression_ratio(loop) == pytest.approx(get_compression_ratio(loop))
    assert q.compression_ratio(loop) > q.COMPRESSION_MAX
    assert q.compression_ratio("The quick brown fox jumps over the lazy dog.") < q.COMPRESSION_MAX
    found = reasons(q.detect([seg(0, 20, loop)], SPEECH))
    assert "compression" in found[0] and "repeat" not in found[0]


def test_a_very_low_log_probability() -> None:
    """Below Whisper's -1.0 the decoder was guessing: flagged with the score."""
    found = q.detect([seg(0, 3, "Glorbing the frantic wasp", logprob=-1.4)], SPEECH)
    assert reasons(found) == {0: ("logprob",)} and found[0].scores["avg_logprob"] == -1.4


def test_text_where_the_vad_hears_silence() -> None:
    """A segment in the gap between the VAD's speech spans is silence; one overlapping speech is not."""
    segs = [seg(10, 14, "We measured the river."), seg(40, 44, "The pressure of the ancient engine rose."),
            seg(28, 33, "It ends right at the edge.")]
    found = q.detect(segs, SPEECH)
    assert reasons(found) == {1: ("silence",)} and found[0].scores["speech"] == 0.0
    assert q.speech_share(28, 33, SPEECH) == pytest.approx(0.4)


def test_stock_phrases_on_silence_but_not_in_speech() -> None:
    """"Thanks for watching", "you" and "♪" over silence are phrases; the same words inside speech are kept."""
    segs = [seg(40, 42, "Thanks for watching!"), seg(45, 46, "you"), seg(50, 52, "♪ ♪"), seg(70, 72, "Thank you.")]
    found = reasons(q.detect(segs, SPEECH))
    assert set(found) == {0, 1, 2} and all("phrase" in r and "silence" in r for r in found.values())
    # Without audio, Whisper's own no-speech probability stands in for the VAD.
    assert reasons(q.detect([seg(0, 2, "Please subscribe to my channel", no_speech=0.7)])) == {0: ("phrase",)}
    assert q.detect([seg(0, 2, "Please subscribe to my channel", no_speech=0.1)]) == []
    # Whole words only: a comet is no ".com", even where the VAD hears little.
    assert q.detect([seg(25, 36, "Astronomers watch the bright comet cross the night sky.")], SPEECH) == []


def test_windows_join_neighbours_and_stop_at_good_segments() -> None:
    """Adjacent suspects make one window; its cut reaches a margin out but never into a good segment."""
    segs = [seg(0, 5, "good"), seg(5.4, 7, "bad"), seg(7, 9, "bad too"), seg(12, 15, "good"), seg(20, 22, "bad")]
    finds = [q.Finding(1, ("loop",)), q.Finding(2, ("loop",)), q.Finding(4, ("silence",))]
    assert q.windows(segs, finds, duration=22.5) == [q.Window(1, 2, 5.0, 10.0), q.Window(4, 4, 19.0, 22.5)]


def test_choose_keeps_the_better_decode() -> None:
    """Fewer suspects win, then the higher log-probability; an empty decode wins only over junk or silence."""
    before, after = [seg(0, 5, "The lecture starts now.")], [seg(20, 25, "Now the second part.")]
    loop = [seg(5, 15, "the the the the the the the the", logprob=-0.9)]
    good = [seg(5, 10, "We look at the data first.", logprob=-0.4), seg(10, 15, "Then at the model.", logprob=-0.5)]
    assert q.choose(loop, good, before, after, None) == "replaced"
    assert q.choose(loop, [], before, after, None) == "dropped"  # a loop is junk: nothing is better
    assert q.choose(good, loop, before, after, None) == "kept"
    unclear = [seg(5, 10, "Glorbing the frantic wasp.", logprob=-1.3)]
    clearer = [seg(5, 10, "Warming the fragrant wax.", logprob=-0.8)]
    assert q.choose(unclear, clearer, before, after, None) == "replaced"
    assert q.choose(unclear, [], before, after, None) == "kept"  # unclear speech is not dropped...
    assert q.choose(unclear, [], before, after, None, silent=True) == "dropped"  # ...unless the VAD hears nothing
    worse = [seg(5, 10, "Wobbling the frenzied wasp.", logprob=-1.6)]
    assert q.choose(unclear, worse, before, after, None) == "kept"  # both suspect: the higher probability stays
    # The new text repeating the previous segment is junk: worse than unclear speech, whatever its probability.
    assert q.choose(unclear, [seg(5, 10, "The lecture starts now.")], before, after, None) == "kept"


def test_repair_drops_windows_the_vad_calls_silence_without_decoding() -> None:
    """Junk over digital silence goes, without a model call (model=None); good text around it is untouched."""
    audio = np.zeros(int(60 * q.SR), dtype=np.float32)
    speech = [(0.0, 20.0), (40.0, 60.0)]
    tr = {"language": "en", "duration": 60.0, "segments": [
        seg(2, 8, "The first part of the talk."), seg(22, 24, "Thank you."), seg(25, 27, "Thank you."),
        seg(28, 30, "Thank you."), seg(42, 48, "The second part of the talk.")]}
    fixed, report = q.repair(tr, audio, None, speech=speech)
    assert [s["text"] for s in fixed["segments"]] == ["The first part of the talk.", "The second part of the talk."]
    assert report["found"] == 3 and report["repaired"] == 3 and report["flagged"] == 0
    assert report["reasons"]["silence"] == 3 and report["windows"][0]["outcome"] == "dropped"
    assert tr["segments"][1]["text"] == "Thank you."  # the input transcript is not changed


def test_repetition_flag_keeps_its_meaning() -> None:
    """The transcript-wide repetition flag (the stage's ``repetition``) is unchanged."""
    loop = [seg(i, i + 1, "Okay.") for i in range(3)]
    assert repetition_flag(loop) == "the same segment text repeats 3 times in a row"
    assert repetition_flag([seg(0, 1, "One."), seg(1, 2, "Two.")]) is None


@pytest.mark.parametrize("model", ["tiny.en", "bundled", "base.en", "distil-small.en", "/models/Systran-tiny.en/"])
def test_translate_with_an_english_only_model_is_refused(model: str) -> None:
    """--task translate with an English-only model is a ConfigError naming the model, before anything runs."""
    with pytest.raises(errors.ConfigError, match="translate needs a multilingual model; .* is English-only"):
        check_task(model, "translate")
    check_task(model, "transcribe")
    check_task("small", "translate")


def test_manifest_row_and_errors_md_quality_section(tmp_path: Path) -> None:
    """Items with findings get counts in their manifest row and a line per window in errors.md's Quality section."""
    from pipeline.engine.report import errors_markdown

    meta = {"found": 3, "repaired": 2, "flagged": 1, "reasons": {"phrase": 1, "repeat": 2}, "windows": [
        {"start": 31.0, "end": 36.5, "outcome": "dropped", "reasons": ["phrase"], "old": "Thanks for watching!",
         "new": ""},
        {"start": 70.0, "end": 75.0, "outcome": "replaced", "reasons": ["repeat"], "old": "So so so", "new": "So we"},
        {"start": 90.0, "end": 95.0, "outcome": "kept", "reasons": ["repeat"], "old": "Again.", "new": "Again."}]}
    items = [{"n": 1, "source": "a", "title": "Talk A", "status": "done", "meta": {"quality": meta}},
             {"n": 2, "source": "b", "title": "Talk B", "status": "done", "meta": {"quality": {"found": 0}}},
             {"n": 3, "source": "c", "title": "Talk C", "status": "done", "meta": {"quality": {"error": "OSError: x"}}},
             {"n": 4, "source": "d", "title": "Captioned", "status": "done", "meta": {}}]
    assert quality_row(items[0]) == {"quality_found": 3, "quality_repaired": 2, "quality_flagged": 1,
                                     "quality_reasons": {"phrase": 1, "repeat": 2}}
    assert quality_row(items[3])["quality_found"] is None
    assert quality_row(items[2])["quality_error"] == "OSError: x"
    md = quality_markdown(items)
    assert md[0] == "## Quality" and "3 suspect segment(s) in 2 transcript(s): 2 repaired, 1 still flagged." in md
    text = "\n".join(md)
    assert "1. Talk A: 3 suspect (phrase 1, repeat 2); 2 repaired, 1 still flagged" in text
    assert "00:31–00:36 (phrase): `Thanks for watching!` dropped (silence)" in text
    assert "`So so so` → `So we`" in text and "kept (the re-decode was no better)" in text
    assert "3. Talk C: the guard failed" in text and "Talk B" not in text and "Captioned" not in text
    whole = errors_markdown({"name": "talks"}, items, tmp_path, REPORT)
    assert "No items failed." in whole and "## Quality" in whole
    assert quality_markdown(items[1:2] + items[3:]) == []


def test_the_stage_refuses_translate_with_the_bundled_model(tmp_path: Path) -> None:
    """The transcribe stage fails the item up front with the plain reason, before any model loads or decodes."""
    from pipeline.engine.stage import StageContext
    from pipeline.recipes.transcribe.stages import transcribe as t

    wd = tmp_path / "item"
    wd.mkdir()
    audio = wd / "audio.wav"
    audio.write_bytes(b"not even audio")
    ctx = StageContext(batch_id="b", batch_name="b", item_n=1, stage="transcribe", workdir=wd,
                       options={"task": "translate"}, attempt=1, account=None, _progress=lambda f: None,
                       _cancelled=lambda: False, home=tmp_path / "home", pool_size=1)
    item = {"n": 1, "source": str(audio), "workdir": str(wd), "artifacts": {"audio": str(audio)}}
    with pytest.raises(errors.ConfigError, match="translate needs a multilingual model; tiny.en is English-only"):
        t.run(item, ctx)
    assert not (wd / "transcript.json").exists()


def test_without_repair_every_finding_stays_flagged() -> None:
    """--no-repair: the findings are reported and all of them still stand."""
    finds = q.detect([seg(40, 42, "Thanks for watching!"), seg(45, 46, "you")], SPEECH)
    assert q.report_only(finds) | {"still": []} == {"found": 2, "repaired": 0, "flagged": 2, "windows": [],
                                                     "reasons": {"phrase": 2, "silence": 2}, "still": []}

"""The hallucination guard with real faster-whisper (bundled tiny.en) on espeak-ng speech with half a minute of
noise between two sentences: the junk Whisper writes there is repaired or flagged, and the item records it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe import quality as q
from pipeline.recipes.transcribe.stages import transcribe as t
from tests.media import SPEECH, ffmpeg_exe, make_speech
from tests.transcribe.test_transcribe import content_words

GAP_S = 30.0
Gap = tuple[Path, tuple[float, float]]  # the file, and the span between its two sentences


@pytest.fixture(scope="module")
def gap_audio(tmp_path_factory: pytest.TempPathFactory) -> Gap:
    """Speech, 30 s of quiet brown noise, speech (16 kHz mono wav); returns the file and the gap's span."""
    d = tmp_path_factory.mktemp("gap")
    a, b = make_speech(SPEECH[0], d / "a.wav"), make_speech(SPEECH[2], d / "b.wav")
    out = d / "speech-noise-speech.wav"
    mix = "[0:a]aresample=16000[x];[1:a]aresample=16000[y];[2:a]aresample=16000[z];[x][y][z]concat=n=3:v=0:a=1[o]"
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(a), "-f", "lavfi", "-i",
                    f"anoisesrc=d={GAP_S}:c=brown:r=16000:a=0.02:seed=7", "-i", str(b), "-filter_complex", mix,
                    "-map", "[o]", "-ac", "1", "-ar", "16000", str(out)], check=True, timeout=60)
    speech = q.speech_spans(q.load_audio(out))
    assert len(speech) == 2 and speech[1][0] - speech[0][1] > GAP_S - 2  # the VAD hears the two sentences only
    return out, (speech[0][1], speech[-1][0])


def ctx_for(wd: Path, options: dict[str, Any]) -> StageContext:
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage="transcribe", workdir=wd, options=options,
                        attempt=1, account=None, _progress=lambda f: None, _cancelled=lambda: False,
                        home=wd.parent / "home", pool_size=1)


def in_gap(s: dict[str, Any], gap: tuple[float, float]) -> bool:
    """Wholly inside the noise (a real sentence's segment may start early: Whisper's window began there)."""
    return gap[0] + 0.5 <= float(s["start"]) and float(s["end"]) <= gap[1] - 0.5


def share_found(ref: str, hyp: str) -> float:
    want = content_words(ref)
    return len(want & content_words(hyp)) / len(want)


def test_repair_replaces_a_loop_and_drops_junk_planted_on_the_noise(gap_audio: Gap) -> None:
    """Over the real audio: a loop written over the first sentence is decoded again into that sentence, stock
    phrases planted in the noise are dropped (the stricter VAD hears no speech there), good text stays."""
    path, gap = gap_audio
    loaded = t.get_model("tiny.en", "cpu", 1)
    samples = q.load_audio(path)
    chunks = t.vad_chunks(samples)
    with t._using(loaded):
        tr = t.transcribe_file(path, loaded, samples=samples, chunks=chunks)
    assert not q.detect(tr["segments"], t.spans_of(chunks))  # Whisper's own text here is clean
    rest = tr["segments"][1:]
    with t._using(loaded):
        fixed, report = q.repair({**tr, "segments": planted(tr, gap)}, samples, loaded.model,
                                 speech=t.spans_of(chunks))
    assert report["found"] == 3 and report["repaired"] == 3 and report["flagged"] == 0, report
    assert {"loop", "phrase", "silence"} <= set(report["reasons"]), report
    outcomes = sorted(w["outcome"] for w in report["windows"])
    assert outcomes == ["dropped", "replaced"], report["windows"]  # the two planted phrases are one window
    assert not [s for s in fixed["segments"] if in_gap(s, gap)]
    text = " ".join(s["text"] for s in fixed["segments"])
    assert "the river bank the river bank" not in text.lower()
    assert share_found(SPEECH[0], text) >= 0.6 and share_found(SPEECH[2], text) >= 0.6, text
    assert all(s in fixed["segments"] for s in rest)  # the segments nobody flagged are the very same


def planted(tr: dict[str, Any], gap: tuple[float, float]) -> list[dict[str, Any]]:
    """Whisper's clean segments with junk planted: a loop over the first sentence, two stock phrases in the gap."""
    first, *rest = tr["segments"]
    return sorted([{**first, "text": "the river bank the river bank the river bank the river bank"},
                   {"start": gap[0] + 6, "end": gap[0] + 8, "text": "Thanks for watching!", "avg_logprob": -0.5},
                   {"start": gap[0] + 15, "end": gap[0] + 16, "text": "you", "avg_logprob": -0.6}, *rest],
                  key=lambda s: s["start"])


def test_the_stage_rewrites_every_file_from_the_repaired_transcript(gap_audio: Gap, tmp_path: Path) -> None:
    """After Whisper (here: its transcript with junk planted), the stage writes the files at once, then the
    guard repairs them and they are written again; meta and flags record it."""
    path, gap = gap_audio
    wd = tmp_path / "item"
    wd.mkdir()
    item = {"n": 1, "source": str(path), "title": "gap", "workdir": str(wd), "status": "running",
            "artifacts": {"audio": str(path)}}
    ctx = ctx_for(wd, {})
    loaded = t.get_model("tiny.en", "cpu", 1)
    samples = q.load_audio(path)
    chunks = t.vad_chunks(samples)
    with t._using(loaded):
        tr = t.transcribe_file(path, loaded, samples=samples, chunks=chunks)
    junk = {**tr, "segments": planted(tr, gap)}
    result = t.finish(item, ctx, junk, samples, loaded, t.options_of(ctx), t.spans_of(chunks))
    quality = result.meta["quality"]
    assert (quality["found"], quality["repaired"], quality["flagged"]) == (3, 3, 0), quality
    assert {"quality-repaired"} <= set(result.meta["flags"]) and "quality-flagged" not in result.meta["flags"]
    written = json.loads((wd / "transcript.json").read_text())
    text = " ".join(s["text"] for s in written["segments"])
    for name in ("transcript.txt", "transcript.srt", "transcript.vtt"):
        body = (wd / name).read_text()
        assert "Thanks for watching" not in body and "the river bank the river bank" not in body, name
    assert " ".join((wd / "transcript.txt").read_text().split()) == " ".join(text.split())
    assert share_found(SPEECH[0], text) >= 0.6 and share_found(SPEECH[2], text) >= 0.6, text


def one_item_batch(home: Path, name: str, path: Path, options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A real Engine batch of one local file: (its item, the batch's output folder)."""
    from pipeline.engine.core import Engine
    from pipeline.recipes.transcribe.sources import expand
    from tests.conftest import fast_settings

    e = Engine(home, settings=fast_settings())
    e.start()
    try:
        e.submit(name, [x.to_item() for x in expand(str(path)).entries], recipe="transcribe",
                 options={"summarizer": "offline", **options})
        assert e.wait(name, timeout=180).state == "done"
        return e.items(name)[0], Path(e.summary(name).output_dir)
    finally:
        e.shutdown()


def test_a_batch_on_speech_and_noise_raises_no_false_alarm(gap_audio: Gap, page_home: Path) -> None:
    """VAD off, so Whisper hears the noise (tiny.en writes nothing there): the guard runs, finds nothing to
    repair in the two real sentences, and the manifest and the Results page say it ran, with the language."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    path, gap = gap_audio
    item, folder = one_item_batch(page_home, "gap", path, {"vad": False})
    assert item["status"] == "done", item.get("error")
    quality = item["meta"]["quality"]
    tr = json.loads(Path(item["artifacts"]["json"]).read_text())
    assert not [s for s in tr["segments"] if in_gap(s, gap)], tr["segments"]
    assert (quality["found"], quality["flagged"], quality["vad"]) == (0, 0, True), quality
    text = " ".join(s["text"] for s in tr["segments"])
    assert share_found(SPEECH[0], text) >= 0.6 and share_found(SPEECH[2], text) >= 0.6, text
    assert not {"quality-repaired", "quality-flagged", "quality-error"} & set(item["flags"])
    row = json.loads((folder / "manifest.json").read_text())["items"][0]
    assert (row["quality_found"], row["quality_repaired"], row["quality_flagged"]) == (0, 0, 0)
    assert "## Quality" not in (folder / "errors.md").read_text()

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/screens/results.py").run()
    assert not at.exception, at.exception
    assert any("en 100%" in c.value for c in at.caption)  # the language and its probability
    assert any("Guard: no suspect segments" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_translate_refused_when_a_named_model_fell_back_to_the_bundled_one() -> None:
    """The model actually loaded decides: "small" that fell back offline to tiny.en cannot translate, and the
    item's error says why; the same model may transcribe."""
    from pipeline import errors

    bundled = t.get_model("tiny.en", "cpu", 1)
    fell_back = t.LoadedModel(bundled.model, bundled.key, "small", "model 'small' unavailable; used bundled tiny.en")
    with pytest.raises(errors.ConfigError, match=r"tiny.en is English-only \(model 'small' unavailable"):
        t.check_translate(fell_back, "translate")
    t.check_translate(fell_back, "transcribe")


@pytest.fixture(scope="module")
def reversed_audio(tmp_path_factory: pytest.TempPathFactory) -> Gap:
    """Speech, a sentence played backwards, speech: the VAD hears a voice all through, so Whisper decodes the
    backwards part too, and English-only tiny.en writes words that were never said there (every run, never
    the same words: its temperature fallback samples). Returns the file and the backwards span."""
    d = tmp_path_factory.mktemp("reversed")
    a, m, b = (make_speech(SPEECH[i], d / f"{i}.wav") for i in (0, 1, 2))
    out = d / "speech-backwards-speech.m4a"
    mix = ("[0:a]aresample=16000[x];[1:a]aresample=16000,areverse[y];[2:a]aresample=16000[z];"
           "[x][y][z]concat=n=3:v=0:a=1[o]")
    subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(a), "-i", str(m), "-i", str(b),
                    "-filter_complex", mix, "-map", "[o]", "-ac", "1", "-ar", "16000", str(out)],
                   check=True, timeout=60)
    first, junk = (len(q.load_audio(p)) / q.SR for p in (a, m))
    return out, (first, first + junk)


def test_junk_the_model_writes_by_itself_is_gone_or_flagged(reversed_audio: Gap, page_home: Path) -> None:
    """No junk planted: a real batch with the defaults (VAD, word times, repair) on audio whose middle is a
    sentence backwards. What tiny.en writes there scores low on its own words' probabilities (or loops); the
    guard re-decodes it and whatever still doubts is listed with its time, in meta and in errors.md. Most of
    the made-up words are gone or flagged; the real sentences either side stay; Results says where to listen."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    path, (lo, hi) = reversed_audio
    item, folder = one_item_batch(page_home, "backwards", path, {})
    assert item["status"] == "done", item.get("error")
    quality = item["meta"]["quality"]
    assert quality["found"] >= 1 and quality["vad"], quality  # the guard caught the model's own junk
    segments = json.loads(Path(item["artifacts"]["json"]).read_text())["segments"]
    still = {(x["start"], x["end"]) for x in quality.get("still", [])}
    assert len(still) == quality["flagged"] or len(still) == 10, quality  # every doubt has its time (up to 10)

    def words_in(flagged: bool | None) -> int:
        return sum(len(s["text"].split()) for s in segments if lo + 0.3 < (s["start"] + s["end"]) / 2 < hi - 0.3
                   and (flagged is None or ((round(s["start"], 2), round(s["end"], 2)) in still) == flagged))

    left = words_in(flagged=False)
    assert left <= max(3, words_in(None) // 2), (left, segments, quality)  # made-up words: gone or flagged
    text = " ".join(s["text"] for s in segments)
    assert share_found(SPEECH[0], text) >= 0.4 and share_found(SPEECH[2], text) >= 0.4, text
    report = (folder / "errors.md").read_text()
    assert "## Quality" in report and "backwards" in report
    if still:
        assert "still flagged at 00:" in report, report
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        at.switch_page("pages/screens/results.py").run()
        assert not at.exception, at.exception
        assert any("Still doubtful at 00:" in w.value for w in at.warning), [w.value for w in at.warning]

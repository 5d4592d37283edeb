"""The batched decoder (``batch_size`` > 1, faster-whisper's BatchedInferencePipeline) gives the same kind of
transcript as the sequential one: the same words, times in the file's timeline, word times; and the stage
runs it from the batch's option. Real tiny.en on espeak speech."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe.stages import transcribe as t


def _words(tr: dict) -> list[str]:  # type: ignore[type-arg]
    return re.findall(r"[a-z']+", " ".join(s["text"] for s in tr["segments"]).lower())


def test_batched_matches_sequential(media_files: dict[str, Path]) -> None:
    audio = media_files["wav"]
    loaded = t.get_model("tiny.en", "cpu", 1)
    samples = t.load_samples(audio)
    chunks = t.vad_chunks(samples)
    with t._using(loaded):
        one = t.transcribe_file(audio, loaded, samples=samples, chunks=chunks, word_timestamps=True)
        many = t.transcribe_file(audio, loaded, samples=samples, chunks=chunks, word_timestamps=True, batch_size=8)
    a, b = _words(one), _words(many)
    assert a and b
    same = len(set(a) & set(b)) / len(set(a) | set(b))
    assert same >= 0.8, (a, b)
    duration = len(samples) / 16000
    for seg in many["segments"]:
        assert 0 <= seg["start"] <= seg["end"] <= duration + 0.5
        assert seg["words"] and all(seg["start"] - 0.5 <= w["start"] <= w["end"] <= seg["end"] + 0.5
                                    for w in seg["words"])


def test_the_stage_reads_batch_size(tmp_path: Path, media_files: dict[str, Path]) -> None:
    wd = tmp_path / "item"
    wd.mkdir()
    ctx = StageContext(batch_id="b", batch_name="b", item_n=1, stage="transcribe", workdir=wd,
                       options={"batch_size": 8}, attempt=1, account=None, _progress=lambda f: None,
                       _cancelled=lambda: False, home=tmp_path / "home", pool_size=1)
    item = {"n": 1, "source": str(media_files["wav"]), "title": "talk", "workdir": str(wd), "status": "running",
            "artifacts": {"audio": str(media_files["wav"])}}
    result = t.run(item, ctx)
    tr = json.loads((wd / "transcript.json").read_text())
    assert tr["segments"] and _words(tr) and result.meta["transcript_source"] == "whisper"
    assert (wd / "transcript.srt").read_text().strip()

"""Segments appear while Whisper runs: the transcribe stage appends each one to the item's scratch file, which
the item panel reads, and drops the file once the whole transcript is written. Real tiny.en on espeak speech."""

from __future__ import annotations

from pathlib import Path

from pipeline.app.item_view import live_segments
from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe.stages import transcribe as t


def test_segments_are_written_as_they_come(tmp_path: Path, media_files: dict[str, Path]) -> None:
    wd = tmp_path / "item"
    wd.mkdir()
    seen: list[int] = []
    ctx = StageContext(batch_id="b", batch_name="b", item_n=1, stage="transcribe", workdir=wd, options={},
                       attempt=1, account=None, _progress=lambda f: seen.append(live_segments(item)[0]),
                       _cancelled=lambda: False, home=tmp_path / "home", pool_size=1)
    item = {"n": 1, "source": str(media_files["wav"]), "title": "talk", "workdir": str(wd), "status": "running",
            "artifacts": {"audio": str(media_files["wav"])}}
    loaded = t.get_model("tiny.en", "cpu", 1)
    with t._using(loaded):
        tr = t.transcribe_file(media_files["wav"], loaded, ctx)
    found, recent = live_segments(item)
    assert found == len(tr["segments"]) >= 1
    assert [s["text"] for s in recent] == [s["text"] for s in tr["segments"]][-12:]
    assert seen == sorted(seen) and seen[0] == 0  # the file grows as the segments come, before the stage ends
    t.run(item, ctx)
    assert (wd / "transcript.json").exists() and live_segments(item) == (0, [])

"""narrate: real espeak-ng and ffmpeg, offline; edge-tts is refused at the network edge (a closed proxy port)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline import errors
from pipeline.engine.stage import StageContext, StageResult
from pipeline.recipes.generate.stages import master, narrate

pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("ffmpeg") and shutil.which("ffprobe")),
                                reason="needs espeak-ng, ffmpeg and ffprobe")

SCENES = [
    "Rivers carve valleys, slowly, over thousands of years.",
    "Water carries sand and stone downstream to the sea.",
    "At the coast, the river drops its load and a delta forms!",
]


def write_plan(workdir: Path, scenes: list[str] = SCENES, **extra: Any) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    plan = {"title": "Rivers", "aspect": "9:16", "width": 1080, "height": 1920, "fps": 30,
            "voice": "en-US-AriaNeural", "rate": "+0%",
            "scenes": [{"index": i, "narration": t, "visual": "a river", "est_s": 3.0}
                       for i, t in enumerate(scenes, start=1)], **extra}
    (workdir / "plan.json").write_text(json.dumps(plan))


def make_ctx(workdir: Path, progress: list[float] | None = None, cancelled: Callable[[], bool] = lambda: False,
             **options: Any) -> StageContext:
    return StageContext(batch_id="b1", batch_name="test", item_n=1, stage="narrate", workdir=workdir,
                        options=options, attempt=1, account=None,
                        _progress=(progress.append if progress is not None else lambda f: None),
                        _cancelled=cancelled, home=workdir.parent)


def narrate_all(ctx: StageContext) -> StageResult:
    """narrate then master, as the recipe runs them: clips and timings, then the joined track."""
    spoken = narrate.run({}, ctx)
    mastered = master.run({}, ctx)
    return StageResult(artifacts={**mastered.artifacts, **spoken.artifacts}, meta={**mastered.meta, **spoken.meta})


def probe(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])


def integrated_loudness(path: Path) -> float:
    err = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
                         capture_output=True, check=True).stderr.decode()
    summary = err[err.rindex("Summary:"):]
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def narrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, list[float]]:
    """One espeak-only narration of three scenes, shared (copied) by the tests that only read or resume it."""
    wd = tmp_path_factory.mktemp("narrated") / "item"
    write_plan(wd)
    progress: list[float] = []
    result = narrate_all(make_ctx(wd, progress, tts="espeak"))
    return wd, result, progress


def copy_item(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)  # keeps mtimes
    return dst


def test_espeak_end_to_end(narrated: tuple[Path, Any, list[float]]) -> None:
    """Three scenes become one AAC track at -16 LUFS whose scene times add up to the real clip durations."""
    wd, result, progress = narrated
    doc = json.loads((wd / "narration.json").read_text())
    audio = wd / "narration.m4a"
    assert result.artifacts == {"narration": str(audio), "narration_json": str(wd / "narration.json")}
    assert result.meta["tts_engine"] == doc["engine"] == "espeak-ng"
    assert doc["audio"] == "narration.m4a" and doc["voice"] == "en-US-AriaNeural"
    clips = [probe(wd / s["audio"]) for s in doc["scenes"]]
    assert [s["audio"] for s in doc["scenes"]] == [f"narration/scene-0{i}.wav" for i in (1, 2, 3)]
    assert abs(probe(audio) - sum(clips)) < 0.2
    assert abs(doc["duration"] - probe(audio)) < 0.01 and result.meta["narration_s"] == doc["duration"]
    t = 0.0
    for scene, clip in zip(doc["scenes"], clips, strict=True):
        assert scene["start"] == pytest.approx(t, abs=0.002)
        assert scene["duration"] == pytest.approx(clip, abs=0.002)
        assert scene["engine"] == "espeak-ng"
        t = scene["end"]
        words = [w for w in doc["words"] if w["scene"] == scene["index"]]
        assert [w["text"] for w in words] == SCENES[scene["index"] - 1].split()
        for a, b in zip(words, words[1:], strict=False):
            assert a["start"] <= a["end"] <= b["start"] <= b["end"]
        assert scene["start"] <= words[0]["start"] and words[-1]["end"] <= scene["end"] + 0.001
    assert integrated_loudness(audio) == pytest.approx(-16.0, abs=2.0)
    assert progress[-1] >= 0.9 and progress == sorted(progress)


def test_edge_failure_falls_back(tmp_path: Path) -> None:
    """edge-tts refused at the network (closed proxy port) falls back to espeak-ng and leaves no 0-byte file."""
    wd = tmp_path / "item"
    write_plan(wd, SCENES[:2])
    result = narrate_all(make_ctx(wd, tts="auto", edge_proxy=f"http://127.0.0.1:{closed_port()}"))
    doc = json.loads((wd / "narration.json").read_text())
    assert doc["engine"] == "espeak-ng" and result.meta["tts_engine"] == "espeak-ng"
    assert "edge-tts" in result.meta["tts_fallback"]
    assert not [p for p in wd.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert not list(wd.rglob("*.mp3"))


def test_edge_only_mode_fails_retryably(tmp_path: Path) -> None:
    """With tts=edge an unreachable service is a retryable NetworkError, not a silent fallback."""
    wd = tmp_path / "item"
    write_plan(wd, SCENES[:1])
    with pytest.raises(errors.NetworkError):
        narrate.run({}, make_ctx(wd, tts="edge", edge_proxy=f"http://127.0.0.1:{closed_port()}"))
    assert not list((wd / "narration").glob("scene-*"))


def test_resume_reuses_scene_clips(narrated: tuple[Path, Any, list[float]], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Losing narration.m4a re-joins the kept clips without speaking again (no espeak-ng on PATH at all)."""
    wd = copy_item(narrated[0], tmp_path / "item")
    before = {p.name: p.stat().st_mtime_ns for p in (wd / "narration").iterdir()}
    old_doc = json.loads((wd / "narration.json").read_text())
    (wd / "narration.m4a").unlink()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ffmpeg", "ffprobe"):
        os.symlink(shutil.which(tool), bin_dir / tool)  # type: ignore[arg-type]
    monkeypatch.setenv("PATH", str(bin_dir))
    result = narrate_all(make_ctx(wd, tts="espeak"))
    assert {p.name: p.stat().st_mtime_ns for p in (wd / "narration").iterdir()} == before
    assert result.meta["narration_scenes_reused"] == 3
    doc = json.loads((wd / "narration.json").read_text())
    assert doc["scenes"] == old_doc["scenes"] and doc["words"] == old_doc["words"]
    assert (wd / "narration.m4a").stat().st_size > 0


def test_finished_narration_is_returned_as_is(narrated: tuple[Path, Any, list[float]], tmp_path: Path) -> None:
    """narration.json and narration.m4a present: the stage returns them without touching anything."""
    wd = copy_item(narrated[0], tmp_path / "item")
    mtimes = {p: p.stat().st_mtime_ns for p in wd.rglob("*") if p.is_file()}
    result = narrate_all(make_ctx(wd, tts="espeak"))
    assert result.meta["tts_engine"] == "espeak-ng"
    assert {p: p.stat().st_mtime_ns for p in wd.rglob("*") if p.is_file()} == mtimes


def test_changed_scene_text_is_spoken_again(narrated: tuple[Path, Any, list[float]], tmp_path: Path) -> None:
    """A scene whose narration changed is re-synthesized; the others are reused."""
    wd = copy_item(narrated[0], tmp_path / "item")
    (wd / "narration.m4a").unlink()
    write_plan(wd, [SCENES[0], "A different second scene.", SCENES[2]])
    before = {p.name: p.stat().st_mtime_ns for p in (wd / "narration").glob("*.wav")}
    result = narrate_all(make_ctx(wd, tts="espeak"))
    after = {p.name: p.stat().st_mtime_ns for p in (wd / "narration").glob("*.wav")}
    assert result.meta["narration_scenes_reused"] == 2
    assert after["scene-01.wav"] == before["scene-01.wav"] and after["scene-03.wav"] == before["scene-03.wav"]
    assert after["scene-02.wav"] != before["scene-02.wav"]
    words = [w["text"] for w in json.loads((wd / "narration.json").read_text())["words"] if w["scene"] == 2]
    assert words == ["A", "different", "second", "scene."]


def test_cancel_between_scenes_keeps_finished_ones(tmp_path: Path) -> None:
    """Cancelling after the first scene raises Cancelled and keeps scene 1 for the next run."""
    wd = tmp_path / "item"
    write_plan(wd, SCENES[:2])
    progress: list[float] = []
    with pytest.raises(errors.Cancelled):
        narrate_all(make_ctx(wd, progress, cancelled=lambda: bool(progress), tts="espeak"))
    assert sorted(p.name for p in (wd / "narration").iterdir()) == ["scene-01.json", "scene-01.wav"]
    assert not (wd / "narration.m4a").exists()


def test_missing_plan_and_bad_options(tmp_path: Path) -> None:
    """No plan.json is retryable (an earlier stage reruns); a bad tts mode or rate is invalid input."""
    wd = tmp_path / "item"
    wd.mkdir()
    with pytest.raises(errors.RetryableError):
        narrate.run({}, make_ctx(wd))
    write_plan(wd, SCENES[:1])
    with pytest.raises(errors.InvalidInput):
        narrate.run({}, make_ctx(wd, tts="festival"))
    write_plan(wd, SCENES[:1], rate="fast")
    with pytest.raises(errors.InvalidInput):
        narrate.run({}, make_ctx(wd))


def test_estimated_words_are_proportional_and_ordered() -> None:
    """Longer words get more time, punctuation leaves a pause, and the words fill [start, end]."""
    words = narrate.estimate_words("I understand, truly.", 1.0, 3.0)
    assert [w["text"] for w in words] == ["I", "understand,", "truly."]
    assert words[0]["start"] == 1.0 and words[-1]["end"] == pytest.approx(3.0, abs=0.002)
    lengths = [w["end"] - w["start"] for w in words]
    assert lengths[1] > lengths[2] > lengths[0]
    assert words[2]["start"] > words[1]["end"]  # the comma's pause
    assert narrate.espeak_voice_for("en-GB-SoniaNeural") == "en-gb"
    assert narrate.parse_rate("-15%") == -15

"""The generate recipe end to end through the CLI, offline: template script, espeak-ng narration, Pillow
frames, subtitles, a real ffmpeg render checked with ffprobe, metadata; then kill -9 mid-render and resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from state.reader import read_batch, read_summaries
from tests.conftest import ROOT, cli_env

FFPROBE = "/usr/bin/ffprobe"


def tm(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                          env=cli_env(home), capture_output=True, text=True, timeout=timeout)


def items(home: Path) -> list[dict[str, Any]]:
    s = read_summaries(home)
    return read_batch(home, s[0].id)[1] if s else []


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


RUN = ["run", "--recipe", "generate", "--tts", "espeak", "--length", "12", "--pace", "fast",
       "--set", "size=360x640", "--set", "script_engine=offline"]


def test_topics_become_checked_videos(tmp_path: Path) -> None:
    """Two topics → two 30 fps H.264/AAC videos whose subtitles follow the narration, and their metadata."""
    home = tmp_path / "home"
    topics = tmp_path / "topics.txt"
    topics.write_text("How tides work\nWhy bread rises\n")
    res = tm(home, *RUN, str(topics))
    assert res.returncode == 0, res.stderr
    for it in items(home):
        wd = Path(it["workdir"])
        info = probe(wd / "video.mp4")
        kinds = sorted(s["codec_type"] for s in info["streams"])
        assert kinds == ["audio", "video"]
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"], video["r_frame_rate"]) == (360, 640, "30/1")
        narration = json.loads((wd / "narration.json").read_text())
        assert abs(float(info["format"]["duration"]) - narration["duration"]) < 0.15
        srt = (wd / "subtitles.srt").read_text()
        assert "-->" in srt
        meta = json.loads((wd / "metadata.json").read_text())
        assert meta["title"] and len(meta["title"]) <= 100 and meta["privacy"] == "private"
        assert it["meta"]["upload"] == "skipped"


def test_killed_mid_render_resumes_without_rebuilding(tmp_path: Path) -> None:
    """kill -9 while rendering, then resume: narrated scenes and frames are reused (same files), the video finishes."""
    home = tmp_path / "home"
    topics = tmp_path / "topics.txt"
    topics.write_text("How volcanoes erupt\n")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), *RUN, "--length", "30",
                             str(topics)], cwd=ROOT, env=cli_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        its = items(home)
        if its and its[0].get("stage") in ("encode", "render"):  # the scene encode is most of the render
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    it = items(home)[0]
    assert it["status"] in ("running", "pending") and it.get("stage_index", 0) >= 5, it
    wd = Path(it["workdir"])
    before = {p: p.stat().st_mtime_ns for p in [*(wd / "narration").iterdir(), *(wd / "frames").iterdir()]}
    assert before
    res = tm(home, "resume", read_summaries(home)[0].name)
    assert res.returncode == 0, res.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rebuilt
    assert probe(wd / "video.mp4")["streams"]

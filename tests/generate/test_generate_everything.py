"""Issue 16's "done when", end to end through the real CLI: held-out topics render over pictures from a fake
stock provider on loopback, with a music bed, word-by-word burnt-in captions, motion, a soft subtitle track,
a thumbnail, credits in the description and the batch ZIP. Nothing here is planted: every file comes from
the stages (espeak-ng, Pillow, ffmpeg, libass)."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.common import ffmpeg
from state.reader import read_batch, read_summaries
from tests.conftest import ROOT, cli_env
from tests.fake_stock import FakeStock
from tests.generate.test_music import loudness, make_track

TOPICS = ["How volcanoes erupt", "Why do cats purr?"]  # held out: no other test renders these


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStock]:
    with FakeStock(tmp_path_factory.mktemp("stock")) as fake:
        yield fake


def probe_streams(path: Path) -> list[str]:
    exe = str(Path(ffmpeg.ffmpeg_exe()).with_name("ffprobe"))
    exe = exe if Path(exe).exists() else "ffprobe"
    out = subprocess.run([exe, "-v", "error", "-show_entries", "stream=codec_name", "-of", "json", str(path)],
                         capture_output=True, check=True, timeout=60).stdout
    return [s["codec_name"] for s in json.loads(out)["streams"]]


def test_held_out_topics_with_stock_pictures_music_karaoke_and_a_zip(stock: FakeStock, tmp_path: Path) -> None:
    home, music = tmp_path / "home", tmp_path / "music"
    music.mkdir()
    make_track(music / "bed.mp3", seconds=6.0)
    topics = tmp_path / "topics.txt"
    topics.write_text("\n".join(TOPICS) + "\n")
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(topics), "--recipe", "generate",
         "--tts", "espeak", "--length", "10", "--pace", "fast", "--set", "size=270x480", "--set",
         "script_engine=offline", "--media-provider", "openverse", "--set", f"openverse_base_url={stock.base_url}",
         "--music-dir", str(music), "--caption-style", "karaoke", "--burn-subtitles", "--embed-subtitles",
         "--motion", "--thumbnail", "title"],
        cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    header, items = read_batch(home, read_summaries(home)[0].id)
    assert [it["status"] for it in items] == ["done", "done"], [it.get("error") for it in items]
    assert {q for s in stock.api_calls("/v1/images") for q in [s.query.get("q", "")]}  # asked per scene
    folder = Path(items[0]["workdir"]).parent
    for it in items:
        wd, meta = Path(it["workdir"]), it["meta"]
        visuals = json.loads((wd / "visuals.json").read_text())
        assert visuals["scenes"] and all(s["provider"] == "openverse" and s["kind"] == "image"
                                         for s in visuals["scenes"]), visuals
        assert len({s["path"] for s in visuals["scenes"]}) == len(visuals["scenes"])  # no picture twice
        assert meta["music"]["track"] == "bed.mp3" and not meta["music"].get("error"), meta["music"]
        assert -17.5 < loudness(wd / "video.mp4") < -14.5
        ass = (wd / "subtitles.ass").read_text()
        assert ass.count("\\1c&H") >= 5  # one line per spoken word, that word recoloured
        assert probe_streams(wd / "video.mp4").count("mov_text") == 1
        assert (wd / "thumbnail.jpg").stat().st_size > 5_000
        description = json.loads((wd / "metadata.json").read_text())["description"]
        if any(s.get("attribution_required") for s in visuals["scenes"]):
            assert "Credits" in description and visuals["scenes"][0]["licence"].split()[0] in description
        assert not [f for f in it.get("flags") or [] if f.endswith(("fallback", "failed"))
                    and f != "script-fallback"], it["flags"]
    with zipfile.ZipFile(folder / f"{folder.name}.zip") as zf:
        names = set(zf.namelist())
    for it in items:
        d = Path(it["workdir"]).name
        assert {f"{d}/video.mp4", f"{d}/subtitles.srt", f"{d}/subtitles.ass", f"{d}/thumbnail.jpg",
                f"{d}/metadata.json", f"{d}/visuals.json"} <= names, sorted(names)
    assert {"manifest.json", "errors.md", "stats.json"} <= names
    assert not [n for n in names if "/media/" in n or "/frames/" in n]  # the deliverables, not the scratch

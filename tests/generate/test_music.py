"""The music bed in the master stage: real espeak-ng narration, real ffmpeg-made tracks, levels measured with numpy.

The test track is a chord (220/277/330 Hz) with a quiet 12 kHz marker tone. espeak-ng speaks at
22.05 kHz, so nothing in the narration reaches 12 kHz: the marker's level in the mix is the bed's
level alone, under speech and in the gaps, and ducking and fades can be measured in the final AAC.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import errors
from pipeline.common import ffmpeg
from pipeline.engine.stage import StageContext, StageResult
from pipeline.recipes.generate import music
from pipeline.recipes.generate.options import parse_row
from pipeline.recipes.generate.stages import master, narrate
from tests.generate.test_narrate import write_plan

FFPROBE = ffmpeg.ffprobe_exe()
pytestmark = pytest.mark.skipif(not (shutil.which("espeak-ng") and ffmpeg.find_ffmpeg() and FFPROBE),
                                reason="needs espeak-ng, ffmpeg and ffprobe")

RATE = 48_000
WIN = 4_800  # 0.1 s windows
SCENES = ["Rivers carve valleys over the years.", "",  # a 3 s pause: the bed alone
          "The river drops its load and a delta forms!"]


def ff(*args: str) -> bytes:
    return subprocess.run([ffmpeg.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True,
                          capture_output=True, timeout=60).stdout


def make_track(path: Path, seconds: float = 4.0, marker_hz: int = 12_000) -> Path:
    """A stereo chord with a marker tone, encoded by ffmpeg in the format the suffix names."""
    tones = [f"sine=f={f}:r={RATE}:d={seconds}" for f in (220, 277, 330, marker_hz)]
    inputs = [a for t in tones for a in ("-f", "lavfi", "-i", t)]
    ff(*inputs, "-filter_complex", "[0][1][2]amix=inputs=3[c];[3]volume=0.3[m];[c][m]amix=inputs=2,"
       "pan=stereo|c0=c0|c1=c0", str(path))
    return path


def decode(path: Path) -> np.ndarray:
    """The file as 48 kHz mono float samples."""
    return np.frombuffer(ff("-i", str(path), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"), np.float32)


def band_db(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Energy between ``lo`` and ``hi`` Hz per 0.1 s window, in dB."""
    n = len(x) // WIN
    freqs = np.fft.rfftfreq(WIN, 1 / RATE)
    sel = (freqs > lo) & (freqs < hi)
    frames = x[:n * WIN].reshape(n, WIN) * np.hanning(WIN)
    return 10 * np.log10((np.abs(np.fft.rfft(frames, axis=1))[:, sel] ** 2).sum(axis=1) + 1e-12)


def marker_db(x: np.ndarray) -> np.ndarray:
    return band_db(x, 11_800, 12_200)


def loudness(path: Path) -> float:
    err = subprocess.run([ffmpeg.ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128",
                          "-f", "null", "-"], capture_output=True, check=True, timeout=60).stderr.decode()
    return float(re.search(r"I:\s+(-?[\d.]+) LUFS", err[err.rindex("Summary:"):]).group(1))  # type: ignore[union-attr]


def streams(path: Path) -> tuple[int, float]:
    """(channels, seconds) of the decoded track."""
    out = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "a", "-show_entries", "stream=channels",
                          "-of", "json", str(path)], capture_output=True, check=True, timeout=60).stdout
    return int(json.loads(out)["streams"][0]["channels"]), len(decode(path)) / RATE


def make_ctx(workdir: Path, item_n: int = 1, cancelled: Callable[[], bool] = lambda: False,
             **options: Any) -> StageContext:
    return StageContext(batch_id="b1", batch_name="test", item_n=item_n, stage="master", workdir=workdir,
                        options={"tts": "espeak", **options}, attempt=1, account=None, _progress=lambda f: None,
                        _cancelled=cancelled, home=workdir.parent)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a-broken.mp3 (not audio), b-chord.mp3 (the marker chord), c-other.wav (another chord), notes.txt."""
    folder = tmp_path_factory.mktemp("music")
    (folder / "a-broken.mp3").write_bytes(b"ID3 this is not an mp3 at all" * 50)
    make_track(folder / "b-chord.mp3")
    make_track(folder / "c-other.wav", seconds=2.0, marker_hz=13_000)
    (folder / "notes.txt").write_text("not a track")
    return folder


@pytest.fixture(scope="module")
def narrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One espeak-ng narration (speech, 3 s pause, speech) whose clips every test masters its own way."""
    wd = tmp_path_factory.mktemp("narrated") / "item"
    write_plan(wd, SCENES)
    narrate.run({}, make_ctx(wd))
    return wd


@pytest.fixture
def item(tmp_path: Path, narrated: Path) -> Path:
    wd = tmp_path / "item"
    shutil.copytree(narrated, wd)
    return wd


def spans(wd: Path) -> tuple[float, tuple[float, float]]:
    """(duration, the pause scene) from narration.json."""
    doc = json.loads((wd / "narration.json").read_text())
    pause = next((s["start"], s["end"]) for s in doc["scenes"] if s["engine"] == "silence")
    return doc["duration"], pause


def speech_windows(wd: Path) -> np.ndarray:
    """Indexes of 0.1 s windows where the narration alone is loud (voiced speech), from its own clips."""
    doc = json.loads((wd / "narration.json").read_text())
    voice = np.concatenate([decode(wd / s["audio"]) for s in doc["scenes"]])
    level = band_db(voice, 100, 4_000)
    return np.flatnonzero(level > level.max() - 20)


def in_pause(wd: Path, levels: np.ndarray) -> float:
    """The median level over the pause, once the duck has released (0.4 s)."""
    _, pause = spans(wd)
    return float(np.median(levels[int(pause[0] * 10) + 6:int(pause[1] * 10) - 1]))


def under_speech(wd: Path, levels: np.ndarray) -> float:
    """The median level over voiced windows outside the fades."""
    duration = spans(wd)[0]
    windows = [i for i in speech_windows(wd) if music.FADE_IN_S * 10 <= i < (duration - music.FADE_OUT_S) * 10]
    assert len(windows) >= 8
    return float(np.median(levels[windows]))


def has_bed(wd: Path) -> bool:
    """The marker tone is in the pause, far above the AAC noise floor."""
    marker = marker_db(decode(wd / "narration.m4a"))
    return in_pause(wd, marker) > marker.min() + 25


def run_master(wd: Path, item: dict[str, Any] | None = None, **options: Any) -> StageResult:
    return master.run(item or {}, make_ctx(wd, **options))


def test_bed_is_ducked_under_speech_faded_and_mastered_at_minus_16(item: Path, tracks: Path) -> None:
    """The bed fills the pause, drops ≥10 dB under speech, fades at both ends; -16 LUFS, narration's length."""
    res = run_master(item, music_dir=str(tracks / "b-chord.mp3"))
    out = item / "narration.m4a"
    channels, seconds = streams(out)
    assert channels == 1 and abs(seconds - spans(item)[0]) < 0.05
    assert abs(loudness(out) - (-16.0)) <= 0.5  # the limited mix lets loudnorm apply one gain
    marker = marker_db(decode(out))
    gap, under = in_pause(item, marker), under_speech(item, marker)
    assert gap - under >= 10.0, (gap, under)
    assert marker[0] <= gap - 15 and marker[len(marker) - 1] <= gap - 15  # faded in and out
    assert has_bed(item)
    meta = res.meta["music"]
    assert meta["track"] == "b-chord.mp3" and meta["duck"] is True and meta["looped"] is True
    assert "error" not in meta and "flags" not in res.meta
    assert str(tracks) not in json.dumps(res.meta)


def test_without_duck_the_bed_keeps_its_level_under_speech(item: Path, tracks: Path) -> None:
    """duck=0: the marker under speech is within a few dB of the pause (the duck is what lowers it 10+ dB).

    What remains (1-3 dB) is the peak limiter: speech peaks pull the whole mix down, the bed with them.
    """
    run_master(item, music_dir=str(tracks / "b-chord.mp3"), duck="0")
    out = item / "narration.m4a"
    marker = marker_db(decode(out))
    gap, under = in_pause(item, marker), under_speech(item, marker)
    assert abs(gap - under) < 4.0, (gap, under)
    assert abs(loudness(out) - (-16.0)) <= 0.5


def test_music_db_sets_the_bed_level_against_the_voice(item: Path, tracks: Path) -> None:
    """music_db -30 instead of -18: the bed in the pause sits ≈12 dB lower relative to the voice."""
    ratios = []
    for db in ("-18", "-30"):
        run_master(item, music_dir=str(tracks / "b-chord.mp3"), music_db=db)
        x = decode(item / "narration.m4a")
        voice = band_db(x, 1_000, 4_000)  # speech, and nothing of the chord
        ratios.append(in_pause(item, marker_db(x)) - under_speech(item, voice))
    assert 10.0 <= ratios[0] - ratios[1] <= 14.0, ratios


def test_broken_track_gives_the_narration_only_master_with_the_reason(item: Path, tracks: Path) -> None:
    """A music file ffmpeg cannot decode: mono narration-only master at -16 LUFS, meta says why, item flagged."""
    res = run_master(item, music_dir=str(tracks / "a-broken.mp3"))
    out = item / "narration.m4a"
    channels, seconds = streams(out)
    assert channels == 1 and abs(seconds - spans(item)[0]) < 0.05
    assert abs(loudness(out) - (-16.0)) <= 1.0
    assert not has_bed(item)
    meta = res.meta["music"]
    assert meta["track"] == "a-broken.mp3" and "cannot decode a-broken.mp3" in meta["error"]
    assert res.meta["flags"] == [music.FLAG]
    assert str(tracks) not in json.dumps(res.meta)


def test_missing_folder_is_flagged_not_fatal(item: Path, tmp_path: Path) -> None:
    """music_dir that does not exist: the video's master is made and the meta names the folder, not its path."""
    res = run_master(item, music_dir=str(tmp_path / "nowhere" / "tunes"))
    meta = res.meta["music"]
    assert (meta["track"], meta["error"]) == (None, "music_dir 'tunes' not found")
    assert res.meta["flags"] == [music.FLAG] and str(tmp_path) not in json.dumps(res.meta)
    assert (item / "narration.m4a").stat().st_size > 0 and not has_bed(item)


def test_folder_skips_undecodable_tracks_and_picks_by_item_number(item: Path, tracks: Path) -> None:
    """Item 1 starts at a-broken.mp3 (skipped, named) and gets b-chord.mp3; item 3 gets c-other.wav."""
    res = master.run({}, make_ctx(item, item_n=1, music_dir=str(tracks)))
    meta = res.meta["music"]
    assert meta["track"] == "b-chord.mp3"
    assert [s["track"] for s in meta["skipped"]] == ["a-broken.mp3"] and "error" not in meta
    res3 = master.run({}, make_ctx(item, item_n=3, music_dir=str(tracks)))
    assert res3.meta["music"]["track"] == "c-other.wav" and "skipped" not in res3.meta["music"]
    marker13 = band_db(decode(item / "narration.m4a"), 12_800, 13_200)
    assert in_pause(item, marker13) > marker13.min() + 25  # c-other's 13 kHz marker, looped


def test_per_row_music_dir_from_a_csv_cell(item: Path, tracks: Path) -> None:
    """A CSV row's music_dir (through parse_row into the item's meta) gives that item a bed; the batch has none."""
    row_item = {"meta": parse_row({"music_dir": str(tracks / "b-chord.mp3")})}
    res = master.run(row_item, make_ctx(item))
    assert res.meta["music"]["track"] == "b-chord.mp3" and has_bed(item)
    assert master.is_current(make_ctx(item), row_item)
    assert not master.is_current(make_ctx(item))  # the batch's options alone ask for no music


def test_resume_reuses_the_master_until_a_music_input_changes(item: Path, tmp_path: Path, tracks: Path) -> None:
    """Same inputs: the master is reused (same file); music_db or the track file changing makes it again."""
    song = tmp_path / "song.mp3"
    shutil.copy(tracks / "b-chord.mp3", song)
    run_master(item, music_dir=str(song))
    out = item / "narration.m4a"
    first = out.stat().st_mtime_ns
    res = run_master(item, music_dir=str(song))
    assert out.stat().st_mtime_ns == first and res.meta["music"]["track"] == "song.mp3"
    assert not master.is_current(make_ctx(item, music_dir=str(song), music_db="-24"))
    assert not master.is_current(make_ctx(item))  # music no longer asked for
    make_track(song, seconds=3.0)  # the track replaced
    assert not master.is_current(make_ctx(item, music_dir=str(song)))
    res = run_master(item)  # music dropped: a mono master again, and the stale record cleared
    assert not has_bed(item) and "music" not in res.meta
    res = master.run({"meta": {"music": {"track": "song.mp3"}}}, make_ctx(item))
    assert res.meta["music"] is None


def test_legacy_master_without_record_stays_current(item: Path) -> None:
    """A narration.m4a made before music existed (no master.json) is current while no music is asked for."""
    run_master(item)
    (item / master.MASTER_JSON).unlink()
    assert master.is_current(make_ctx(item))
    assert not master.is_current(make_ctx(item, music_dir=str(item / "x.mp3")))


def test_cancel_while_mastering_stops_the_stage(item: Path, tracks: Path) -> None:
    """Cancelling is not a music failure: it ends the stage (ffmpeg killed), and no master is recorded."""
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 1  # passes the stage's own check, then every ffmpeg poll says stop

    (item / "narration.m4a").unlink(missing_ok=True)
    with pytest.raises(errors.Cancelled):
        master.run({}, make_ctx(item, cancelled=cancelled, music_dir=str(tracks / "b-chord.mp3")))
    assert not (item / master.MASTER_JSON).exists()


def test_rotation_and_listing_are_deterministic(tracks: Path) -> None:
    """Audio files in name order, hidden and non-audio files left out; item n starts at track n (wrapping)."""
    found = music.list_tracks(str(tracks))
    names = [p.name for p in found.paths]
    assert names == ["a-broken.mp3", "b-chord.mp3", "c-other.wav"] and found.error is None
    assert [p.name for p in music.rotation(found.paths, 5)] == ["b-chord.mp3", "c-other.wav", "a-broken.mp3"]
    assert music.list_tracks(None).paths == [] and music.inputs_key(music.list_tracks(None), 1, -18, True) is None

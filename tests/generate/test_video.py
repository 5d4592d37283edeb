"""Video stages with real Pillow and real ffmpeg on a small item: frames, subtitles, render, checks and resumes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline import errors
from pipeline.common import ffmpeg
from pipeline.engine.stage import StageContext
from pipeline.recipes.generate.stages import frames, render, subtitles

W, H = 360, 640
AUDIO_S = 4.0
TEXTS = [
    "Welcome to the mill, where every video starts as a plan with scenes.",
    "Each scene gets one picture.",
    "Then ffmpeg encodes the stills quickly and a probe checks the result twice over.",
]
FFPROBE = ffmpeg.ffprobe_exe()


def make_words(nominal: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Scene spans and word timings over ``nominal`` seconds (as a TTS engine would report them)."""
    per = nominal / len(TEXTS)
    scenes, words = [], []
    for k, text in enumerate(TEXTS):
        start, spoken = k * per, per - 0.25
        toks = text.split()
        step = spoken / len(toks)
        words += [{"start": round(start + i * step, 3), "end": round(start + (i + 0.8) * step, 3), "text": t}
                  for i, t in enumerate(toks)]
        scenes.append({"index": k + 1, "start": round(start, 3), "end": round(start + spoken, 3),
                       "duration": round(spoken, 3)})
    return scenes, words


@pytest.fixture(scope="module")
def narration_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audio") / "narration.m4a"
    subprocess.run([ffmpeg.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={AUDIO_S}", "-c:a", "aac", "-b:a", "64k", str(out)],
                   check=True, timeout=60)
    return out


@pytest.fixture
def item(tmp_path: Path, narration_audio: Path) -> Path:
    """An item folder as plan and narrate leave it; narration.json's clock runs 2.5% short of the real audio."""
    wd = tmp_path / "item"
    wd.mkdir()
    plan = {"title": "Test", "aspect": "9:16", "width": W, "height": H, "fps": 30, "theme": "dark",
            "background_dir": None,
            "scenes": [{"index": k + 1, "narration": t, "visual": f"picture {k + 1}", "est_s": 1.3}
                       for k, t in enumerate(TEXTS)]}
    (wd / "plan.json").write_text(json.dumps(plan))
    nominal = AUDIO_S * 0.975
    scenes, words = make_words(nominal)
    shutil.copy(narration_audio, wd / "narration.m4a")
    (wd / "narration.json").write_text(json.dumps({"audio": "narration.m4a", "duration": nominal,
                                                   "engine": "espeak-ng", "scenes": scenes, "words": words}))
    return wd


def ctx_for(wd: Path, stage: str, cancelled: Callable[[], bool] = lambda: False,
            progress: Callable[[float], None] = lambda f: None, **options: Any) -> StageContext:
    return StageContext(batch_id="b1", batch_name="test", item_n=1, stage=stage, workdir=wd, options=options,
                        attempt=1, account=None, _progress=progress, _cancelled=cancelled,
                        home=wd.parent / "home", pool_size=1)


def build(wd: Path, **options: Any) -> dict[str, Any]:
    frames.run({}, ctx_for(wd, "frames"))
    subtitles.run({}, ctx_for(wd, "subtitles"))
    render.run({}, ctx_for(wd, "render", **options))
    return json.loads((wd / "render.json").read_text())


def ffprobe(path: Path) -> dict[str, Any]:
    res = subprocess.run([FFPROBE or "ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", str(path)], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(res.stdout)


def mtimes(wd: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((wd / "frames").glob("*.png"))}


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        a, b = re.findall(r"(\d\d):(\d\d):(\d\d),(\d{3})", lines[1])
        to_s = [int(x[0]) * 3600 + int(x[1]) * 60 + int(x[2]) + int(x[3]) / 1000 for x in (a, b)]
        cues.append((to_s[0], to_s[1], lines[2:]))
    return cues


def parse_ass(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for line in text.splitlines():
        if line.startswith("Dialogue:"):
            parts = line.split(",", 9)
            t = [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in (x.split(":") for x in parts[1:3])]
            cues.append((t[0], t[1], parts[9].split("\\N")))
    return cues


# ---------------------------------------------------------------- frames


def test_frames_drawn_then_skipped(item: Path) -> None:
    """One PNG per scene at the plan size; a rerun draws nothing, a missing scene alone is redrawn."""
    r = frames.run({}, ctx_for(item, "frames"))
    assert r.meta["frames_made"] == 3
    pngs = sorted((item / "frames").glob("scene-*.png"))
    assert [p.name for p in pngs] == ["scene-01.png", "scene-02.png", "scene-03.png"]
    for p in pngs:
        with Image.open(p) as im:
            assert im.size == (W, H)
            assert len(set(im.convert("L").getdata())) > 20  # text and gradient, not a flat fill
    before = mtimes(item)
    r2 = frames.run({}, ctx_for(item, "frames"))
    assert r2.meta == {**r2.meta, "frames_made": 0, "frames_reused": 3}
    assert mtimes(item) == before
    (item / "frames" / "scene-02.png").unlink()
    r3 = frames.run({}, ctx_for(item, "frames"))
    assert r3.meta["frames_made"] == 1
    after = mtimes(item)
    assert after["scene-01.png"] == before["scene-01.png"] and after["scene-03.png"] == before["scene-03.png"]
    assert not list((item / "frames").glob("*.part"))


def test_frames_background_pictures_cached(item: Path, tmp_path: Path) -> None:
    """Background pictures are picked by scene index, cover-cropped once and cached by content hash."""
    bg = tmp_path / "bg"
    bg.mkdir()
    Image.new("RGB", (800, 300), (200, 30, 30)).save(bg / "a.jpg")
    Image.new("RGB", (100, 900), (30, 200, 30)).save(bg / "b.png")
    plan = json.loads((item / "plan.json").read_text())
    plan["background_dir"] = str(bg)
    (item / "plan.json").write_text(json.dumps(plan))
    frames.run({}, ctx_for(item, "frames"))
    cache = sorted((item.parent / "home" / "cache" / "backgrounds").glob("*.jpg"))
    assert len(cache) == 2 and all(p.name.endswith(f"-{W}x{H}.jpg") for p in cache)
    cached_at = {p: p.stat().st_mtime_ns for p in cache}
    with Image.open(item / "frames" / "scene-01.png") as im1, Image.open(item / "frames" / "scene-02.png") as im2:
        r1, g1, _ = im1.convert("RGB").getpixel((5, 5))
        r2, g2, _ = im2.convert("RGB").getpixel((5, 5))
    assert r1 > g1 and g2 > r2  # scene 1 → a.jpg (red), scene 2 → b.png (green), dimmed by the theme
    shutil.rmtree(item / "frames")
    frames.run({}, ctx_for(item, "frames"))
    assert {p: p.stat().st_mtime_ns for p in cache} == cached_at


def test_frames_cancel(item: Path) -> None:
    """A cancelled frames stage stops between scenes with Cancelled."""
    with pytest.raises(errors.Cancelled):
        frames.run({}, ctx_for(item, "frames", cancelled=lambda: True))


def test_fit_text_shrinks_long_text() -> None:
    """Long text gets a smaller font than short text, and every wrapped line fits the box."""
    font_short, lines_short, _ = frames.fit_text("Short.", (300, 300), 10, 60)
    long_text = " ".join(TEXTS * 3)
    font_long, lines_long, lh = frames.fit_text(long_text, (300, 300), 10, 60)
    assert font_long.size < font_short.size
    assert all(font_long.getlength(line) <= 300 for line in lines_long)
    assert len(lines_long) * lh <= 300


# ---------------------------------------------------------------- subtitles


def test_srt_cue_rules(item: Path) -> None:
    """SRT cues: ≤ 42 chars, ≤ 2 lines, monotonic, non-overlapping, on the word timings (±50 ms), all words once."""
    subtitles.run({}, ctx_for(item, "subtitles"))
    cues = parse_srt((item / "subtitles.srt").read_text())
    words = json.loads((item / "narration.json").read_text())["words"]
    assert len(cues) >= 3
    prev_end = 0.0
    for start, end, lines in cues:
        assert 1 <= len(lines) <= 2 and all(len(x) <= 42 for x in lines)
        assert start >= prev_end and end > start
        prev_end = end
    assert " ".join(" ".join(c[2]) for c in cues).split() == [w["text"] for w in words]
    k = 0
    for i, (start, end, lines) in enumerate(cues):
        n = len(" ".join(lines).split())
        first, last = words[k], words[k + n - 1]
        assert abs(start - first["start"]) <= 0.05
        # The end is the last word's end, unless a too-short cue was stretched to the 0.5 s minimum / next cue.
        nxt = cues[i + 1][0] if i + 1 < len(cues) else None
        assert abs(end - last["end"]) <= 0.05 or (end > last["end"] and (end - start <= 0.55 or end == nxt))
        k += n


def test_ass_playres_style_and_cues(item: Path) -> None:
    """The ASS canvas is the video size, the style is 64 px at 1080 scaled, and its cues keep the same rules."""
    subtitles.run({}, ctx_for(item, "subtitles"))
    text = (item / "subtitles.ass").read_text()
    assert f"PlayResX: {W}" in text and f"PlayResY: {H}" in text
    style = next(line for line in text.splitlines() if line.startswith("Style: Default,"))
    fields = style.split(",")
    assert fields[1] == "DejaVu Sans" and int(fields[2]) == round(64 * W / 1080)
    assert int(fields[16]) >= 1  # outline
    cues = parse_ass(text)
    assert cues
    prev_end = 0.0
    for start, end, lines in cues:
        assert 1 <= len(lines) <= 2 and all(len(x) <= 42 for x in lines)
        assert start >= prev_end and end > start
        prev_end = end


def test_subtitles_idempotent_and_wordless_fallback(item: Path) -> None:
    """A rerun keeps the files; without word timings the scene narration is cued over the scene spans."""
    subtitles.run({}, ctx_for(item, "subtitles"))
    stamp = (item / "subtitles.ass").stat().st_mtime_ns
    assert subtitles.run({}, ctx_for(item, "subtitles")).meta.get("subtitles_reused")
    assert (item / "subtitles.ass").stat().st_mtime_ns == stamp
    nar = json.loads((item / "narration.json").read_text())
    nar["words"] = []
    (item / "narration.json").write_text(json.dumps(nar))
    subtitles.run({}, ctx_for(item, "subtitles"))
    cues = parse_srt((item / "subtitles.srt").read_text())
    assert " ".join(" ".join(c[2]) for c in cues) == " ".join(TEXTS)
    assert cues[0][0] == 0.0 and cues[-1][1] <= nar["scenes"][-1]["end"] + 0.01


# ---------------------------------------------------------------- render


def test_scene_frames_scaled_to_audio() -> None:
    """Scene spans start at each scene's narration start, are scaled to the real audio and sum to its frames."""
    plan = {"scenes": [{"index": 1}, {"index": 2}, {"index": 3}]}
    nar = {"duration": 9.0, "scenes": [{"index": 1, "start": 0.2, "end": 2.8}, {"index": 2, "start": 3.0, "end": 5.9},
                                       {"index": 3, "start": 6.0, "end": 8.7}]}
    segs = render.scene_frames(plan, nar, 10.0)
    assert [s.frames for s in segs] == [100, 100, 100]
    assert [s.start_frame for s in segs] == [0, 100, 200]
    # No narration scene times: the plan's estimates, and never a scene without a frame.
    tight = render.scene_frames({"scenes": [{"index": 1, "est_s": 9}, {"index": 2, "est_s": 0.01},
                                            {"index": 3, "est_s": 0.01}]}, {"scenes": []}, 0.5)
    assert [s.frames for s in tight] == [13, 1, 1]
    with pytest.raises(errors.InvalidInput):
        render.scene_frames({"scenes": [{"index": i} for i in range(1, 5)]}, {"scenes": []}, 0.1)


def test_encoder_detection_is_libx264_here() -> None:
    """No GPU here: the hardware encoders ffmpeg lists fail their test encode and libx264 is chosen."""
    if Path("/dev/nvidia0").exists() or Path("/dev/dri/renderD128").exists():
        pytest.skip("this machine has a GPU device")
    assert ffmpeg.detect_encoder().name == "libx264"
    assert ffmpeg.detect_encoder() is ffmpeg.detect_encoder()  # cached per process


def test_render_checked_output(item: Path) -> None:
    """video.mp4 is H.264 CFR 30 fps + AAC at the plan size, as long as the audio, A/V within 100 ms."""
    rec = build(item)
    assert rec["checked"] is True and rec["encoder"] == ffmpeg.detect_encoder().name
    info = ffprobe(item / "video.mp4")
    streams = info["streams"]
    assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
    v = next(s for s in streams if s["codec_type"] == "video")
    a = next(s for s in streams if s["codec_type"] == "audio")
    assert v["codec_name"] == "h264" and a["codec_name"] == "aac"
    assert (v["width"], v["height"]) == (W, H)
    assert v["r_frame_rate"] == "30/1" and v["avg_frame_rate"] == "30/1"
    assert int(v["nb_frames"]) == round(AUDIO_S * 30)
    assert abs(float(info["format"]["duration"]) - AUDIO_S) <= 0.1
    assert abs(float(v["duration"]) - float(a["duration"])) <= 0.1
    assert rec["width"] == W and rec["height"] == H and rec["fps"] == 30
    assert not list(item.glob("*.part"))

    # Idempotent: a second run returns the checked file untouched.
    stamp = (item / "video.mp4").stat().st_mtime_ns
    again = render.run({}, ctx_for(item, "render"))
    assert again.meta.get("render_reused") and (item / "video.mp4").stat().st_mtime_ns == stamp


def test_render_check_failure_raises_with_numbers(item: Path) -> None:
    """The post-render check raises PermanentError naming the numbers that are off."""
    build(item)
    with pytest.raises(errors.PermanentError, match=r"duration 4\.0\d*s, audio is 5\.000s"):
        render.check_video(item / "video.mp4", 5.0, (W, H))
    with pytest.raises(errors.PermanentError, match="size 360x640, want 720x1280"):
        render.check_video(item / "video.mp4", AUDIO_S, (720, 1280))


def test_render_burn_in(item: Path, tmp_path: Path) -> None:
    """With burn_subtitles the cue text is drawn into the bottom of the picture and the file still checks out."""
    plain = tmp_path / "plain"
    shutil.copytree(item, plain)
    build(plain)
    rec = build(item, burn_subtitles=True)
    assert rec["checked"] and rec["burn_subtitles"]
    cue_start, cue_end, _ = parse_ass((item / "subtitles.ass").read_text())[0]
    t = (cue_start + cue_end) / 2

    def grab(wd: Path) -> Image.Image:
        out = wd / "grab.png"
        subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-ss", f"{t:.3f}", "-i", str(wd / "video.mp4"),
                        "-frames:v", "1", str(out)], check=True, timeout=30)
        return Image.open(out).convert("L")

    a, b = grab(plain), grab(item)
    band = (0, int(H * 0.7), W, H)  # where the subtitles sit
    top = (0, 0, W, int(H * 0.5))

    def mean_diff(box: tuple[int, int, int, int]) -> float:
        pairs = zip(a.crop(box).getdata(), b.crop(box).getdata(), strict=True)
        return sum(abs(x - y) for x, y in pairs) / ((box[2] - box[0]) * (box[3] - box[1]))

    assert mean_diff(band) > 2.0  # white outlined text over a dark gradient (measured ≈ 8)
    assert mean_diff(top) < 0.5  # the same picture elsewhere, up to encoder noise (measured ≈ 0.08)


def test_render_resumes_without_redrawing_frames(item: Path) -> None:
    """Frames present and video.mp4 missing (a killed render): the rerun renders, frames keep their mtimes."""
    build(item)
    before = mtimes(item)
    (item / "video.mp4").unlink()
    frames.run({}, ctx_for(item, "frames"))  # the resumed batch passes through frames again: nothing redrawn
    rec = json.loads((item / "render.json").read_text())
    render.run({}, ctx_for(item, "render"))
    assert mtimes(item) == before
    rec2 = json.loads((item / "render.json").read_text())
    assert rec2["checked"] and rec2["key"] == rec["key"] and (item / "video.mp4").exists()


def test_render_cancel_then_resume_reuses_segments(item: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelled after one scene, the next run encodes only the scenes still missing, then muxes."""
    frames.run({}, ctx_for(item, "frames"))
    subtitles.run({}, ctx_for(item, "subtitles"))
    real = render.run_ffmpeg
    stop: list[bool] = []

    def kill_after_first(args: list[str], **kw: Any) -> Any:
        out = real(args, **kw)
        stop.append(True)  # the "kill" lands once the first scene is on disk
        return out

    monkeypatch.setattr(render, "run_ffmpeg", kill_after_first)
    with pytest.raises(errors.Cancelled):
        render.run({}, ctx_for(item, "render", cancelled=lambda: bool(stop), render_workers=1))
    assert len(list((item / ".tmp" / "render").glob("seg-*.mp4"))) == 1
    assert not (item / "video.mp4").exists()
    calls: list[str] = []

    def spy(args: list[str], **kw: Any) -> Any:
        calls.append(kw.get("what", ""))
        return real(args, **kw)

    monkeypatch.setattr(render, "run_ffmpeg", spy)
    render.run({}, ctx_for(item, "render"))
    assert sorted(calls) == ["encoding scene 2", "encoding scene 3", "muxing video.mp4"]
    assert json.loads((item / "render.json").read_text())["checked"]


def test_render_missing_inputs_are_permanent(item: Path) -> None:
    """No frames yet: the render fails at once with a reason, never a half-written video."""
    with pytest.raises(errors.PermanentError, match="frames stage"):
        render.run({}, ctx_for(item, "render"))
    assert not (item / "video.mp4").exists()


def test_render_encodes_non_aac_narration(item: Path) -> None:
    """WAV narration (espeak-ng's output) is encoded to AAC; the output still checks out."""
    subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-y", "-i", str(item / "narration.m4a"),
                    str(item / "narration.wav")], check=True, timeout=30)
    nar = json.loads((item / "narration.json").read_text())
    nar["audio"] = "narration.wav"
    (item / "narration.json").write_text(json.dumps(nar))
    rec = build(item)
    assert rec["checked"]
    assert [s["codec_name"] for s in ffprobe(item / "video.mp4")["streams"] if s["codec_type"] == "audio"] == ["aac"]


def test_probe_without_ffprobe_parses_ffmpeg(item: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With only ffmpeg (imageio-ffmpeg), probing falls back to parsing ``ffmpeg -i`` and the check still works."""
    build(item)
    monkeypatch.setattr(ffmpeg, "ffprobe_exe", lambda: None)
    assert render.check_video(item / "video.mp4", AUDIO_S, (W, H))["fps"] == 30
    info = ffmpeg.probe(item / "video.mp4")
    v = info.of("video")[0]
    assert (v.kind, v.codec, v.width, v.height, v.r_frame_rate) == ("video", "h264", W, H, "30/1")
    assert info.of("audio")[0].codec == "aac" and abs(info.duration - AUDIO_S) <= 0.1

"""Footage, motion and soft subtitles in the render, with real clips made by ffmpeg and a real encode."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.common import ffmpeg
from pipeline.recipes.generate import footage
from pipeline.recipes.generate.stages import frames, render, subtitles
from tests.generate.test_video import TEXTS, ctx_for, make_words

W, H = 270, 480
AUDIO_S = 4.0
CLIP_S = 0.6  # shorter than scene 2 (≈1.3 s): it must loop
BOX = (40, 40, 120, 100)  # the white box on scene 2's text layer
FFPROBE = ffmpeg.ffprobe_exe() or "ffprobe"


def ff(*args: str) -> None:
    subprocess.run([ffmpeg.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tone for narration, and a 16:9 clip: red | moving grey testsrc2 | blue: a centre crop shows only grey."""
    d = tmp_path_factory.mktemp("assets")
    ff("-f", "lavfi", "-i", f"sine=frequency=440:duration={AUDIO_S}", "-c:a", "aac", "-b:a", "64k",
       str(d / "narration.m4a"))
    ff("-f", "lavfi", "-i", f"color=c=red:s=200x360:r=25:d={CLIP_S}", "-f", "lavfi",
       "-i", f"testsrc2=s=240x360:r=25:d={CLIP_S}", "-f", "lavfi", "-i", f"color=c=blue:s=200x360:r=25:d={CLIP_S}",
       "-filter_complex", "[1:v]hue=s=0[grey];[0:v][grey][2:v]hstack=inputs=3,format=yuv420p",
       "-c:v", "libx264", "-preset", "ultrafast", str(d / "clip.mp4"))
    return {"audio": d / "narration.m4a", "clip": d / "clip.mp4"}


@pytest.fixture
def item(tmp_path: Path, assets: dict[str, Path]) -> Path:
    """An item after frames and subtitles; visuals.json makes scene 2 a clip with a text layer."""
    wd = tmp_path / "item"
    (wd / "media").mkdir(parents=True)
    plan = {"title": "Test", "aspect": "9:16", "width": W, "height": H, "fps": 30, "theme": "dark",
            "background_dir": None,
            "scenes": [{"index": k + 1, "narration": t, "visual": f"picture {k + 1}", "est_s": 1.3}
                       for k, t in enumerate(TEXTS)]}
    (wd / "plan.json").write_text(json.dumps(plan))
    scenes, words = make_words(AUDIO_S)
    shutil.copy(assets["audio"], wd / "narration.m4a")
    (wd / "narration.json").write_text(json.dumps({"audio": "narration.m4a", "duration": AUDIO_S,
                                                   "engine": "espeak-ng", "scenes": scenes, "words": words}))
    frames.run({}, ctx_for(wd, "frames"))
    subtitles.run({}, ctx_for(wd, "subtitles"))
    shutil.copy(assets["clip"], wd / "media" / "scene-002.mp4")
    layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle(BOX, fill=(255, 255, 255, 255))
    layer.save(wd / footage.text_png(2))
    write_visuals(wd, "media/scene-002.mp4")
    return wd


def write_visuals(wd: Path, clip: str | None) -> None:
    scenes = [{"index": i, "kind": "generated", "path": None} for i in (1, 3)]
    scenes.append({"index": 2, "kind": "video", "path": clip, "provider": "pexels", "duration": CLIP_S})
    (wd / "visuals.json").write_text(json.dumps({"provider": "pexels", "scenes": scenes, "errors": []}))


def spans(wd: Path) -> list[footage.Segment]:
    plan = json.loads((wd / "plan.json").read_text())
    return render.scene_frames(plan, json.loads((wd / "narration.json").read_text()), AUDIO_S)


def decode(path: Path) -> np.ndarray:
    """Every frame as RGB, shape (n, H, W, 3)."""
    raw = subprocess.run([ffmpeg.ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], capture_output=True, check=True, timeout=60).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3).astype(np.int16)


def diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def ffprobe(path: Path) -> dict[str, Any]:
    res = subprocess.run([FFPROBE, "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(res.stdout)


def test_clip_scene_is_cropped_looped_and_overlaid(item: Path) -> None:
    """Scene 2 shows the clip's centre (no red/blue side, no bars), looped, with its text layer on top."""
    render.run({}, ctx_for(item, "render"))
    rec = json.loads((item / "render.json").read_text())
    assert rec["checked"] and rec["footage_scenes"] == 1 and rec["footage_fallbacks"] == []
    video = decode(item / "video.mp4")
    segs = spans(item)
    assert len(video) == sum(s.frames for s in segs) == round(AUDIO_S * 30)
    s2 = segs[1]
    first = video[s2.start_frame + 2]
    x0, y0, x1, y1 = BOX
    assert first[y0 + 5:y1 - 5, x0 + 5:x1 - 5].min() >= 235  # the text layer, white, over the clip
    below = first[200:, :]  # clip only, away from the box
    red = (below[..., 0] > 180) & (below[..., 1] < 60) & (below[..., 2] < 60)
    blue = (below[..., 2] > 180) & (below[..., 0] < 60) & (below[..., 1] < 60)
    assert red.mean() < 0.01 and blue.mean() < 0.01  # centre-cropped: the sides are gone
    assert (below.sum(axis=-1) < 30).mean() < 0.05  # no black bars: the clip covers the frame
    # Looped: one clip length later the same picture; a third of a clip later a different one.
    step = round(CLIP_S * 30)
    assert s2.frames > step + 8
    k = s2.start_frame + 2
    assert diff(video[k], video[k + step]) < 3.0
    assert diff(video[k], video[k + step // 2]) > 3 * diff(video[k], video[k + step])
    # Scenes 1 and 3 are still their stills.
    still = np.asarray(Image.open(item / frames.scene_png(1)).convert("RGB"), np.int16)
    assert diff(video[3], still) < 3.0 and diff(video[3], video[segs[0].frames - 1]) < 1.0  # CRF: near-identical


def test_motion_moves_stills_and_is_off_by_default(item: Path, tmp_path: Path) -> None:
    """With motion a still zooms or pans, a pixel a frame at most; without it the picture stands still."""
    (item / "visuals.json").unlink()  # no clip: three stills
    plain = tmp_path / "plain"
    shutil.copytree(item, plain)
    render.run({}, ctx_for(plain, "render"))
    rec = render.run({}, ctx_for(item, "render", motion=True))
    assert rec.meta["duration"] == pytest.approx(AUDIO_S, abs=0.1)
    assert json.loads((item / "render.json").read_text())["motion"] is True
    still, moving = decode(plain / "video.mp4"), decode(item / "video.mp4")
    assert len(moving) == len(still) == round(AUDIO_S * 30)  # zoompan and crop keep the exact frame count
    s1, s2 = spans(item)[:2]
    first, last = s1.start_frame + 1, s1.start_frame + s1.frames - 2
    assert diff(still[first], still[last]) < 0.5
    assert diff(moving[first], moving[last]) > 2.0  # scene 1 zooms in
    # Scene 2 pans right: each frame is the one before shifted left by 0 or 1 pixel.
    for k in range(s2.start_frame + 1, s2.start_frame + s2.frames - 1, 7):
        a, b = moving[k], moving[k + 1]
        best = min(range(3), key=lambda dx: diff(a[:, dx:], b[:, : W - dx]))
        assert best in (0, 1)


def test_segments_resume_and_follow_their_inputs(item: Path, monkeypatch: pytest.MonkeyPatch,
                                                 assets: dict[str, Path]) -> None:
    """Encoded segments are reused; a changed clip re-encodes its scene only; motion re-encodes the stills."""
    real = render.run_ffmpeg
    calls: list[str] = []

    def spy(args: list[str], **kw: Any) -> Any:
        calls.append(kw.get("what", ""))
        return real(args, **kw)

    monkeypatch.setattr(render, "run_ffmpeg", spy)
    render.run_encode({}, ctx_for(item, "encode"))
    assert sorted(calls) == ["encoding scene 1", "encoding scene 2", "encoding scene 3"]
    calls.clear()
    render.run_encode({}, ctx_for(item, "encode"))
    assert calls == []
    clip = item / "media" / "scene-002.mp4"
    ff("-i", str(assets["clip"]), "-vf", "negate", "-c:v", "libx264", "-preset", "ultrafast", str(clip))
    render.run_encode({}, ctx_for(item, "encode"))
    assert calls == ["encoding scene 2"]
    calls.clear()
    render.run({}, ctx_for(item, "render", motion=True))  # the stills move; the clip's segment stays
    assert sorted(calls) == ["encoding scene 1", "encoding scene 3", "muxing video.mp4"]
    calls.clear()
    assert render.run({}, ctx_for(item, "render", motion=True)).meta.get("render_reused")
    assert not render.run({}, ctx_for(item, "render")).meta.get("render_reused")  # motion off: another video


def test_clip_missing_or_broken_falls_back_to_the_still(item: Path) -> None:
    """A clip that is gone or will not decode shows the scene's still; the reason is in the meta, the video made."""
    (item / "media" / "scene-002.mp4").write_bytes(b"\x00not a video" * 100)
    res = render.run({}, ctx_for(item, "render"))
    assert any("scene 2: clip failed" in n for n in res.meta["footage_fallbacks"])
    video = decode(item / "video.mp4")
    s2 = spans(item)[1]
    still = np.asarray(Image.open(item / frames.scene_png(2)).convert("RGB"), np.int16)
    assert diff(video[s2.start_frame + 3], still) < 3.0
    write_visuals(item, "media/gone.mp4")
    res = render.run({}, ctx_for(item, "render"))
    assert res.meta["footage_fallbacks"] == ["scene 2: clip media/gone.mp4 is missing, its still is shown"]
    (item / "visuals.json").write_text("{not json")
    res = render.run({}, ctx_for(item, "render"))
    assert "visuals.json unreadable" in res.meta["footage_fallbacks"][0]
    assert json.loads((item / "render.json").read_text())["checked"]


def test_embedded_subtitles_are_a_mov_text_track(item: Path) -> None:
    """embed_subtitles: a third stream, mov_text in English, carrying the SRT's cues; the check wants it."""
    res = render.run({}, ctx_for(item, "render", embed_subtitles=True))
    assert res.meta["embedded_subtitles"] is True
    info = ffprobe(item / "video.mp4")
    subs = [s for s in info["streams"] if s["codec_type"] == "subtitle"]
    assert len(info["streams"]) == 3 and len(subs) == 1
    assert subs[0]["codec_name"] == "mov_text" and subs[0]["tags"]["language"] == "eng"
    out = item / "back.srt"
    ff("-i", str(item / "video.mp4"), "-map", "0:s:0", str(out))
    cue_text = [line for line in out.read_text().splitlines() if line and "-->" not in line and not line.isdigit()]
    srt = (item / "subtitles.srt").read_text()
    want = [line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit()]
    assert cue_text == want and len(want) >= 3
    render.check_video(item / "video.mp4", AUDIO_S, (W, H), subtitle_streams=1)
    with pytest.raises(Exception, match="1 subtitle"):
        render.check_video(item / "video.mp4", AUDIO_S, (W, H))
    # Without the SRT the video is still made, without the track, and says why.
    (item / "subtitles.srt").unlink()
    res = render.run({}, ctx_for(item, "render", embed_subtitles=True))
    assert res.meta["embedded_subtitles"] is False
    assert any("subtitles.srt is missing" in n for n in res.meta["footage_fallbacks"])
    assert len(ffprobe(item / "video.mp4")["streams"]) == 2


def test_burn_in_over_a_clip(item: Path, tmp_path: Path) -> None:
    """Burnt-in subtitles are drawn over the moving clip too, at the cue's time."""
    plain = tmp_path / "plain"
    shutil.copytree(item, plain)
    render.run({}, ctx_for(plain, "render"))
    render.run({}, ctx_for(item, "render", burn_subtitles=True))
    a, b = decode(plain / "video.mp4"), decode(item / "video.mp4")
    s2 = spans(item)[1]
    k = s2.start_frame + s2.frames // 2
    band = slice(int(H * 0.7), H)
    assert diff(a[k][band], b[k][band]) > 2.0
    assert diff(a[k][: H // 2], b[k][: H // 2]) < 1.0

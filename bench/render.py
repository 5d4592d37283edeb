"""Render figures: our render stage vs moviepy on the same 60 s, 1080x1920, 30 fps, 12-scene video, in one run.

    python bench/render.py [--seconds 60] [--scenes 12] [--no-moviepy] [--no-extras] [--no-motion]

Inputs are made here: 12 stills by our frames stage, 60 s of narration (espeak-ng
speech, one utterance per scene, padded to the length; a tone when espeak-ng is
missing) encoded to AAC, word timings spread over each utterance, subtitles by our
subtitles stage. Then, each from a clean item folder:

1. ours: the render stage (encoder detection included), default options;
2. moviepy 2.x, the straightforward way: ``ImageClip(png).with_duration(d)`` per scene,
   ``concatenate_videoclips``, ``with_audio(AudioFileClip)``, ``write_videofile(fps=30)``
   with its default settings (libx264 ``medium``, mp3 audio), same scene durations;
3. extras (skipped with ``--no-extras``): ours with subtitle burn-in, and ours with
   libx264 ``veryfast`` + ``stillimage`` instead of ``ultrafast`` (the preset choice);
4. footage and motion (skipped with ``--no-motion``): ours with ``motion`` on (every still
   zooms or pans); a footage mix (every third scene a stock-like clip: 1920x1080, 30 fps,
   H.264, 3 s, so it loops and is scaled and cropped, with its text layer on top, as
   ``visuals.json`` and the frames stage leave them); and the footage mix with motion.

Every output is probed. The last line printed is a JSON object: ``speedup_vs_moviepy``
(moviepy wall ÷ ours), ``realtime_factor`` (ours ÷ video length), ``motion_realtime_factor``,
``footage_realtime_factor``, ``footage_motion_realtime_factor``, the encoder and walls, each
render's CPU seconds (``*_cpu_s``: what it costs whatever else runs) and the 1-minute load average
before and after (``load_before``, ``load_after``): on a shared machine, read the walls with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.common import ffmpeg as ff  # noqa: E402
from pipeline.engine.stage import StageContext  # noqa: E402
from pipeline.recipes.generate import footage, video  # noqa: E402
from pipeline.recipes.generate.stages import frames, render, subtitles  # noqa: E402

W, H, FPS = 1080, 1920, 30
LINES = [
    "Every video in the mill starts as a plan with a title and a list of scenes.",
    "Each scene gets one picture, drawn once with a theme and the narration text.",
    "The narration is spoken by a text to speech engine and timed word by word.",
    "Subtitles come from those word timings, two short lines at a time.",
    "A still picture does not change, so encoding it thirty times a second is waste.",
    "We decode each picture once and let the encoder repeat it for free.",
    "Scenes are encoded side by side, one for each processor core.",
    "Then the pieces are joined without encoding them again.",
    "The narration is added last, and the file is cut to the length of the audio.",
    "A probe checks the duration, the frame rate, the size and both streams.",
    "Only a checked file becomes the final video that the upload stage will see.",
    "A killed batch picks up where it stopped and redraws nothing it already made.",
]


def ffmpeg(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([ff.ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y", *args], cwd=cwd,
                   check=True, timeout=300)


def make_narration(work: Path, seconds: float, scenes: int) -> tuple[dict[str, Any], str]:
    """narration.m4a of exactly ``seconds`` + narration.json; speech when espeak-ng exists, else a tone."""
    per = seconds / scenes
    espeak = shutil.which("espeak-ng")
    nscenes, words, parts = [], [], []
    for k in range(scenes):
        text = LINES[k % len(LINES)]
        start = k * per
        spoken = per * 0.85
        if espeak:
            wav = work / f"speech-{k:02d}.wav"
            subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True, timeout=60)
            spoken = min(per - 0.05, ff.probe(wav).duration)
            parts.append(wav)
        toks = text.split()
        step = spoken / len(toks)
        words += [{"start": round(start + i * step, 3), "end": round(start + (i + 0.85) * step, 3), "text": t}
                  for i, t in enumerate(toks)]
        nscenes.append({"index": k + 1, "start": round(start, 3), "end": round(start + spoken, 3),
                        "duration": round(spoken, 3)})
    if espeak:
        # Each utterance padded (or cut) to its scene's slot, then joined: scene k speaks from k * per.
        inputs: list[str] = []
        chains = []
        for k, wav in enumerate(parts):
            inputs += ["-i", str(wav)]
            chains.append(f"[{k}:a]aresample=24000,apad,atrim=0:{per:.6f}[a{k}]")
        graph = ";".join(chains) + ";" + "".join(f"[a{k}]" for k in range(scenes)) + f"concat=n={scenes}:v=0:a=1[out]"
        ffmpeg(*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "aac", "-b:a", "96k",
               str(work / "narration.m4a"))
        engine = "espeak-ng"
    else:
        ffmpeg("-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}", "-c:a", "aac", "-b:a", "96k",
               str(work / "narration.m4a"))
        engine = "tone"
    narration = {"audio": "narration.m4a", "duration": seconds, "engine": engine, "scenes": nscenes, "words": words}
    (work / "narration.json").write_text(json.dumps(narration))
    return narration, engine


def context(workdir: Path, home: Path, stage: str, **options: Any) -> StageContext:
    return StageContext(batch_id="bench", batch_name="bench", item_n=1, stage=stage, workdir=workdir,
                        options=options, attempt=1, account=None, _progress=lambda f: None,
                        _cancelled=lambda: False, home=home, pool_size=1)


def clone(src: Path, dst: Path) -> Path:
    """A clean item folder holding only the inputs the render stage reads."""
    dst.mkdir(parents=True)
    for name in ("plan.json", "narration.json", "narration.m4a", "subtitles.ass", "subtitles.srt"):
        shutil.copy2(src / name, dst / name)
    shutil.copytree(src / "frames", dst / "frames")
    if (src / "media").exists():
        shutil.copytree(src / "media", dst / "media")
        shutil.copy2(src / "visuals.json", dst / "visuals.json")
    return dst


def make_footage(base: Path, scenes: int, every: int = 3) -> list[int]:
    """Stock-like clips for every ``every``-th scene, their text layers, and the visuals.json naming them."""
    from PIL import Image, ImageDraw, ImageFont

    (base / "media").mkdir()
    chosen = [k for k in range(1, scenes + 1) if k % every == 2 % every]
    font = ImageFont.truetype(str(video.font_path(bold=True)), 64)
    entries = []
    for k in range(1, scenes + 1):
        if k not in chosen:
            entries.append({"index": k, "kind": "generated", "path": None})
            continue
        rel = f"media/scene-{k:03d}.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30:d=3", "-c:v", "libx264", "-preset", "veryfast",
               "-crf", "23", "-pix_fmt", "yuv420p", str(base / rel))
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        ImageDraw.Draw(layer).text((W // 2, int(H * 0.35)), LINES[(k - 1) % len(LINES)][:24], font=font,
                                   fill="white", stroke_width=4, stroke_fill="black", anchor="mm")
        layer.save(base / footage.text_png(k))
        entries.append({"index": k, "kind": "video", "path": rel, "provider": "local", "duration": 3.0,
                        "width": 1920, "height": 1080})
    (base / "visuals.json").write_text(json.dumps({"provider": "local", "scenes": entries, "errors": []}))
    return chosen


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the ffmpegs): what a run costs whatever the load."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed_render(workdir: Path, home: Path, **options: Any) -> tuple[float, dict[str, Any]]:
    """Wall seconds and render.json, with ``cpu_s`` (CPU seconds the render took) added."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    render.run({}, context(workdir, home, "render", **options))
    wall = time.perf_counter() - t0
    return wall, {**json.loads((workdir / "render.json").read_text()), "cpu_s": round(cpu_seconds() - c0, 2)}


def moviepy_render(workdir: Path, durations: list[float]) -> float:
    from moviepy import AudioFileClip, ImageClip, concatenate_videoclips

    t0 = time.perf_counter()
    clips = [ImageClip(str(workdir / video.scene_png(k + 1))).with_duration(d) for k, d in enumerate(durations)]
    audio = AudioFileClip(str(workdir / "narration.m4a"))
    clip = concatenate_videoclips(clips).with_audio(audio)
    clip.write_videofile(str(workdir / "moviepy.mp4"), fps=FPS, logger=None)
    audio.close()
    clip.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--no-moviepy", action="store_true")
    ap.add_argument("--no-extras", action="store_true")
    ap.add_argument("--no-motion", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="tubemill-bench-render-") as tmp:
        root = Path(tmp)
        home, base = root / "home", root / "base"
        base.mkdir()
        plan = {"title": "Render bench", "aspect": "9:16", "width": W, "height": H, "fps": FPS, "theme": "dark",
                "background_dir": None,
                "scenes": [{"index": k + 1, "narration": LINES[k % len(LINES)], "visual": "",
                            "est_s": args.seconds / args.scenes} for k in range(args.scenes)]}
        (base / "plan.json").write_text(json.dumps(plan))
        t0 = time.perf_counter()
        _narration, engine = make_narration(base, args.seconds, args.scenes)
        audio_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames.run({}, context(base, home, "frames"))
        frames_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        subtitles.run({}, context(base, home, "subtitles"))
        subs_wall = time.perf_counter() - t0
        print(f"inputs: {args.scenes} stills {W}x{H} in {frames_wall:.2f}s, {args.seconds:.0f}s of {engine} "
              f"narration in {audio_wall:.2f}s, subtitles in {subs_wall:.2f}s; {os.cpu_count()} CPU cores")

        ours_wall, ours = timed_render(clone(base, root / "ours"), home)
        video_s = ours["duration"]
        print(f"ours      : {ours_wall:6.2f}s  encoder {ours['encoder']}, {ours['width']}x{ours['height']} "
              f"{ours['fps']} fps, {ours['frames']} frames, {ours['duration']}s, A/V {ours['video_s']}/"
              f"{ours['audio_s']}s, {ours['bytes'] / 1e6:.2f} MB  -> {ours_wall / video_s:.3f}x real time")
        result: dict[str, Any] = {"encoder": ours["encoder"], "render_wall_s": round(ours_wall, 3),
                                  "video_s": video_s, "realtime_factor": round(ours_wall / video_s, 4),
                                  "video_mb": round(ours["bytes"] / 1e6, 3), "frames_wall_s": round(frames_wall, 3),
                                  "narration": engine, "cpu_cores": os.cpu_count(), "render_cpu_s": ours["cpu_s"],
                                  "load_before": round(os.getloadavg()[0], 2)}

        if not args.no_extras:
            burn_wall, burn = timed_render(clone(base, root / "burn"), home, burn_subtitles=True)
            print(f"burn-in   : {burn_wall:6.2f}s  {burn['duration']}s, {burn['bytes'] / 1e6:.2f} MB "
                  f"-> {burn_wall / video_s:.3f}x real time")
            veryfast = ff.Encoder("libx264", ("-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
                                                 "-crf", "20", "-x264-params", "keyint=300:min-keyint=30:scenecut=0"),
                                     hardware=False)
            real_detect = render.detect_encoder
            render.detect_encoder = lambda prefer=None: veryfast  # type: ignore[assignment]
            try:
                vf_wall, vf = timed_render(clone(base, root / "veryfast"), home)
            finally:
                render.detect_encoder = real_detect
            print(f"veryfast  : {vf_wall:6.2f}s  {vf['bytes'] / 1e6:.2f} MB (libx264 veryfast+stillimage, for the "
                  f"preset choice) -> {vf_wall / video_s:.3f}x real time")
            result.update(burn_wall_s=round(burn_wall, 3), veryfast_wall_s=round(vf_wall, 3),
                          veryfast_mb=round(vf["bytes"] / 1e6, 3))

        if not args.no_motion:
            mo_wall, mo = timed_render(clone(base, root / "motion"), home, motion=True)
            print(f"motion    : {mo_wall:6.2f}s  {mo['bytes'] / 1e6:.2f} MB (every still zooms or pans) "
                  f"-> {mo_wall / video_s:.3f}x real time (target <= 0.5); CPU {mo['cpu_s']}s vs {ours['cpu_s']}s")
            mix = root / "mix"
            mix.mkdir()
            for name in ("plan.json", "narration.json", "narration.m4a", "subtitles.ass", "subtitles.srt"):
                shutil.copy2(base / name, mix / name)
            shutil.copytree(base / "frames", mix / "frames")
            chosen = make_footage(mix, args.scenes)
            fo_wall, fo = timed_render(clone(mix, root / "footage"), home)
            print(f"footage   : {fo_wall:6.2f}s  {fo['bytes'] / 1e6:.2f} MB ({len(chosen)} of {args.scenes} scenes "
                  f"1920x1080 clips) -> {fo_wall / video_s:.3f}x real time; CPU {fo['cpu_s']}s")
            fm_wall, fm = timed_render(clone(mix, root / "footage-motion"), home, motion=True)
            print(f"footage+mo: {fm_wall:6.2f}s  {fm['bytes'] / 1e6:.2f} MB -> {fm_wall / video_s:.3f}x real time; "
                  f"CPU {fm['cpu_s']}s")
            for rec in (mo, fo, fm):
                assert rec["checked"] and not rec["footage_fallbacks"], rec
            result.update(motion_wall_s=round(mo_wall, 3), motion_realtime_factor=round(mo_wall / video_s, 4),
                          motion_mb=round(mo["bytes"] / 1e6, 3), footage_scenes=len(chosen),
                          footage_wall_s=round(fo_wall, 3), footage_realtime_factor=round(fo_wall / video_s, 4),
                          footage_mb=round(fo["bytes"] / 1e6, 3), footage_motion_wall_s=round(fm_wall, 3),
                          footage_motion_realtime_factor=round(fm_wall / video_s, 4),
                          footage_motion_mb=round(fm["bytes"] / 1e6, 3), motion_cpu_s=mo["cpu_s"],
                          footage_cpu_s=fo["cpu_s"], footage_motion_cpu_s=fm["cpu_s"])

        if not args.no_moviepy:
            mp_dir = clone(base, root / "moviepy")
            durations = [s.frames / FPS for s in render.scene_frames(plan, json.loads(
                (mp_dir / "narration.json").read_text()), ours["audio_input_s"])]
            mp_wall = moviepy_render(mp_dir, durations)
            info = ff.probe(mp_dir / "moviepy.mp4")
            v = info.of("video")[0]
            print(f"moviepy   : {mp_wall:6.2f}s  {v.codec} {v.width}x{v.height} {v.avg_fps:.2f} fps, "
                  f"{info.duration:.3f}s, {(mp_dir / 'moviepy.mp4').stat().st_size / 1e6:.2f} MB "
                  f"-> {mp_wall / video_s:.3f}x real time")
            result.update(moviepy_wall_s=round(mp_wall, 3), speedup_vs_moviepy=round(mp_wall / ours_wall, 2))
            print(f"speedup vs moviepy: {mp_wall / ours_wall:.2f}x (target >= 2); "
                  f"realtime factor {ours_wall / video_s:.3f} (target <= 0.35)")
        result["load_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result))


if __name__ == "__main__":
    main()

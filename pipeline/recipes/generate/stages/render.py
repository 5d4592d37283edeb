"""encode and render: scene stills + narration → ``video.mp4`` (H.264 CFR 30 fps + AAC), checked, with
``render.json``.

Two stages share this module. ``encode`` makes the scene segments as soon as the frames and
narrate's scene times exist, while ``master`` normalizes the narration beside it; ``render``
joins the segments, muxes the track and checks the result. ``render`` alone still does it
all (segments the encode left undone, a narration track that is missing), so a batch made
before the split and a direct call behave as they did.

How (and why this way). A video of stills is the same picture for seconds at a time, and
nearly all the cost of the obvious method, an ffmpeg concat demuxer of the PNGs with
``-r 30``, goes into work repeated per output frame: decoding the 2-megapixel PNG again,
converting it to YUV again, analysing it again in x264 (NOTES: ≈17 s for 60 s at 1080×1920
with ultrafast, ≈24 s with veryfast+stillimage, ≈26 s with moviepy). So each scene becomes
its own segment, encoded from a single image that is decoded and converted once and then
repeated in memory by the ``loop`` filter (``-loop 1`` on the input re-decodes the PNG for
every frame: 34 fps against ≈200 fps measured). x264 then sees identical frames, which are
almost all skip blocks. The segments are encoded in parallel (one ffmpeg per core, x264 with
one thread each: no frame-thread start-up per segment), joined with the concat demuxer and
``-c copy``, and the narration muxed in (copied when it is already AAC, else encoded), all
with ``-t <audio duration>``; never ``-shortest`` with a looped input (NOTES: 20–50 % too
long). Each segment has exactly its frame count, so the output is true CFR 30 fps.

Scene times come from ``narration.json`` (a scene lasts from its start to the next scene's
start, so pauses stay with the picture on screen), scaled so they add up to the audio's
duration (narration.json's own, exact, when it agrees with the probed track within 50 ms;
else the probed one), and are cut on whole frames from cumulative times (rounding never drifts).

Encoder: the fastest that really works (``pipeline.common.ffmpeg.detect_encoder``: nvenc, vaapi, qsv,
videotoolbox, else libx264 ``ultrafast`` + ``stillimage``, constant qp 17, 10 s GOPs without
scene cut). Measured with ``bench/render.py`` on 2 cores (60 s, 1080×1920, 12 scenes):
ours 4.3–4.6 s (≈ 0.07× real time, 2.5 MB), with burn-in ≈ 5.8 s, with ``veryfast``
≈ 7.4 s (1.2 MB), moviepy's defaults ≈ 18 s (so ≈ 4× faster; the first run of the session was
6.0 s, 3.1×). Both presets give SSIM ≥ 0.996 against the PNG on a still; ultrafast costs
half the CPU for twice the bytes, and CPU is what a 2-core mill runs out of (two items
render at once), while 2.5 MB a minute is nothing to upload. Not done (an estimate, not
measured): encoding one short GOP per scene and repeating it with ``-c copy`` could cut the
encode several times more, but multiplies I-frames (bigger files) for a stage already at 0.07×.

Burn-in (option ``burn_subtitles``): each segment's frames get their absolute timestamps
before the ``subtitles`` filter draws ``subtitles.ass`` and are shifted back to 0 after it,
so cues land on the right frames while segments still encode in parallel.

Idempotent and resumable: a matching ``render.json`` beside ``video.mp4`` returns at once;
finished segments live in the item's ``.tmp/render`` (kept across a kill, removed with the
item) and are named by their inputs, so a resumed render encodes only what is missing.
The file is checked with ffprobe before it becomes ``video.mp4``: duration within 0.1 s of
the audio, 30 fps, the plan's size, one video and one audio stream, and video and audio
stream durations within 0.1 s of each other; a failed check raises PermanentError.

Options (:class:`~pipeline.recipes.generate.options.GenerateOptions`): ``burn_subtitles``, ``encoder``
(``auto`` or an encoder name), ``render_workers`` (parallel segment encodes; default the core count),
``audio_bitrate``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.ffmpeg import Encoder, detect_encoder, probe, run_ffmpeg
from pipeline.common.parallel import each_done
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.stages import master
from pipeline.recipes.generate.stages.narrate import NARRATION_AUDIO
from pipeline.recipes.generate.video import FPS, NARRATION, PLAN, font_path, plan_size, read_json, scene_png
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.render")

VIDEO = "video.mp4"
RENDER_JSON = "render.json"
SUBTITLES_ASS = "subtitles.ass"
TOLERANCE_S = 0.1
CLOCK_AGREE_S = 0.05  # narration.json and the mastered track agree to ~1 ms; AAC framing is 21 ms
COLOR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


@dataclass(frozen=True)
class Segment:
    index: int
    png: str  # workdir-relative
    start_frame: int
    frames: int


# ---------------------------------------------------------------- timing


def scene_frames(plan: dict[str, Any], narration: dict[str, Any], audio_s: float, fps: int = FPS) -> list[Segment]:
    """Whole-frame spans per scene, summing to ``round(audio_s * fps)``.

    A scene runs from its narration start to the next scene's start (the last one to the
    end of the audio); times are scaled by ``audio_s / narration duration``. Without
    narration scene times the plan's ``est_s`` are used the same way.
    """
    plan_scenes = [s for s in plan.get("scenes") or [] if isinstance(s, dict)]
    indexes = [int(s.get("index", k)) for k, s in enumerate(plan_scenes, 1)]
    if not indexes:
        raise errors.InvalidInput("plan.json has no scenes")
    timed = {int(s.get("index", k)): s for k, s in enumerate(narration.get("scenes") or [], 1) if isinstance(s, dict)}
    starts: list[float] = []
    if all(i in timed for i in indexes):
        t = 0.0
        for i in indexes:
            s = timed[i]
            start = s.get("start")
            starts.append(float(start) if start is not None else t)
            dur = s.get("duration")
            end = starts[-1] + float(dur) if dur is not None else float(s.get("end") or starts[-1])
            t = max(t, end)
        nominal = float(narration.get("duration") or 0.0) or t
    else:
        t = 0.0
        for s in plan_scenes:
            starts.append(t)
            t += max(0.0, float(s.get("est_s") or 1.0))
        nominal = t
    starts[0] = 0.0
    total = int(round(audio_s * fps))
    if total < len(indexes):
        raise errors.InvalidInput(f"{audio_s:.2f}s of audio cannot show {len(indexes)} scenes at {fps} fps")
    scale = audio_s / nominal if nominal > 0 else 0.0
    bounds = [int(round(st * scale * fps)) for st in starts] + [total]
    # At least one frame per scene, and never past the frames the later scenes need.
    for k in range(1, len(indexes)):
        bounds[k] = min(max(bounds[k], bounds[k - 1] + 1), total - (len(indexes) - k))
    return [Segment(i, scene_png(i), bounds[k], bounds[k + 1] - bounds[k]) for k, i in enumerate(indexes)]


# ---------------------------------------------------------------- encoding


_SAFE_PATH = re.compile(r"^[\w./+@-]+$")


def _subtitles_filter() -> str:
    """The libass filter on ``subtitles.ass`` (relative: ffmpeg runs in the workdir, no path escaping)."""
    fonts = font_path(bold=True).parent
    extra = f":fontsdir={fonts}" if _SAFE_PATH.match(str(fonts)) else ""  # else fontconfig finds DejaVu
    return f"subtitles=filename={SUBTITLES_ASS}{extra}"


def segment_args(seg: Segment, out: str, enc: Encoder, size: tuple[int, int], *, burn: bool,
                 threads: int, fps: int = FPS) -> list[str]:
    """ffmpeg arguments for one scene: one decode, one colour conversion, ``frames`` identical frames."""
    w, h = size
    chain = [
        f"scale={w}:{h}:out_color_matrix=bt709:out_range=tv:flags=bicubic",
        "format=yuv420p",
        f"loop=loop={seg.frames - 1}:size=1:start=0",
        f"settb=1/{fps}",
    ]
    if burn:
        chain += [f"setpts=N+{seg.start_frame}", _subtitles_filter(), "setpts=PTS-STARTPTS"]
    else:
        chain.append("setpts=N")
    if enc.filter_tail:
        chain.append(enc.filter_tail)
    return [
        "-y", *enc.global_args, "-framerate", str(fps), "-i", seg.png,
        "-vf", ",".join(chain), "-frames:v", str(seg.frames), "-r", str(fps), "-an",
        *enc.args(threads), *COLOR_TAGS, "-video_track_timescale", str(fps * 512),
        "-f", "mp4", out,
    ]


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _encode_segments(ctx: StageContext, wd: Path, segs: list[Segment], enc: Encoder, size: tuple[int, int],
                     burn: bool, seg_dir: Path) -> list[Path]:
    """Encode missing segments in parallel (ffmpeg runs in ``wd``); returns every segment's path in order."""
    ass_stat = _stat(ctx.path(SUBTITLES_ASS)) if burn else None
    paths, todo = [], []
    for seg in segs:
        png = ctx.path(seg.png)
        if not png.exists():
            raise errors.PermanentError(f"{seg.png} is missing: the frames stage has not finished")
        fp = _fingerprint(_stat(png), enc.name, enc.codec_args, size, seg.frames, seg.start_frame if burn else 0,
                          ass_stat)
        path = seg_dir / f"seg-{seg.index:02d}-{seg.frames}f-{fp}.mp4"
        paths.append(path)
        if not path.exists():
            todo.append((seg, path))
    total = sum(s.frames for s in segs) or 1
    done = total - sum(s.frames for s, _ in todo)
    cpus = os.cpu_count() or 1
    workers = max(1, min(len(todo) or 1, options_of(ctx).render_workers or cpus))
    threads = max(1, cpus // workers)

    def encode(seg: Segment, path: Path) -> int:
        if ctx.cancelled():
            raise errors.Cancelled("render cancelled")
        part = path.with_name(path.name + ".part")
        run_ffmpeg(segment_args(seg, os.path.relpath(part, wd), enc, size, burn=burn, threads=threads), cwd=wd,
                   cancelled=ctx.cancelled, what=f"encoding scene {seg.index}")
        os.replace(part, path)
        return seg.frames

    for _, frames in each_done(lambda job: encode(*job), todo, workers, "render"):
        done += frames
        ctx.progress(0.9 * done / total)  # from the stage's own thread
    return paths


def mux_args(list_file: str, audio: str, audio_s: float, audio_codec: str, out: str, bitrate: str) -> list[str]:
    audio_opts = ["-c:a", "copy"] if audio_codec == "aac" else ["-c:a", "aac", "-b:a", bitrate]
    return [
        "-y", "-f", "concat", "-safe", "0", "-i", list_file, "-i", audio,
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_opts,
        "-t", f"{audio_s:.3f}", "-movflags", "+faststart", "-f", "mp4", out,
    ]


# ---------------------------------------------------------------- checking


def check_video(path: Path, audio_s: float, size: tuple[int, int], fps: int = FPS) -> dict[str, Any]:
    """Probe the result; PermanentError with the numbers when anything is off."""
    info = probe(path)
    video, audio = info.of("video"), info.of("audio")
    facts: dict[str, Any] = {"duration": round(info.duration, 3), "streams": len(info.streams)}
    problems = []
    if len(video) != 1 or len(audio) != 1 or len(info.streams) != 2:
        problems.append(f"{len(video)} video + {len(audio)} audio of {len(info.streams)} streams, want 1 + 1")
    if video:
        v = video[0]
        facts.update(width=v.width, height=v.height, fps=round(v.avg_fps, 3), r_frame_rate=v.r_frame_rate,
                     frames=v.frames, video_s=round(v.duration if v.duration is not None else info.duration, 3))
        if (v.width, v.height) != size:
            problems.append(f"size {v.width}x{v.height}, want {size[0]}x{size[1]}")
        if v.r_frame_rate != f"{fps}/1" or abs(v.avg_fps - fps) > 0.05:
            problems.append(f"frame rate {v.r_frame_rate} (avg {v.avg_fps:.3f}), want {fps}/1 constant")
    if audio:
        a = audio[0]
        facts["audio_s"] = round(a.duration if a.duration is not None else info.duration, 3)
    if abs(info.duration - audio_s) > TOLERANCE_S:
        problems.append(f"duration {info.duration:.3f}s, audio is {audio_s:.3f}s")
    if "video_s" in facts and "audio_s" in facts and abs(facts["video_s"] - facts["audio_s"]) > TOLERANCE_S:
        problems.append(f"video stream {facts['video_s']:.3f}s vs audio stream {facts['audio_s']:.3f}s")
    if problems:
        raise errors.PermanentError(f"render check failed for {path.name}: " + "; ".join(problems))
    return facts


# ---------------------------------------------------------------- stage


def _audio_rel(narration: dict[str, Any]) -> str:
    """The narration track narration.json names (narrate writes ``narration.m4a``; the master stage makes it)."""
    return str(narration.get("audio") or NARRATION_AUDIO)


def _audio(ctx: StageContext, narration: dict[str, Any]) -> tuple[Path, float, str]:
    rel = _audio_rel(narration)
    path = ctx.path(rel)
    if not path.exists():
        raise errors.PermanentError(f"narration audio {rel} is missing: the narrate stage has not finished")
    info = probe(path)
    streams = info.of("audio")
    if not streams:
        raise errors.NoAudio(f"{rel} has no audio stream")
    dur = streams[0].duration or info.duration
    if not dur or dur <= 0:
        raise errors.PermanentError(f"{rel} has no duration")
    return path, float(dur), streams[0].codec


def frame_clock(narration: dict[str, Any], audio_s: float | None) -> float:
    """The seconds the scene frames add up to.

    narration.json's duration is the joined clips' exact sample count, and the mastered
    track keeps it to the millisecond, so it is the clock when it agrees with the audio
    (or before the audio exists: the encode runs beside the master). A narration.json that
    disagrees with its audio (another writer's) gives way to the probed audio, as it always did.
    """
    nominal = float(narration.get("duration") or 0.0)
    if audio_s is None:
        if nominal <= 0:
            raise errors.PermanentError("narration.json has no duration: run the narrate stage again")
        return nominal
    return nominal if nominal > 0 and abs(nominal - audio_s) <= CLOCK_AGREE_S else audio_s


def _inputs(ctx: StageContext) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int], bool]:
    plan = read_json(ctx.path(PLAN), "plan")
    narration = read_json(ctx.path(NARRATION), "narrate")
    burn = options_of(ctx).burn_subtitles
    if burn and not ctx.path(SUBTITLES_ASS).exists():
        raise errors.PermanentError("burn_subtitles is on but subtitles.ass is missing: run the subtitles stage")
    return plan, narration, plan_size(plan), burn


def _segments_ready(ctx: StageContext, segs: list[Segment], size: tuple[int, int], burn: bool,
                    enc: Encoder) -> list[Path]:
    seg_dir = ctx.tmpdir.resolve() / "render"
    seg_dir.mkdir(parents=True, exist_ok=True)
    return _encode_segments(ctx, ctx.workdir.resolve(), segs, enc, size, burn, seg_dir)


def run_encode(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """The scene segments, encoded ahead of the mux while the narration is mastered beside it."""
    started = time.monotonic()
    plan, narration, size, burn = _inputs(ctx)
    audio_s = _audio(ctx, narration)[1] if ctx.path(_audio_rel(narration)).exists() and master.is_current(ctx) else None
    segs = scene_frames(plan, narration, frame_clock(narration, audio_s))
    _segments_ready(ctx, segs, size, burn, detect_encoder(options_of(ctx).encoder))
    ctx.progress(1.0)
    return StageResult(meta={"segments": len(segs), "encode_s": round(time.monotonic() - started, 3)})


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    started = time.monotonic()
    plan, narration, size, burn = _inputs(ctx)
    if int(plan.get("fps") or FPS) != FPS:
        log.warning("plan asks for %s fps; rendering %d fps", plan.get("fps"), FPS)
    if narration.get("scenes") and not ctx.path(_audio_rel(narration)).exists():
        master.master(ctx)  # a batch made before the master stage existed, or a lost track
    audio, audio_s, audio_codec = _audio(ctx, narration)
    segs = scene_frames(plan, narration, frame_clock(narration, audio_s))
    pngs = [_stat(ctx.path(s.png)) if ctx.path(s.png).exists() else None for s in segs]
    key = _fingerprint(size, [(s.png, s.frames) for s in segs], pngs, _stat(audio), burn,
                       _stat(ctx.path(SUBTITLES_ASS)) if burn else None)
    out, report = ctx.path(VIDEO), ctx.path(RENDER_JSON)
    artifacts = {"video": str(out), "render": str(report)}
    if out.exists() and report.exists():
        try:
            prev = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = {}
        if prev.get("checked") and prev.get("key") == key and prev.get("bytes") == out.stat().st_size:
            return StageResult(artifacts=artifacts, meta={"encoder": prev.get("encoder"), "render_reused": True,
                                                          "duration": prev.get("duration")})

    enc = detect_encoder(options_of(ctx).encoder)
    wd = ctx.workdir.resolve()  # ffmpeg runs here and gets relative paths: nothing to escape in filter strings
    paths = _segments_ready(ctx, segs, size, burn, enc)  # the encode stage's, or whatever it left undone
    if ctx.cancelled():
        raise errors.Cancelled("render cancelled")

    seg_dir = paths[0].parent
    list_file = seg_dir / "segments.txt"
    list_file.write_text("".join(f"file '{p.name}'\nduration {s.frames / FPS:.6f}\n" for p, s in zip(paths, segs,
                                                                                                       strict=True)),
                         encoding="utf-8")
    part = out.with_name(out.name + ".part")
    run_ffmpeg(mux_args(os.path.relpath(list_file, wd), os.path.relpath(audio, wd), audio_s, audio_codec,
                        os.path.relpath(part, wd), options_of(ctx).audio_bitrate),
               cwd=wd, cancelled=ctx.cancelled, what="muxing video.mp4")
    try:
        facts = check_video(part, audio_s, size)
    except errors.PermanentError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    wall = round(time.monotonic() - started, 3)
    record = {"encoder": enc.name, **facts, "audio_input_s": round(audio_s, 3), "checked": True,
              "scenes": len(segs), "burn_subtitles": burn, "key": key, "bytes": out.stat().st_size, "wall_s": wall}
    atomic_write_bytes(report, json.dumps(record, indent=2).encode())
    shutil.rmtree(seg_dir, ignore_errors=True)  # the video is safe on disk: the segments have served
    ctx.progress(1.0)
    return StageResult(artifacts=artifacts, meta={"encoder": enc.name, "duration": facts["duration"],
                                                  "render_s": wall, "burn_subtitles": burn})


register(Stage("encode", run_encode, resource="gpu", doc="frames + scene times → one H.264 segment per scene"))
register(Stage("render", run, resource="gpu", doc="segments + narration.m4a → video.mp4 (H.264 CFR 30 fps + AAC)"))

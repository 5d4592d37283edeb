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
videotoolbox, else libx264 ``ultrafast`` + ``stillimage``, constant qp 17, 10 s GOPs without scene cut):
≈ 0.07× real time for 60 s at 1080×1920 on 2 cores, ≈ 4× faster than moviepy (``bench/render.py``).
ultrafast and veryfast both give SSIM ≥ 0.996 on a still; ultrafast costs half the CPU for twice the
bytes, and CPU is what a 2-core mill runs out of, while 2.5 MB a minute is nothing to upload.

Burn-in (option ``burn_subtitles``): each segment's frames get their absolute timestamps
before the ``subtitles`` filter draws ``subtitles.ass`` and are shifted back to 0 after it,
so cues land on the right frames while segments still encode in parallel.

Idempotent and resumable: a matching ``render.json`` beside ``video.mp4`` returns at once;
finished segments live in the item's ``.tmp/render`` (kept across a kill, removed with the
item) and are named by their inputs, so a resumed render encodes only what is missing.
The file is checked with ffprobe before it becomes ``video.mp4``: duration within 0.1 s of
the audio, 30 fps, the plan's size, one video and one audio stream, and video and audio
stream durations within 0.1 s of each other; a failed check raises PermanentError.

Footage and motion (:mod:`~pipeline.recipes.generate.footage`): clip scenes and moving stills are
segments like any other, in the same pool, named by their inputs (clip path+stat, the move).
``embed_subtitles`` muxes ``subtitles.srt`` as a soft mov_text track (the check then wants it).

Options (:class:`~pipeline.recipes.generate.options.GenerateOptions`): ``burn_subtitles``, ``encoder``
(``auto`` or an encoder name), ``render_workers`` (parallel segment encodes; default the core count),
``audio_bitrate``, ``motion``, ``embed_subtitles``, ``default_language`` (the soft track's language).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.ffmpeg import Encoder, detect_encoder, probe, run_ffmpeg
from pipeline.common.parallel import each_done
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate import captions, footage
from pipeline.recipes.generate.footage import Segment, Source, mux_args, scene_sources, segment_args
from pipeline.recipes.generate.options import options_of
from pipeline.recipes.generate.stages import master
from pipeline.recipes.generate.stages.narrate import NARRATION_AUDIO
from pipeline.recipes.generate.video import FPS, NARRATION, PLAN, plan_size, read_json, scene_png
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.render")

VIDEO = "video.mp4"
RENDER_JSON = "render.json"
SUBTITLES_ASS = "subtitles.ass"
SUBTITLES_SRT = "subtitles.srt"
TOLERANCE_S = 0.1
CLOCK_AGREE_S = 0.05  # narration.json and the mastered track agree to ~1 ms; AAC framing is 21 ms


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


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _encode_segments(ctx: StageContext, wd: Path, segs: list[Segment], srcs: list[Source], enc: Encoder,
                     size: tuple[int, int], burn: bool, seg_dir: Path) -> tuple[list[Path], list[str]]:
    """Encode missing segments in parallel (ffmpeg runs in ``wd``): every segment's path in order, and the
    scenes whose clip would not decode (shown as their still instead)."""
    ass_stat = _stat(ctx.path(SUBTITLES_ASS)) if burn else None
    paths, todo = [], []
    for seg, src in zip(segs, srcs, strict=True):
        png = ctx.path(seg.png)
        if not png.exists():
            raise errors.PermanentError(f"{seg.png} is missing: the frames stage has not finished")
        path = seg_dir / f"seg-{seg.index:02d}-{seg.frames}f-{_seg_fp(seg, src, png, enc, size, burn, ass_stat)}.mp4"
        paths.append(path)
        if not path.exists():
            todo.append((seg, src, path))
    total = sum(s.frames for s in segs) or 1
    done = total - sum(s.frames for s, _, _ in todo)
    cpus = os.cpu_count() or 1
    workers = max(1, min(len(todo) or 1, options_of(ctx).render_workers or cpus))
    threads = max(1, cpus // workers)
    fallbacks: list[str] = []
    fontsdir = captions.FONTS_DIR if (wd / captions.FONTS_DIR).is_dir() else None  # a caption_font file

    def encode(seg: Segment, src: Source, path: Path) -> int:
        if ctx.cancelled():
            raise errors.Cancelled("render cancelled")
        part = path.with_name(path.name + ".part")
        args = segment_args(seg, src, os.path.relpath(part, wd), enc, size, burn=burn, threads=threads,
                            fontsdir=fontsdir)
        # A looped clip whose frames never decode would loop for ever: clips get a deadline.
        limit = 120 + seg.frames / 2 if src.kind == "clip" else None
        try:
            run_ffmpeg(args, cwd=wd, cancelled=ctx.cancelled, what=f"encoding scene {seg.index}", timeout=limit)
        except (errors.PermanentError, errors.RetryableError) as exc:
            if src.kind != "clip":
                raise
            # A clip that will not decode costs its scene the footage, never the video: the still instead.
            log.warning("scene %d: clip failed, its still is shown: %s", seg.index, exc)
            fallbacks.append(f"scene {seg.index}: clip failed to encode, its still is shown: {str(exc)[-200:]}")
            run_ffmpeg(segment_args(seg, Source(), os.path.relpath(part, wd), enc, size, burn=burn,
                                    threads=threads, fontsdir=fontsdir), cwd=wd, cancelled=ctx.cancelled,
                       what=f"encoding scene {seg.index}")
        os.replace(part, path)
        return seg.frames

    for _, frames in each_done(lambda job: encode(*job), todo, workers, "render"):
        done += frames
        ctx.progress(0.9 * done / total)  # from the stage's own thread
    return paths, fallbacks


def _seg_fp(seg: Segment, src: Source, png: Path, enc: Encoder, size: tuple[int, int], burn: bool,
            ass_stat: list[int] | None) -> str:
    """A segment's name part: its inputs (a plain still's parts as they always were, so old segments stay valid)."""
    return _fingerprint(_stat(png), enc.name, enc.codec_args, size, seg.frames, seg.start_frame if burn else 0,
                        ass_stat, *([src.fingerprint()] if src.moving else []))


# ---------------------------------------------------------------- checking


def check_video(path: Path, audio_s: float, size: tuple[int, int], fps: int = FPS,
                subtitle_streams: int = 0) -> dict[str, Any]:
    """Probe the result; PermanentError with the numbers when anything is off."""
    info = probe(path)
    video, audio = info.of("video"), info.of("audio")
    facts: dict[str, Any] = {"duration": round(info.duration, 3), "streams": len(info.streams)}
    problems = []
    subs = info.of("subtitle")
    if len(video) != 1 or len(audio) != 1 or len(subs) != subtitle_streams or len(info.streams) != 2 + len(subs):
        problems.append(f"{len(video)} video + {len(audio)} audio + {len(subs)} subtitle of {len(info.streams)} "
                        f"streams, want 1 + 1 + {subtitle_streams}")
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


def _segments_ready(ctx: StageContext, segs: list[Segment], srcs: list[Source], size: tuple[int, int],
                    burn: bool, enc: Encoder) -> tuple[list[Path], list[str]]:
    seg_dir = ctx.tmpdir.resolve() / "render"
    seg_dir.mkdir(parents=True, exist_ok=True)
    return _encode_segments(ctx, ctx.workdir.resolve(), segs, srcs, enc, size, burn, seg_dir)


def _encoder(ctx: StageContext, srcs: list[Source]) -> Encoder:
    """One encoder setting for every segment of a video (see footage.moving_encoder)."""
    enc = detect_encoder(options_of(ctx).encoder)
    return footage.moving_encoder(enc) if any(s.moving for s in srcs) else enc


def run_encode(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """The scene segments, encoded ahead of the mux while the narration is mastered beside it."""
    started = time.monotonic()
    plan, narration, size, burn = _inputs(ctx)
    audio_s = (_audio(ctx, narration)[1] if ctx.path(_audio_rel(narration)).exists()
               and master.is_current(ctx, item) else None)
    segs = scene_frames(plan, narration, frame_clock(narration, audio_s))
    srcs, notes = scene_sources(ctx.workdir, segs, options_of(ctx).motion)
    notes += _segments_ready(ctx, segs, srcs, size, burn, _encoder(ctx, srcs))[1]
    ctx.progress(1.0)
    meta: dict[str, Any] = {"segments": len(segs), "encode_s": round(time.monotonic() - started, 3)}
    return StageResult(meta={**meta, "footage_fallbacks": notes} if notes else meta)


def _mux(ctx: StageContext, wd: Path, list_file: Path, audio: Path, audio_s: float, audio_codec: str, part: Path,
         srt: Path | None) -> str | None:
    """Mux video.mp4.part; a soft subtitle track that ffmpeg refuses is dropped with the reason, never the video."""
    opts = options_of(ctx)
    rel = [os.path.relpath(x, wd) for x in (list_file, audio, part)]
    if srt is not None:
        try:
            run_ffmpeg(mux_args(rel[0], rel[1], audio_s, audio_codec, rel[2], opts.audio_bitrate,
                                os.path.relpath(srt, wd), opts.default_language),
                       cwd=wd, cancelled=ctx.cancelled, what="muxing video.mp4")
            return None
        except errors.PermanentError as exc:
            log.warning("soft subtitles left out: %s", exc)
            problem = f"soft subtitles left out: {str(exc)[-200:]}"
    else:
        problem = None
    run_ffmpeg(mux_args(rel[0], rel[1], audio_s, audio_codec, rel[2], opts.audio_bitrate),
               cwd=wd, cancelled=ctx.cancelled, what="muxing video.mp4")
    return problem


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    started = time.monotonic()
    plan, narration, size, burn = _inputs(ctx)
    opts = options_of(ctx)
    if int(plan.get("fps") or FPS) != FPS:
        log.warning("plan asks for %s fps; rendering %d fps", plan.get("fps"), FPS)
    if narration.get("scenes") and not ctx.path(_audio_rel(narration)).exists():
        master.master(ctx, item)  # a batch made before the master stage existed, or a lost track
    audio, audio_s, audio_codec = _audio(ctx, narration)
    segs = scene_frames(plan, narration, frame_clock(narration, audio_s))
    srcs, notes = scene_sources(ctx.workdir, segs, opts.motion)
    srt: Path | None = ctx.path(SUBTITLES_SRT) if opts.embed_subtitles else None
    if srt is not None and not srt.exists():
        notes.append(f"embed_subtitles is on but {SUBTITLES_SRT} is missing: no soft subtitle track")
        srt = None
    pngs = [_stat(ctx.path(s.png)) if ctx.path(s.png).exists() else None for s in segs]
    moving = any(s.moving for s in srcs)
    extra = [[s.fingerprint() for s in srcs], _stat(srt) if srt else None] if moving or srt else []
    key = _fingerprint(size, [(s.png, s.frames) for s in segs], pngs, _stat(audio), burn,
                       _stat(ctx.path(SUBTITLES_ASS)) if burn else None, *extra)
    out, report = ctx.path(VIDEO), ctx.path(RENDER_JSON)
    artifacts = {"video": str(out), "render": str(report)}
    if out.exists() and report.exists():
        try:
            prev = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = {}
        if prev.get("checked") and prev.get("key") == key and prev.get("bytes") == out.stat().st_size:
            meta = {"encoder": prev.get("encoder"), "render_reused": True, "duration": prev.get("duration")}
            return StageResult(artifacts=artifacts, meta={**meta, "footage_fallbacks": notes} if notes else meta)

    enc = _encoder(ctx, srcs)
    wd = ctx.workdir.resolve()  # ffmpeg runs here and gets relative paths: nothing to escape in filter strings
    paths, failed = _segments_ready(ctx, segs, srcs, size, burn, enc)  # the encode stage's, or what it left undone
    notes += failed
    if ctx.cancelled():
        raise errors.Cancelled("render cancelled")

    seg_dir = paths[0].parent
    list_file = seg_dir / "segments.txt"
    list_file.write_text("".join(f"file '{p.name}'\nduration {s.frames / FPS:.6f}\n" for p, s in zip(paths, segs,
                                                                                                       strict=True)),
                         encoding="utf-8")
    part = out.with_name(out.name + ".part")
    dropped = _mux(ctx, wd, list_file, audio, audio_s, audio_codec, part, srt)
    if dropped:
        notes.append(dropped)
    try:
        facts = check_video(part, audio_s, size, subtitle_streams=int(srt is not None and not dropped))
    except errors.PermanentError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out)
    wall = round(time.monotonic() - started, 3)
    embedded = srt is not None and not dropped
    record = {"encoder": enc.name, **facts, "audio_input_s": round(audio_s, 3), "checked": True,
              "scenes": len(segs), "burn_subtitles": burn, "key": key, "bytes": out.stat().st_size, "wall_s": wall,
              "motion": opts.motion, "footage_scenes": sum(s.kind == "clip" for s in srcs),
              "embedded_subtitles": embedded, "footage_fallbacks": notes}
    atomic_write_bytes(report, json.dumps(record, indent=2).encode())
    shutil.rmtree(seg_dir, ignore_errors=True)  # the video is safe on disk: the segments have served
    ctx.progress(1.0)
    meta = {"encoder": enc.name, "duration": facts["duration"], "render_s": wall, "burn_subtitles": burn,
            "embedded_subtitles": embedded}
    return StageResult(artifacts=artifacts, meta={**meta, "footage_fallbacks": notes} if notes else meta)


register(Stage("encode", run_encode, resource="gpu", doc="frames + scene times → one H.264 segment per scene"))
register(Stage("render", run, resource="gpu", doc="segments + narration.m4a → video.mp4 (H.264 CFR 30 fps + AAC)"))

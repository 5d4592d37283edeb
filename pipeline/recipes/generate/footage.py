"""What each scene's segment is made of, and the ffmpeg arguments that encode it.

A scene is one of three sources. A **still** (``frames/scene-NN.png``) is decoded once, converted
once and repeated by the ``loop`` filter, so x264 sees identical frames (almost all skip blocks):
the render's fast path, unchanged. A **still in motion** (option ``motion``) gets a slow Ken Burns
move, chosen by scene number in turn: zoom in, pan right, zoom out, pan left. A **clip** (a scene
that ``visuals.json`` says is ``kind: "video"``) is decoded from its start, looped when shorter
than the scene (``-stream_loop -1``), cut to the scene's exact frame count, brought to 30 fps,
scaled to cover the frame and centre-cropped, with the scene's text layer
(``frames/scene-NN.text.png``, RGBA, drawn by the frames stage) laid over it when present.

Why these moves (measured on 2 cores, one ffmpeg thread, a real 1080x1920 frame, 150 frames):
the still alone 0.8–1.4 s; a pan as a ``crop`` window moving over a picture scaled up once
1.4 s and 0.44 MB (x264 finds the whole-pixel shift exactly); a zoom through ``zoompan`` on
the one decoded frame 1.9–2.3 s; a zoom as a per-frame ``scale`` (``eval=frame``) 2.8 s, so
zoompan it is. A pan moves at most one pixel a frame (never a jerk of two), over at most a
fifth of the width; a zoom goes 1.0 → 1.1. ``zoompan`` places its window on whole pixels, so a
zoom can wobble by half a pixel: the price of not decoding a four-times upscale per frame.

Moving pictures are real P-frames, not skip blocks, so a constant quantizer of 17 (the stills'
choice) would make them ≈ 12 Mbit/s. When any scene moves, every segment of that video is
encoded with libx264 ``ultrafast`` at CRF 23 instead (:func:`moving_encoder`): one setting for
the whole video, because segments are joined with ``-c copy`` into one MP4 that keeps only the
first segment's parameter sets, and x264 writes its quantizer into the PPS (measured: qp 17 and
CRF 23 segments differ there; ffmpeg decodes such a join correctly, a stricter player may not).

The mux's arguments live here too (:func:`mux_args`), with the soft subtitle track.

A clip that is missing or will not decode never costs the video: the scene falls back to its
still and the reason is reported (render.json ``footage_fallbacks``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.common.ffmpeg import LIBX264, Encoder
from pipeline.recipes.generate.video import FPS, FRAMES_DIR, font_path, scene_png

log = logging.getLogger("tubemill.render")

VISUALS = "visuals.json"
SUBTITLES_ASS = "subtitles.ass"
MOVES = ("zoom_in", "pan_right", "zoom_out", "pan_left")
ZOOM = 0.10  # the zoom's travel: 1.0 -> 1.1
PAN_MAX = 0.2  # the pan's travel, at most this fraction of the width
TO_BT709 = "out_color_matrix=bt709:out_range=tv"
LANG3 = {"en": "eng", "de": "ger", "fr": "fre", "es": "spa", "it": "ita", "pt": "por", "nl": "dut", "ja": "jpn",
         "zh": "chi", "ko": "kor", "ru": "rus", "pl": "pol", "tr": "tur", "ar": "ara", "hi": "hin", "sv": "swe"}
MOVING_X264 = Encoder("libx264", ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "23",
                                  "-x264-params", "keyint=300:min-keyint=30:scenecut=0"), hardware=False)


@dataclass(frozen=True)
class Segment:
    index: int
    png: str  # workdir-relative
    start_frame: int
    frames: int


@dataclass(frozen=True)
class Source:
    """One scene's picture: a still (``move`` None), a still with a move, or a clip with its text layer."""

    kind: str = "still"  # "still" | "clip"
    move: str | None = None
    clip: str | None = None  # workdir-relative (so a moved home keeps its segments)
    overlay: str | None = None  # workdir-relative text layer
    stat: tuple[Any, ...] = field(default=())  # clip and overlay size+mtime, for the fingerprints

    @property
    def moving(self) -> bool:
        return self.kind == "clip" or self.move is not None

    def fingerprint(self) -> list[Any]:
        """What a segment's name must change with; empty for a plain still, so older segments stay valid."""
        return [self.kind, self.move, self.clip, self.overlay, list(self.stat)] if self.moving else []


def text_png(index: int) -> str:
    """The frames stage's text-only layer for a clip scene: ``frames/scene-NN.text.png``."""
    return scene_png(index)[: -len(".png")] + ".text.png"


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def read_visuals(workdir: Path) -> tuple[dict[int, dict[str, Any]], str | None]:
    """visuals.json's scenes by index, and why it could not be read (None when fine or absent)."""
    path = workdir / VISUALS
    if not path.exists():
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scenes = data.get("scenes") or []
        return {int(s["index"]): s for s in scenes if isinstance(s, dict) and "index" in s}, None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return {}, f"{VISUALS} unreadable, stills used: {exc}"


def scene_sources(workdir: Path, segs: list[Segment], motion: bool) -> tuple[list[Source], list[str]]:
    """Each scene's source, and the reasons any clip scene fell back to its still."""
    visuals, problem = read_visuals(workdir)
    notes = [problem] if problem else []
    root = workdir.resolve()
    out = []
    for k, seg in enumerate(segs):
        v = visuals.get(seg.index) or {}
        if v.get("kind") == "video" and v.get("path"):
            clip = (root / str(v["path"])).resolve()
            if root not in clip.parents or not clip.is_file():
                notes.append(f"scene {seg.index}: clip {v['path']} is missing, its still is shown")
            else:
                layer = next((rel for rel in (text_png(seg.index), f"{FRAMES_DIR}/scene-{seg.index:03d}.text.png")
                              if (root / rel).is_file()), None)
                stat = (*_stat(clip), *(_stat(root / layer) if layer else ()))
                out.append(Source("clip", clip=clip.relative_to(root).as_posix(), overlay=layer, stat=stat))
                continue
        out.append(Source(move=MOVES[k % len(MOVES)] if motion else None))
    return out, notes


def moving_encoder(enc: Encoder) -> Encoder:
    """The encoder for a video where something moves: CRF instead of the stills' constant quantizer."""
    return MOVING_X264 if enc == LIBX264 else enc


# ---------------------------------------------------------------- ffmpeg arguments


_SAFE_PATH = re.compile(r"^[\w./+@-]+$")


def subtitles_filter(fontsdir: str | None = None) -> str:
    """The libass filter on ``subtitles.ass`` (relative: ffmpeg runs in the workdir, no path escaping)."""
    if fontsdir:  # the item's own fonts/ (a caption_font given as a file, DejaVu beside it), relative
        return f"subtitles=filename={SUBTITLES_ASS}:fontsdir={fontsdir}"
    fonts = font_path(bold=True).parent
    extra = f":fontsdir={fonts}" if _SAFE_PATH.match(str(fonts)) else ""  # else fontconfig finds DejaVu
    return f"subtitles=filename={SUBTITLES_ASS}{extra}"


def _timing(seg: Segment, burn: bool, fps: int, fontsdir: str | None = None) -> list[str]:
    """Frame-numbered timestamps; with burn-in, absolute ones while libass draws, then back to 0."""
    if burn:
        return [f"settb=1/{fps}", f"setpts=N+{seg.start_frame}", subtitles_filter(fontsdir), "setpts=PTS-STARTPTS"]
    return [f"settb=1/{fps}", "setpts=N"]


def _still_chain(seg: Segment, move: str | None, size: tuple[int, int], fps: int) -> list[str]:
    w, h = size
    last = max(1, seg.frames - 1)
    loop = f"loop=loop={seg.frames - 1}:size=1:start=0"
    if move in ("zoom_in", "zoom_out"):
        z = f"1+{ZOOM}*on/{last}" if move == "zoom_in" else f"1+{ZOOM}*(1-on/{last})"
        return [f"scale={w}:{h}:{TO_BT709}:flags=bicubic", "format=yuv420p",
                f"zoompan=z='{z}':x='iw/2-iw/zoom/2':y='ih/2-ih/zoom/2':d={seg.frames}:s={w}x{h}:fps={fps}"]
    if move in ("pan_right", "pan_left"):
        travel = max(2, min(last, int(w * PAN_MAX)) // 2 * 2)  # at most a pixel a frame
        bw, bh = w + travel, (h * (w + travel) // w + 1) // 2 * 2
        x = f"{travel}*n/{last}" if move == "pan_right" else f"{travel}*(1-n/{last})"
        return [f"scale={bw}:{bh}:{TO_BT709}:flags=bicubic", "format=yuv420p", loop,
                f"crop={w}:{h}:x='{x}':y={(bh - h) // 2}:exact=1"]  # exact: odd x too (else 2 px jumps)
    return [f"scale={w}:{h}:{TO_BT709}:flags=bicubic", "format=yuv420p", loop]


def segment_args(seg: Segment, src: Source, out: str, enc: Encoder, size: tuple[int, int], *, burn: bool,
                 threads: int, fps: int = FPS, fontsdir: str | None = None) -> list[str]:
    """ffmpeg arguments for one scene's segment of exactly ``seg.frames`` frames (ffmpeg runs in the workdir)."""
    w, h = size
    tail = [enc.filter_tail] if enc.filter_tail else []
    common = ["-frames:v", str(seg.frames), "-r", str(fps), "-an", *enc.args(threads),
              "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
              "-video_track_timescale", str(fps * 512), "-f", "mp4", out]
    if src.kind == "clip" and src.clip:
        # Centre-crop to the frame's shape first, then scale: a 16:9 clip covering a 9:16 frame never becomes
        # a 3413x1920 picture that is mostly thrown away (user CPU 3.64 s -> 3.39 s per 150 frames, measured).
        crop = f"crop=w='2*trunc(min(iw,ih*{w}/{h})/2)':h='2*trunc(min(ih,iw*{h}/{w})/2)'"
        bg = f"[0:v]setpts=PTS-STARTPTS,fps={fps},{crop},scale={w}:{h}:{TO_BT709}:flags=bicubic,setsar=1,format=yuv420p"
        inputs = ["-stream_loop", "-1", "-i", f"file:{src.clip}"]
        if src.overlay:
            inputs += ["-framerate", str(fps), "-i", src.overlay]
            graph = (f"{bg}[bg];[1:v]scale={w}:{h}:{TO_BT709},format=yuva420p[t];"
                     f"[bg][t]overlay=0:0:format=yuv420:eof_action=repeat,format=yuv420p,")
        else:
            graph = bg + ","
        graph += ",".join([*_timing(seg, burn, fps, fontsdir), *tail]) + "[v]"
        return ["-y", *enc.global_args, *inputs, "-filter_complex", graph, "-map", "[v]", *common]
    chain = [*_still_chain(seg, src.move, size, fps), *_timing(seg, burn, fps, fontsdir), *tail]
    return ["-y", *enc.global_args, "-framerate", str(fps), "-i", seg.png, "-vf", ",".join(chain), *common]


def mux_args(list_file: str, audio: str, audio_s: float, audio_codec: str, out: str, bitrate: str,
             srt: str | None = None, language: str = "en") -> list[str]:
    """Join the segments (copied), add the narration and, with ``srt``, a soft mov_text subtitle track."""
    audio_opts = ["-c:a", "copy"] if audio_codec == "aac" else ["-c:a", "aac", "-b:a", bitrate]
    subs_in = ["-f", "srt", "-i", srt] if srt else []
    subs_out = (["-map", "2:s:0", "-c:s", "mov_text",
                 "-metadata:s:s:0", f"language={LANG3.get(language.lower()[:2], 'und')}"] if srt else [])
    return [
        "-y", "-f", "concat", "-safe", "0", "-i", list_file, "-i", audio, *subs_in,
        "-map", "0:v:0", "-map", "1:a:0", *subs_out, "-c:v", "copy", *audio_opts,
        "-t", f"{audio_s:.3f}", "-movflags", "+faststart", "-f", "mp4", out,
    ]

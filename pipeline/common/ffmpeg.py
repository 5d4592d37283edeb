"""The one ffmpeg adapter: which binary, how to run it, what a file holds, which H.264 encoder works.

One locator for every caller (the generate stages, yt-dlp's ``ffmpeg_location``, the doctor):
``TUBEMILL_FFMPEG`` when set, else Debian's ``/usr/bin/ffmpeg`` (it ships ffprobe and libass,
the ``subtitles`` filter), else an ``ffmpeg`` on PATH, else imageio-ffmpeg's static binary. That
one has no ffprobe, so :func:`probe` then parses ``ffmpeg -i`` output instead. yt-dlp accepts
the binary only as a full path (a directory without ffprobe fails, see NOTES), which is what
:func:`find_ffmpeg` returns.

Encoder detection runs one tiny test encode per candidate, because ``ffmpeg -encoders``
lists what was *compiled in* (Debian lists h264_nvenc, h264_vaapi and h264_qsv on a
machine with no GPU at all), not what works. The answer is cached per process.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pipeline import errors

log = logging.getLogger("tubemill.ffmpeg")

DEBIAN_FFMPEG = Path("/usr/bin/ffmpeg")
DEBIAN_FFPROBE = Path("/usr/bin/ffprobe")


# ---------------------------------------------------------------- executables


@cache
def find_ffmpeg() -> str | None:
    """Full path of the ffmpeg to use, or None when there is none (callers that can do without it)."""
    env = os.environ.get("TUBEMILL_FFMPEG")
    if env:
        return env
    if DEBIAN_FFMPEG.exists():
        return str(DEBIAN_FFMPEG)
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError):  # RuntimeError: the wheel's binary is missing for this platform
        return None


def ffmpeg_exe() -> str:
    """The ffmpeg every stage runs; a missing one is a setup problem, said with the fix."""
    exe = find_ffmpeg()
    if exe is None:
        raise errors.ConfigError("no ffmpeg: install Debian's ffmpeg (apt-get install ffmpeg) or imageio-ffmpeg")
    return exe


@cache
def ffprobe_exe() -> str | None:
    """ffprobe next to the chosen ffmpeg, else Debian's, else on PATH; None when there is none (imageio-ffmpeg)."""
    exe = find_ffmpeg()
    beside = Path(exe).with_name("ffprobe") if exe else None
    if beside is not None and beside.exists():
        return str(beside)
    if DEBIAN_FFPROBE.exists():
        return str(DEBIAN_FFPROBE)
    return shutil.which("ffprobe")


def run_ffmpeg(args: Sequence[str], *, cwd: Path | None = None, cancelled: Callable[[], bool] | None = None,
               timeout: float | None = None, what: str = "ffmpeg",
               loglevel: str = "error") -> subprocess.CompletedProcess[str]:
    """Run ffmpeg with ``args``; kill it when ``cancelled()`` turns true; errors become pipeline errors.

    ``loglevel`` is "error" unless the caller reads what a filter prints at info level
    (loudnorm's measurement). Output is decoded leniently: a file name in another encoding
    must not turn a finished encode into a traceback.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", loglevel, *args]
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                encoding="utf-8", errors="replace")
    except OSError as exc:
        raise errors.ConfigError(f"cannot start ffmpeg ({cmd[0]}): {exc}") from exc
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            if cancelled is not None and cancelled():
                proc.kill()
                proc.communicate()
                raise errors.Cancelled(f"{what} cancelled") from None
            if deadline is not None and time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                raise errors.RetryableError(f"{what} ran past {timeout:.0f}s") from None
    if proc.returncode != 0:
        tail = " | ".join((err or "").strip().splitlines()[-4:])
        raise errors.PermanentError(f"{what} failed (exit {proc.returncode}): {tail or 'no message'}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# ---------------------------------------------------------------- probing


@dataclass(frozen=True)
class StreamInfo:
    kind: str  # "video" | "audio" | other codec_type
    codec: str
    duration: float | None = None
    width: int = 0
    height: int = 0
    r_frame_rate: str = ""
    avg_fps: float = 0.0
    frames: int | None = None


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    streams: list[StreamInfo] = field(default_factory=list)

    def of(self, kind: str) -> list[StreamInfo]:
        return [s for s in self.streams if s.kind == kind]


def _ratio(text: str | None) -> float:
    num, _, den = str(text or "0/1").partition("/")
    try:
        n, d = float(num), float(den or 1)
    except ValueError:
        return 0.0
    return n / d if d else 0.0


def _float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def probe(path: Path) -> MediaInfo:
    """Container and stream facts via ffprobe (or parsed ``ffmpeg -i`` output when there is no ffprobe)."""
    path = Path(path)
    if not path.exists():
        raise errors.PermanentError(f"cannot probe {path.name}: no such file")
    exe = ffprobe_exe()
    if exe is None:
        return _probe_with_ffmpeg(path)
    cmd = [exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise errors.PermanentError(f"ffprobe failed on {path.name}: {exc}") from exc
    if res.returncode != 0:
        raise errors.PermanentError(f"ffprobe cannot read {path.name}: {res.stderr.strip()[-300:]}")
    data = json.loads(res.stdout or "{}")
    streams = []
    for s in data.get("streams") or []:
        nb = s.get("nb_frames")
        streams.append(StreamInfo(
            kind=s.get("codec_type", ""), codec=s.get("codec_name", ""), duration=_float(s.get("duration")),
            width=int(s.get("width") or 0), height=int(s.get("height") or 0),
            r_frame_rate=s.get("r_frame_rate", ""), avg_fps=_ratio(s.get("avg_frame_rate")),
            frames=int(nb) if str(nb or "").isdigit() else None,
        ))
    return MediaInfo(duration=_float((data.get("format") or {}).get("duration")) or 0.0, streams=streams)


_DUR = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+[^:]*:\s*(Video|Audio|Subtitle|Data):\s*(\w+)(.*)")


def _probe_with_ffmpeg(path: Path) -> MediaInfo:
    """``ffmpeg -i`` stderr parsing: the container duration stands in for stream durations."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    m = _DUR.search(res.stderr)
    if not m:
        raise errors.PermanentError(f"cannot read {path.name} as media: {res.stderr.strip()[-300:]}")
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    streams = []
    for kind, codec, rest in _STREAM.findall(res.stderr):
        size = re.search(r"(\d{2,5})x(\d{2,5})", rest)
        fps = re.search(r"([\d.]+) fps", rest)
        rate = fps.group(1) if fps else ""
        streams.append(StreamInfo(kind=kind.lower(), codec=codec, duration=duration,
                                  width=int(size.group(1)) if size else 0, height=int(size.group(2)) if size else 0,
                                  r_frame_rate=f"{rate}/1" if rate and float(rate).is_integer() else rate,
                                  avg_fps=float(rate) if rate else 0.0))
    return MediaInfo(duration=duration, streams=streams)


# ---------------------------------------------------------------- encoders


@dataclass(frozen=True)
class Encoder:
    """How to drive one H.264 encoder: global options, the tail of the filter chain, codec options."""

    name: str
    codec_args: tuple[str, ...]
    global_args: tuple[str, ...] = ()
    filter_tail: str = ""  # appended to the video filter chain (hardware upload)
    hardware: bool = True

    def args(self, threads: int | None = None) -> list[str]:
        out = list(self.codec_args)
        if threads and not self.hardware:
            out += ["-threads", str(threads)]
        return out


# libx264 for stills: every frame of a scene is the same picture, so P-frames are almost all skip blocks and the
# preset mostly decides the cost of the one I-frame plus per-frame analysis overhead. Measured on 2 cores,
# 1080x1920, 300 identical frames, one thread: ultrafast 1.4 s (SSIM 0.9990), superfast+stillimage 2.8 s,
# veryfast+stillimage 2.6 s (SSIM 0.9966). ultrafast with crf 20 and a 10 s GOP: 1.8 s, SSIM 0.9993, and
# 35% smaller than ultrafast's default GOP of 250 with scenecut (each scene starts with its own IDR anyway).
# A constant quantizer of 17 instead of crf 20: the scene's first frame gets about the quantizer crf gave it
# (crf 20 less ipratio) and the repeats are skip blocks either way, but crf's rate control looked at every
# repeated frame: a real scene still, 300 frames: 2.03 s → 1.44 s, 259 → 175 KB, SSIM 0.9975 → 0.9978.
LIBX264 = Encoder("libx264", ("-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-qp", "17",
                              "-x264-params", "keyint=300:min-keyint=30:scenecut=0"), hardware=False)

_HARDWARE: tuple[Encoder, ...] = (
    Encoder("h264_nvenc", ("-c:v", "h264_nvenc", "-preset", "p2", "-rc", "vbr", "-cq", "23", "-b:v", "0",
                           "-bf", "0", "-g", "300")),
    Encoder("h264_vaapi", ("-c:v", "h264_vaapi", "-qp", "22", "-bf", "0", "-g", "300"),
            global_args=("-vaapi_device", "/dev/dri/renderD128"), filter_tail="format=nv12,hwupload"),
    Encoder("h264_qsv", ("-c:v", "h264_qsv", "-global_quality", "23", "-bf", "0", "-g", "300"),
            filter_tail="format=nv12"),
    Encoder("h264_videotoolbox", ("-c:v", "h264_videotoolbox", "-b:v", "6M", "-bf", "0", "-g", "300"),
            filter_tail="format=nv12"),
)
ENCODERS: dict[str, Encoder] = {e.name: e for e in (*_HARDWARE, LIBX264)}

_detect_lock = threading.Lock()
_detected: dict[str, Encoder] = {}


def listed_encoders() -> set[str]:
    """Encoder names this ffmpeg was built with (not necessarily usable here)."""
    try:
        res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    names = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "V":
            names.add(parts[1])
    return names


def encoder_works(enc: Encoder) -> bool:
    """One 256x256 frame through the same option set the render uses: the only honest test."""
    chain = "format=yuv420p" + (f",{enc.filter_tail}" if enc.filter_tail else "")
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", *enc.global_args,
           "-f", "lavfi", "-i", "color=c=gray:s=256x256:r=30", "-frames:v", "1", "-vf", chain,
           *enc.args(1), "-f", "null", "-"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if res.returncode != 0:
        log.debug("encoder %s unusable: %s", enc.name, res.stderr.strip()[-200:])
    return res.returncode == 0


def detect_encoder(prefer: str | None = None) -> Encoder:
    """The fastest H.264 encoder that really encodes here, cached per process.

    Hardware first (nvenc, vaapi, qsv, videotoolbox: only those ffmpeg lists), then libx264.
    ``prefer`` (an encoder name, or "auto") is tried first; if it fails, detection carries on.
    """
    key = prefer or "auto"
    with _detect_lock:
        if key in _detected:
            return _detected[key]
        listed = listed_encoders()
        order = [e for e in _HARDWARE if e.name in listed]
        if prefer and prefer != "auto":
            if prefer not in ENCODERS:
                raise errors.ConfigError(f"unknown encoder {prefer!r}; choose from {', '.join(ENCODERS)}")
            order = [ENCODERS[prefer], *[e for e in order if e.name != prefer]]
        if all(e.name != LIBX264.name for e in order):
            order.append(LIBX264)
        for enc in order:
            if enc.name == "h264_vaapi" and not Path("/dev/dri/renderD128").exists():
                continue
            if encoder_works(enc):
                chosen = enc
                break
        else:
            raise errors.ConfigError("no working H.264 encoder: this ffmpeg lacks libx264")
        log.info("video encoder: %s", chosen.name)
        _detected[key] = chosen
        return chosen

"""Test media: espeak-ng speech encoded by ffmpeg into the formats Tubemill meets in the wild.

Everything here is deterministic enough for tests (espeak-ng is not random) and fast: the whole
default set (:func:`build_media`) takes well under two seconds on two cores. The pytest fixture
``media_files`` in ``tests/media_server.py`` builds it once per session in a tmp dir.

Needs ``espeak-ng`` on PATH (Debian package ``espeak-ng``). ffmpeg is ``/usr/bin/ffmpeg`` when present,
else the static binary of ``imageio-ffmpeg`` (no ffprobe there, so durations are read from ``ffmpeg -i``).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Short, distinct English texts with known wording (no digits: Whisper writes numbers as digits).
# At espeak-ng's 160 words per minute each one lasts roughly seven to nine seconds.
SPEECH: list[str] = [
    "The quick brown fox jumps over the lazy dog near the quiet river bank, "
    "while the morning sun rises slowly above the green hills.",
    "Welcome to the weekly cooking show. Today we bake fresh bread with flour, water, salt and yeast, "
    "then let the dough rest in a warm kitchen.",
    "Astronomers watched a bright comet cross the night sky. "
    "Its long tail glowed blue and white as it passed close to the sun.",
    "Please remember to water the garden every evening. "
    "The tomatoes need plenty of sunlight, and the roses should be trimmed before winter.",
]

# The default media set: name -> (file name, index into SPEECH or None for no speech).
# File names double as yt-dlp ids/titles for direct URLs (yt-dlp uses the base name).
MEDIA: dict[str, tuple[str, int | None]] = {
    "m4a": ("talk-alpha.m4a", 0),
    "mp3": ("talk-bravo.mp3", 1),
    "webm": ("talk-charlie.webm", 2),
    "mp4": ("talk-delta.mp4", 3),
    "wav": ("talk-alpha.wav", 0),
    "silent_mp4": ("silent.mp4", None),
    "vtt": ("talk-delta.vtt", 3),  # captions for the mp4: same words as SPEECH[3]
}

# name -> the words spoken in (or captioned for) that file; "" for the silent video.
MEDIA_TEXT: dict[str, str] = {name: ("" if i is None else SPEECH[i]) for name, (_, i) in MEDIA.items()}

SILENT_SECONDS = 3.0

_QUIET = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]


def ffmpeg_exe() -> str:
    """The ffmpeg the product runs (one locator: ``pipeline.common.ffmpeg``)."""
    from pipeline.common.ffmpeg import ffmpeg_exe as product_ffmpeg

    return product_ffmpeg()


def espeak_exe() -> str:
    found = shutil.which("espeak-ng")
    if not found:
        raise RuntimeError("espeak-ng not found: apt-get install -y espeak-ng")
    return found


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def wav_duration(path: str | os.PathLike[str]) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


@functools.cache
def _probe_duration(path: str, mtime: float) -> float:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True, timeout=30)
    m = re.search(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)", proc.stderr)
    if not m:
        raise RuntimeError(f"no duration for {path}: {proc.stderr[-500:]}")
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)


def media_duration(path: str | os.PathLike[str]) -> float:
    """Container duration in seconds (``wave`` for .wav, else parsed from ``ffmpeg -i``; cached)."""
    p = Path(path)
    if p.suffix.lower() == ".wav":
        return wav_duration(p)
    return _probe_duration(str(p.resolve()), p.stat().st_mtime)


def _tmp_sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{suffix}")


def _encode_args(ext: str, wav: Path, seconds: float) -> list[str]:
    dur = f"{seconds:.3f}"
    if ext == ".m4a":
        return ["-i", str(wav), "-vn", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-f", "ipod"]
    if ext == ".mp3":
        return ["-i", str(wav), "-vn", "-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"]
    if ext == ".webm":
        return ["-i", str(wav), "-vn", "-c:a", "libopus", "-b:a", "32k", "-f", "webm"]
    if ext == ".mp4":
        # A still colour frame + the audio. `-t` (not `-shortest`, which overshoots with looped inputs).
        return [
            "-f", "lavfi", "-i", "color=c=0x203040:s=160x120:r=5", "-i", str(wav), "-t", dur,
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-f", "mp4",
        ]  # fmt: skip
    raise ValueError(f"unsupported extension {ext!r} (want .m4a, .mp3, .webm, .mp4 or .wav)")


def make_speech(text: str, path: str | os.PathLike[str], voice: str = "en-us", speed: int = 160) -> Path:
    """Speak ``text`` with espeak-ng into ``path``, encoded by its extension (.m4a .mp3 .webm .mp4 .wav).

    ``.mp4`` is a tiny still colour video (160x120, 5 fps, H.264) with the speech as AAC audio.
    The file appears atomically (written under a temporary name, then renamed).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ext = out.suffix.lower()
    wav = _tmp_sibling(out, ".wav")
    try:
        _run([espeak_exe(), "-v", voice, "-s", str(speed), "-w", str(wav), text])
        if ext == ".wav":
            os.replace(wav, out)
            return out
        tmp = _tmp_sibling(out, ext)
        try:
            _run([ffmpeg_exe(), *_QUIET, *_encode_args(ext, wav, wav_duration(wav)), str(tmp)])
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        wav.unlink(missing_ok=True)
    return out


def make_silence_video(path: str | os.PathLike[str], seconds: float = SILENT_SECONDS) -> Path:
    """An .mp4 (or .webm/.mkv by extension) with a video stream and NO audio stream at all."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(out, out.suffix)
    vcodec = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if out.suffix.lower() == ".webm":
        vcodec = ["-c:v", "libvpx", "-b:v", "100k"]
    try:
        _run([
            ffmpeg_exe(), *_QUIET, "-f", "lavfi", "-i", "color=c=0x402020:s=160x120:r=5", "-t", f"{seconds:.3f}",
            "-an", *vcodec, str(tmp),
        ])  # fmt: skip
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _ts(seconds: float) -> str:
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def make_vtt(text: str, path: str | os.PathLike[str], duration: float) -> Path:
    """A WebVTT file with one cue per sentence of ``text``, spread over ``duration`` by character count."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    total = sum(len(s) for s in sentences) or 1
    lines = ["WEBVTT", ""]
    t = 0.0
    for i, s in enumerate(sentences, 1):
        end = duration if i == len(sentences) else t + duration * len(s) / total
        lines += [str(i), f"{_ts(t)} --> {_ts(end)}", s, ""]
        t = end
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def build_media(
    directory: str | os.PathLike[str], media: Mapping[str, tuple[str, int | None]] = MEDIA
) -> dict[str, Path]:
    """Generate the media set (default :data:`MEDIA`) into ``directory``; name -> Path.

    Files that already exist are kept (so a persistent directory works as a cache). Encodes run in parallel.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {name: d / fname for name, (fname, _) in media.items()}

    def build(name: str) -> None:
        fname, idx = media[name]
        path = out[name]
        if path.exists() and path.stat().st_size > 0:
            return
        if path.suffix.lower() == ".vtt":
            return  # written after the audio it describes (needs its duration)
        if idx is None:
            make_silence_video(path)
        else:
            make_speech(SPEECH[idx], path)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        list(pool.map(build, list(media)))

    for name, (_fname, idx) in media.items():
        path = out[name]
        if path.suffix.lower() != ".vtt" or (path.exists() and path.stat().st_size > 0) or idx is None:
            continue
        # Duration of the media that speaks the same text, else of a fresh wav.
        twin = next((out[n] for n, (f, i) in media.items() if i == idx and not f.endswith(".vtt")), None)
        if twin is not None:
            duration = media_duration(twin)
        else:
            duration = wav_duration(make_speech(SPEECH[idx], d / f".{path.stem}.wav"))
        make_vtt(SPEECH[idx], path, duration)
    return out


if __name__ == "__main__":  # python -m tests.media DIR
    import sys
    import time

    t0 = time.perf_counter()
    files = build_media(sys.argv[1] if len(sys.argv) > 1 else "test-media")
    for n, p in files.items():
        dur = "" if p.suffix == ".vtt" else f"{media_duration(p):6.2f}s"
        print(f"{n:11s} {p}  {p.stat().st_size:8d} B {dur}")
    print(f"built in {time.perf_counter() - t0:.2f}s")

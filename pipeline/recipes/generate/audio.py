"""The narration's audio plumbing: every clip as 48 kHz mono PCM, where speech starts and ends in it, and the
joined track's loudness normalization (EBU R128 in two passes) and AAC encoding.
The music bed (:mod:`pipeline.recipes.generate.music`) mixes into the joined track before that one pass.

Every clip is decoded to the same PCM format before joining, so the join is a byte
concatenation and scene starts are exact sample counts, not probe estimates (an MP3
without a Xing header has only an estimated duration). Loudness is normalized once, on
the joined track (EBU R128: I=-16 LUFS, TP=-1.5 dBTP, LRA=11 LU). ffmpeg and ffprobe are
:mod:`pipeline.common.ffmpeg`'s.
"""

from __future__ import annotations

import array
import json
import math
import os
import re
import wave
from collections.abc import Callable
from pathlib import Path

from pipeline import errors
from pipeline.common.ffmpeg import probe, run_ffmpeg

SAMPLE_RATE = 48_000
LOUDNORM = "loudnorm=I=-16:TP=-1.5:LRA=11"
FFMPEG_TIMEOUT_S = 600


def probe_duration(path: Path) -> float:
    """The container's duration in seconds (ffprobe, or ``ffmpeg -i`` where there is none)."""
    duration = probe(path).duration
    if not duration:
        raise errors.PermanentError(f"ffprobe found no duration in {path.name}")
    return duration


def to_pcm(src: Path, dst: Path, what: str) -> None:
    """Decode anything ffmpeg reads into ``dst``: 48 kHz mono s16 WAV, replaced atomically."""
    tmp = dst.with_name(f".tmp-{dst.name}")
    try:
        run_ffmpeg(["-y", "-i", str(src), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
                    "-f", "wav", str(tmp)], what=what, timeout=FFMPEG_TIMEOUT_S)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def write_silence(dst: Path, seconds: float) -> None:
    """``seconds`` of silence as a clip in the common PCM format (a scene with nothing to say keeps its time)."""
    tmp = dst.with_name(f".tmp-{dst.name}")
    frames = max(1, round(seconds * SAMPLE_RATE))
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(b"\0\0" * frames)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def wav_info(path: Path) -> tuple[int, int, int, int]:
    """(channels, sample width, rate, frames) of a WAV file."""
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()


def speech_bounds(path: Path, threshold: int = 500, window_s: float = 0.01) -> tuple[float, float]:
    """Where speech starts and ends in a mono s16 WAV (leading/trailing silence skipped), in seconds."""
    with wave.open(str(path), "rb") as w:
        rate, frames = w.getframerate(), w.getnframes()
        samples = array.array("h")
        samples.frombytes(w.readframes(frames))
    if not len(samples):
        return 0.0, 0.0
    step = max(1, int(rate * window_s))
    n_windows = (len(samples) + step - 1) // step

    def loud(i: int) -> bool:
        chunk = samples[i * step:(i + 1) * step]
        return max(chunk) > threshold or -min(chunk) > threshold

    first = next((i for i in range(n_windows) if loud(i)), None)
    if first is None:
        return 0.0, len(samples) / rate
    last = next(i for i in range(n_windows - 1, -1, -1) if loud(i))
    return first * step / rate, min(len(samples), (last + 1) * step) / rate


def pcm_duration(wav: Path) -> float:
    """A clip's exact duration from its sample count; refuses a WAV not in the common format (the join would
    garble it)."""
    channels, width, rate, frames = wav_info(wav)
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise errors.PermanentError(f"{wav.name}: expected 48 kHz mono 16-bit PCM")
    return frames / rate


def join_pcm(clips: list[Path], joined: Path) -> None:
    """Concatenate the clips' PCM into ``joined``: exact, because every clip is in the common format."""
    with wave.open(str(joined), "wb") as dst:
        dst.setnchannels(1)
        dst.setsampwidth(2)
        dst.setframerate(SAMPLE_RATE)
        for clip in clips:
            with wave.open(str(clip), "rb") as src:
                dst.writeframes(src.readframes(src.getnframes()))


def normalize_encode(src: Path, out: Path, *, channels: int = 1, bitrate: str = "128k",
                     cancelled: Callable[[], bool] | None = None) -> None:
    """Normalize ``src`` to -16 LUFS (loudnorm, two passes) and encode it as AAC into ``out``, atomically.

    The one loudness pass of the master stage, for the narration alone or for narration and
    music mixed: whatever is in ``src`` is what the listener hears at -16 LUFS.
    """
    tmp = out.with_name(f".tmp-{out.name}")
    try:
        run_ffmpeg(["-y", "-i", str(src), "-af", loudnorm_filter(measure_loudness(src, cancelled)),
                    "-ar", str(SAMPLE_RATE), "-ac", str(channels), "-c:a", "aac", "-b:a", bitrate,
                    "-movflags", "+faststart", "-f", "mp4", str(tmp)],
                   what=f"encoding {out.name}", timeout=FFMPEG_TIMEOUT_S, cancelled=cancelled)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def integrated_lufs(args: list[str], what: str, cancelled: Callable[[], bool] | None = None) -> float | None:
    """Run ffmpeg ``args`` (which must pass the audio through ``ebur128=framelog=verbose``) and return the
    integrated loudness its summary prints; None when there is none. ebur128 passes audio on unchanged,
    so a decode and its measurement are one pass (loudnorm would alter what it measures)."""
    proc = run_ffmpeg(args, what=what, timeout=FFMPEG_TIMEOUT_S, loglevel="info", cancelled=cancelled)
    text = proc.stderr
    at = text.rfind("Summary:")
    found = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", text[at:]) if at >= 0 else None
    if not found:
        return None
    value = float(found.group(1))
    return value if math.isfinite(value) else None


def measure_loudness(path: Path, cancelled: Callable[[], bool] | None = None) -> dict[str, str] | None:
    """loudnorm's first pass (``print_format=json``) over ``path``; None when ffmpeg printed nothing usable."""
    proc = run_ffmpeg(["-i", str(path), "-af", f"{LOUDNORM}:print_format=json", "-f", "null", "-"],
                      what="measuring loudness", timeout=FFMPEG_TIMEOUT_S, loglevel="info",
                      cancelled=cancelled)  # loudnorm prints at info
    text = proc.stderr
    start, end = text.rfind("{"), text.rfind("}")
    try:
        data = json.loads(text[start:end + 1]) if 0 <= start < end else None
    except ValueError:
        return None
    keys = ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")
    if not isinstance(data, dict) or not all(k in data for k in keys):
        return None
    try:
        if any(not math.isfinite(float(data[k])) for k in keys):  # silence measures as -inf
            return None
    except (TypeError, ValueError):
        return None
    return {k: str(data[k]) for k in keys}


def loudnorm_filter(measured: dict[str, str] | None) -> str:
    """The second-pass filter from a first-pass measurement, or the single-pass filter without one.

    Measured values make loudnorm apply one linear gain when the true-peak limit allows it (peaky
    speech often does not, and it falls back to dynamic mode). On 11 s of espeak-ng the single pass
    landed at -17.3 LUFS, two passes at -16.8. loudnorm works at 192 kHz internally; callers resample.
    """
    if not measured:
        return LOUDNORM
    return (f"{LOUDNORM}:measured_I={measured['input_i']}:measured_TP={measured['input_tp']}"
            f":measured_LRA={measured['input_lra']}:measured_thresh={measured['input_thresh']}"
            f":offset={measured['target_offset']}:linear=true")


"""The music bed: a track from ``music_dir`` looped or trimmed to the narration, ducked under it, faded, mixed.

Which track: the folder's audio files in name order, starting at the item's number (item 1
gets the first, item 2 the second…), so a batch spreads its tracks and a resumed item picks
the same one. A file ffmpeg cannot decode (or a silent one) is skipped for the next and
named in the item's meta; when none works the video keeps its narration-only master and the
meta says why (:class:`BedFailed`). Only file names reach the meta, never the user's paths.

Levels: the narration is measured (EBU R128) and set to -16 LUFS, the bed to ``music_db``
LUFS (its level in the gaps, before ducking), both before the mix, so the voice-to-bed ratio
does not depend on how loud a track was mastered. ``duck`` keys ffmpeg's
``sidechaincompress`` with the narration: under speech the bed drops 14-16 dB (measured on
espeak-ng speech, attack 20 ms, release 400 ms, so it swells back in pauses longer than
about half a second). The bed fades in over 1 s and out over 2 s (a quarter of the video
at most each). The mix is peak-limited 10 dB above the voice (:data:`LIMIT`) and written as
float PCM, mono like the narration; the master stage normalizes it once more to -16 LUFS and
encodes it, as it does the narration alone, and thanks to the limiter in one linear gain.

Three short ffmpeg passes (≈0.5 s of CPU per minute of video, beside the loudness pass's ≈5 s):
ebur128 over the narration; the track decoded once, up to the narration's length, while
ebur128 measures it; then loop, gain, duck, fade and mix, all from PCM. A track shorter than
the video loops with a plain cut at the seam: pick tracks longer than the videos, or loopable.
"""

from __future__ import annotations

import hashlib
import json
import logging
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.common.ffmpeg import run_ffmpeg
from pipeline.recipes.generate.audio import FFMPEG_TIMEOUT_S, SAMPLE_RATE, integrated_lufs, wav_info

log = logging.getLogger("tubemill.music")

AUDIO_EXTS = frozenset({".mp3", ".m4a", ".aac", ".wav", ".flac", ".ogg", ".oga", ".opus", ".webm", ".mka",
                        ".wma", ".aif", ".aiff", ".mp4"})
NARRATION_LUFS = -16.0  # the master's target: the narration's level in the mix
FADE_IN_S, FADE_OUT_S = 1.0, 2.0
# Measured on espeak-ng speech at -16 LUFS: 14-16 dB less bed under speech than in the gaps.
DUCK = "sidechaincompress=threshold=0.05:ratio=4:attack=20:release=400"
# Peaks held 10 dB above the voice's -16 LUFS, so the master's loudnorm can stay linear (one gain: it lands
# on -16.0). Without it espeak's peaks (18-20 dB above its loudness, linear mode allows 14.5) send loudnorm
# into dynamic mode, which lifts the pauses (the bed swells) and landed at -16.8 to -17.6 LUFS.
LIMIT = "alimiter=limit=0.5:level=false:attack=5:release=50"
MAX_GAIN_DB = 30.0  # a very quiet track is lifted at most this much
SILENT_LUFS = -60.0  # ebur128 reads -70 on digital silence: such a "track" is no bed
MIN_BED_S = 0.2
# The mix is mono, like the narration alone: loudnorm's two passes (at 192 kHz inside) cost twice as much
# in stereo and were already the master's slowest step, which runs beside the video encode.
MIX_CHANNELS = 1
MIX_VERSION = 1  # bump when the mix changes: masters made before are made again
FLAG = "music-failed"


class BedFailed(Exception):
    """No bed for this video (the reason is for the meta); the narration-only master is made instead."""

    def __init__(self, reason: str, track: str | None = None,
                 skipped: list[dict[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.track, self.skipped = reason, track, skipped or []

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"track": self.track, "error": self.reason}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass(frozen=True)
class Tracks:
    """The candidate tracks of one item, in the order they are tried, or why there are none."""

    paths: list[Path] = field(default_factory=list)
    error: str | None = None
    source: str | None = None  # music_dir's last part, for messages (never the full path)


def music_path(text: str | None) -> str | None:
    """A music folder as typed (CLI flag or form), absolute: the batch may be resumed from anywhere; empty: none."""
    text = (text or "").strip()
    return str(Path(text).expanduser().resolve()) if text else None


def list_tracks(music_dir: str | None) -> Tracks:
    """``music_dir``'s audio files in name order (or the one file it names); hidden files left out."""
    if not music_dir:
        return Tracks()
    p = Path(music_dir).expanduser()
    name = p.name or str(music_dir)
    if p.is_file():
        return Tracks([p], source=name)
    if not p.is_dir():
        return Tracks(error=f"music_dir {name!r} not found", source=name)
    found = sorted((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() in AUDIO_EXTS), key=lambda f: f.name)
    if not found:
        return Tracks(error=f"no audio files in music_dir {name!r}", source=name)
    return Tracks(found, source=name)


def rotation(paths: list[Path], item_n: int) -> list[Path]:
    """Every track once, starting with item ``item_n``'s (item 1: the first): the order they are tried in."""
    if not paths:
        return []
    start = (max(1, item_n) - 1) % len(paths)
    return paths[start:] + paths[:start]


def inputs_key(tracks: Tracks, item_n: int, music_db: float, duck: bool) -> str | None:
    """A fingerprint of everything the bed depends on (None: no music asked for), for the master's resume check.

    The track files' names, sizes and mtimes are in it, so a track replaced, added or removed
    makes the master again; the pick depends on the folder, so the whole listing counts.
    """
    if not tracks.paths and not tracks.error:
        return None
    files = []
    for p in rotation(tracks.paths, item_n):
        try:
            st = p.stat()
            files.append([p.name, st.st_size, st.st_mtime_ns])
        except OSError:
            files.append([p.name, None, None])
    doc = {"v": MIX_VERSION, "files": files, "error": tracks.error, "music_db": music_db, "duck": duck}
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _scrub(text: str, *paths: Path) -> str:
    """ffmpeg's message with the user's folders cut out (names only)."""
    for p in paths:
        text = text.replace(str(p.parent) + "/", "").replace(str(p.parent), "")
    return text[-300:]


def decode_bed(track: Path, seconds: float, dst: Path,
               cancelled: Callable[[], bool] | None = None) -> tuple[float, float]:
    """Decode up to ``seconds`` of ``track`` into ``dst`` (48 kHz s16 WAV), measuring it on the way.

    Returns (seconds decoded, integrated loudness in LUFS); raises BedFailed when ffmpeg cannot
    decode it, or it is too short or silent to be a bed. ``-t`` bounds the work by the video's
    length, not the track's.
    """
    args = ["-y", "-t", f"{seconds:.3f}", "-i", str(track), "-vn", "-sn", "-dn", "-ac", str(MIX_CHANNELS), "-ar",
            str(SAMPLE_RATE), "-af", "ebur128=framelog=verbose", "-c:a", "pcm_s16le", "-f", "wav", str(dst)]
    try:
        lufs = integrated_lufs(args, f"decoding {track.name}", cancelled)
    except (errors.PermanentError, errors.RetryableError) as exc:
        raise BedFailed(f"cannot decode {track.name}: {_scrub(str(exc), track, dst)}", track.name) from exc
    try:
        _, _, rate, frames = wav_info(dst)
        got = frames / rate
    except (OSError, EOFError, wave.Error) as exc:
        raise BedFailed(f"cannot decode {track.name}: {exc or type(exc).__name__}", track.name) from exc
    if got < MIN_BED_S:
        raise BedFailed(f"{track.name} has {got:.2f}s of audio: too short to loop", track.name)
    if lufs is None or lufs <= SILENT_LUFS:
        raise BedFailed(f"{track.name} is silent", track.name)
    return got, lufs


def mix_graph(seconds: float, narration_gain_db: float, bed_gain_db: float, duck: bool,
              channels: int = MIX_CHANNELS) -> str:
    """The filter graph: [0] narration (mono), [1] bed (looped on input) → [out], ``seconds`` long.

    The narration feeds the mix and, unchanged, the compressor's key. In stereo, mono goes to
    both channels at -3 dB each, which keeps its loudness as measured in mono.
    """
    n = max(1, round(seconds * SAMPLE_RATE))
    fade_in = min(FADE_IN_S, seconds / 4)
    fade_out = min(FADE_OUT_S, seconds / 4)
    spread = ",pan=stereo|c0=0.7071*c0|c1=0.7071*c0" if channels == 2 else ""
    voice = f"[0:a]volume={narration_gain_db:.3f}dB"
    bed = (f"[1:a]atrim=end_sample={n},volume={bed_gain_db:.3f}dB,afade=t=in:d={fade_in:.3f},"
           f"afade=t=out:st={seconds - fade_out:.3f}:d={fade_out:.3f}")
    mix = f"amix=inputs=2:duration=first:normalize=0,{LIMIT}[out]"
    if duck:
        return f"{voice},asplit=2[v0][key];[v0]anull{spread}[v];{bed}[bed];[bed][key]{DUCK}[b];[v][b]{mix}"
    return f"{voice}{spread}[v];{bed}[b];[v][b]{mix}"


def _gain(target: float, measured: float) -> float:
    return max(-MAX_GAIN_DB, min(MAX_GAIN_DB, target - measured))


@dataclass
class Bed:
    """A mixed track ready for the master's loudness pass, and what the meta records about it."""

    path: Path
    meta: dict[str, Any]


def make_bed(narration: Path, candidates: list[Path], music_db: float, duck: bool, scratch: Path,
             cancelled: Callable[[], bool] | None = None) -> Bed:
    """Mix the first decodable candidate under ``narration`` (48 kHz mono s16 WAV) into ``scratch/mixed.wav``.

    Raises BedFailed when no candidate works (or the mix itself fails); errors.Cancelled passes through.
    """
    _, _, rate, frames = wav_info(narration)
    seconds = frames / rate
    voice_lufs = integrated_lufs(["-i", str(narration), "-af", "ebur128=framelog=verbose", "-f", "null", "-"],
                                 "measuring the narration", cancelled)
    skipped: list[dict[str, str]] = []
    for track in candidates:
        bed_wav = scratch / "bed.wav"
        try:
            got, bed_lufs = decode_bed(track, seconds, bed_wav, cancelled)
        except BedFailed as exc:
            log.warning("music: skipping %s: %s", track.name, exc.reason)
            skipped.append({"track": track.name, "error": exc.reason})
            bed_wav.unlink(missing_ok=True)
            continue
        voice_gain = _gain(NARRATION_LUFS, voice_lufs) if voice_lufs is not None else 0.0
        bed_gain = _gain(music_db, bed_lufs)
        out = scratch / "mixed.wav"
        graph = mix_graph(seconds, voice_gain, bed_gain, duck)
        try:
            run_ffmpeg(["-y", "-i", str(narration), "-stream_loop", "-1", "-i", str(bed_wav),
                        "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_f32le", "-f", "wav", str(out)],
                       what="mixing the music bed", timeout=FFMPEG_TIMEOUT_S, cancelled=cancelled)
        except (errors.PermanentError, errors.RetryableError) as exc:
            raise BedFailed(f"mixing {track.name} failed: {_scrub(str(exc), track, out)}", track.name,
                            skipped) from exc
        finally:
            bed_wav.unlink(missing_ok=True)
        meta: dict[str, Any] = {"track": track.name, "music_db": music_db, "duck": duck,
                                "looped": got + 0.01 < seconds, "track_lufs": round(bed_lufs, 1)}
        if skipped:
            meta["skipped"] = skipped
        return Bed(out, meta)
    if len(candidates) == 1 and skipped:
        raise BedFailed(skipped[0]["error"], skipped[0]["track"])
    raise BedFailed(f"none of {len(candidates)} tracks could be decoded", None, skipped)


def flag_change(had: list[str], on: bool) -> dict[str, list[str]]:
    """``{"flags": …}`` with :data:`FLAG` set or cleared, when that changes ``had``; else nothing."""
    new = sorted({*(f for f in had if f != FLAG), *([FLAG] if on else [])})
    return {"flags": new} if new != sorted(set(had)) else {}


"""The two text-to-speech engines the narrate stage speaks with, wrapped once: edge-tts (online, neural voices,
real word boundaries) and espeak-ng (offline, always there), plus the voice and rate rules they share.

edge-tts failures come back as :class:`EdgeFailed` (``network`` says whether it was the
connection), so the stage can fall back to espeak-ng; espeak-ng failures are pipeline
errors. Offline edge-tts fails in ≈0.01 s and would leave a 0-byte file (see NOTES), so an
empty file is removed and audio is written only when some arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from pipeline import errors
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.narrate")

_TICKS = 10_000_000  # edge-tts offsets and durations are in 100-ns units
_T = TypeVar("_T")


class EdgeFailed(Exception):
    """edge-tts produced no usable audio; ``network`` says whether it was the connection."""

    def __init__(self, message: str, *, network: bool) -> None:
        super().__init__(message)
        self.network = network


# -- voices and rates ------------------------------------------------------------------------------------------------


def parse_rate(rate: str) -> int:
    """``"+10%"`` → 10; refuses anything else (edge-tts would fail later and less clearly)."""
    m = re.fullmatch(r"\s*([+-]?)(\d{1,3})%\s*", str(rate or ""))
    if not m:
        raise errors.InvalidInput(f"rate must look like '+0%' or '-10%', not {rate!r}")
    return int(m.group(2)) * (-1 if m.group(1) == "-" else 1)


def espeak_voice_for(voice: str) -> str:
    """The espeak-ng voice for an edge-tts voice's locale: ``en-US-AriaNeural`` → ``en-us``."""
    parts = str(voice or "").split("-")
    if len(parts) >= 2 and parts[0].isalpha() and parts[1].isalpha():
        return f"{parts[0]}-{parts[1]}".lower()
    return "en-us"


# -- edge-tts --------------------------------------------------------------------------------------------------------


def _run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from sync code, even when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _edge_collect(text: str, voice: str, rate: str, timeout: float,
                        proxy: str | None) -> tuple[bytes, list[dict[str, Any]]]:
    import edge_tts

    # edge-tts 7 reports only SentenceBoundary unless asked for words.
    comm = edge_tts.Communicate(text, voice, rate=rate, boundary="WordBoundary", proxy=proxy,
                                connect_timeout=int(max(1, min(timeout, 30))), receive_timeout=int(max(1, timeout)))
    audio = bytearray()
    words: list[dict[str, Any]] = []

    async def pump() -> None:
        async for chunk in comm.stream():
            if chunk["type"] == "audio":
                audio.extend(chunk.get("data", b""))
            elif chunk["type"] == "WordBoundary":
                start = float(chunk.get("offset", 0)) / _TICKS
                words.append({"start": start, "end": start + float(chunk.get("duration", 0)) / _TICKS,
                              "text": str(chunk.get("text", ""))})

    await asyncio.wait_for(pump(), timeout=timeout * 2)
    return bytes(audio), words


def synthesize_edge(text: str, voice: str, rate: str, mp3: Path, timeout: float = 60,
                    proxy: str | None = None) -> list[dict[str, Any]]:
    """edge-tts → ``mp3`` (written only when audio arrived); word boundaries in seconds from the clip start."""
    import aiohttp
    import edge_tts.exceptions

    try:
        audio, words = _run_async(_edge_collect(text, voice, rate, timeout, proxy))
    except (OSError, aiohttp.ClientError) as exc:  # TimeoutError and DNS errors are OSErrors
        raise EdgeFailed(f"edge-tts unreachable: {type(exc).__name__}: {exc}", network=True) from exc
    except edge_tts.exceptions.EdgeTTSException as exc:
        raise EdgeFailed(f"edge-tts: {type(exc).__name__}: {exc}", network=False) from exc
    except (ValueError, TypeError) as exc:  # TTSConfig validation: a malformed voice, rate or text
        raise EdgeFailed(f"edge-tts refused the settings: {exc}", network=False) from exc
    finally:
        if mp3.exists() and mp3.stat().st_size == 0:
            mp3.unlink()
    if not audio:
        raise EdgeFailed("edge-tts returned no audio", network=False)
    atomic_write_bytes(mp3, audio, durable=False)
    return words


# -- espeak-ng -------------------------------------------------------------------------------------------------------


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if not path:
        raise errors.ConfigError("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


def synthesize_espeak(text: str, voice: str, wpm: int, wav: Path) -> None:
    """espeak-ng → ``wav`` (its native 22.05 kHz); text goes through stdin, so a leading '-' is just text."""
    exe = _espeak()
    tmp = wav.with_name(f".tmp-{wav.name}")
    tried = []
    try:
        for v in dict.fromkeys([voice, voice.split("-")[0], "en-us"]):
            tried.append(v)
            proc = subprocess.run([exe, "-v", v, "-s", str(wpm), "--stdin", "-w", str(tmp)], input=text.encode(),
                                  capture_output=True, timeout=300, check=False)
            if proc.returncode == 0 and tmp.exists() and tmp.stat().st_size > 44:
                os.replace(tmp, wav)
                return
            log.info("espeak-ng voice %s failed: %s", v, proc.stderr.decode("utf-8", "replace").strip())
    except subprocess.TimeoutExpired as exc:
        raise errors.RetryableError("espeak-ng timed out") from exc
    finally:
        tmp.unlink(missing_ok=True)
    raise errors.PermanentError(f"espeak-ng produced no audio (voices tried: {', '.join(tried)})")


_PAUSE = {".": 3, "!": 3, "?": 3, ",": 2, ";": 2, ":": 2}


def estimate_words(text: str, start: float, end: float) -> list[dict[str, Any]]:
    """Word timings spread over [start, end] in proportion to word length, with pauses after punctuation.

    Good enough for espeak-ng, whose speech rate is nearly uniform; edge-tts reports real boundaries.
    """
    tokens = text.split()
    if not tokens or end <= start:
        return []
    weights = [max(1, len(re.sub(r"\W", "", t))) + 1 for t in tokens]
    gaps = [_PAUSE.get(t[-1], 0) if i < len(tokens) - 1 else 0 for i, t in enumerate(tokens)]
    unit = (end - start) / (sum(weights) + sum(gaps))
    out, t = [], start
    for token, w, g in zip(tokens, weights, gaps, strict=True):
        out.append({"start": round(t, 3), "end": round(t + w * unit, 3), "text": token})
        t += (w + g) * unit
    return out

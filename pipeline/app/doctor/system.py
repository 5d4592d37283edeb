"""Checks of this machine: the settings file, Python, the external tools (ffmpeg, ffprobe, espeak-ng),
free disk under the output folder, and the home's permissions."""

from __future__ import annotations

import os
import platform
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.app.doctor.check import WARN, Check, first_line

MIN_PYTHON = (3, 11)
DISK_WARN_MB = 10 * 1024


def load_settings_row(home: Path) -> tuple[Any, Check]:
    from pipeline.config.settings import SETTINGS_NAME, Settings, load_settings

    path = home / SETTINGS_NAME
    try:
        settings = load_settings(home)
    except ValueError as exc:
        return Settings(), Check("settings", False, str(exc), f"fix or remove {path} (the defaults are used now)")
    return settings, Check("settings", True, f"{path}" if path.exists() else "defaults (no settings.toml yet)")



def check_python() -> Check:
    venv = sys.prefix != sys.base_prefix
    detail = f"{platform.python_version()} ({sys.executable}{', in a venv' if venv else ''})"
    if sys.version_info[:2] < MIN_PYTHON:  # pyproject's requires-python
        return Check("python", False, detail, "use Python 3.11 or newer (`make` builds .venv with python3)")
    return Check("python", True, detail)



_TOOL_FIX = {
    "ffmpeg": ("FAIL", "apt-get install ffmpeg (or .venv/bin/pip install imageio-ffmpeg)"),
    "ffprobe": ("WARN", "apt-get install ffmpeg (Debian's ffmpeg ships ffprobe; imageio-ffmpeg does not): the "
                        "generate recipe measures narration and checks renders with it"),
    "espeak-ng": ("WARN", "apt-get install espeak-ng: the generate recipe's offline voice when edge-tts is "
                          "unreachable"),
}



def check_tool(name: str, timeout: float) -> Check:
    from pipeline.common.ffmpeg import ffprobe_exe, find_ffmpeg

    path = find_ffmpeg() if name == "ffmpeg" else ffprobe_exe() if name == "ffprobe" else shutil.which(name)
    severity, fix = _TOOL_FIX[name]
    if path is None:
        return Check(name, False if severity == "FAIL" else WARN, "not found", fix)
    line = first_line([path, "--version" if name == "espeak-ng" else "-version"], timeout)
    line = re.split(r"\s+(?:Copyright|Data at:)", line, maxsplit=1)[0]
    note = " (imageio-ffmpeg's build; no ffprobe with it)" if "imageio" in path else ""
    return Check(name, True, f"{line[:90] or 'found'} ({path}){note}")



def check_disk(home: Path, settings: Any) -> Check:
    root = settings.output_root(home)
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free_mb = shutil.disk_usage(probe).free / 2**20
    floor = float(settings.governor.min_free_disk_mb)
    detail = f"{free_mb / 1024:.1f} GiB free under {root}"
    if free_mb < floor:
        return Check("disk", False, f"{detail}: under the {floor:.0f} MB floor, heavy stages and downloads hold",
                     "free space, or choose another output folder on the Settings page")
    if free_mb < DISK_WARN_MB:
        return Check("disk", WARN, f"{detail}: a long batch of audio may not fit", "free space or move the output")
    return Check("disk", True, detail)



def check_home(home: Path) -> Check:
    if not home.exists():
        parent = next((p for p in home.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Check("home", True, f"{home} (created on first use, mode 0700)")
        return Check("home", False, f"{home} does not exist and {parent} is not writable",
                     "set TUBEMILL_HOME to a folder you own, or pass --home")
    try:
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("home", False, f"{home} is not writable ({exc.strerror or exc})",
                     f"fix its permissions (chown/chmod u+rwx {home}) or use another --home")
    mode = stat.S_IMODE(home.stat().st_mode)
    detail = f"{home} (writable, mode {mode:o})"
    if mode & 0o077:
        return Check("home", WARN, f"{detail}: other users can read batches, settings and account names",
                     f"chmod 700 {home}")
    return Check("home", True, detail)

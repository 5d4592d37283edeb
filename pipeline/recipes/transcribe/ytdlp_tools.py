"""The programs yt-dlp runs beside itself, found so that no activated venv is needed: ffmpeg, and the
JavaScript runtime (Deno) and challenge-solver scripts (``yt-dlp-ejs``) real YouTube needs.

Since 2025.11 yt-dlp solves YouTube's JS challenges with the EJS scripts in an external runtime; without
one YouTube gives "Requested format is not available" or storyboards only. We ship Deno as a Python package
and pass its path explicitly (``js_runtimes``), so it is found in the app, the CLI and Dask worker
processes alike.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from pipeline.common.ffmpeg import find_ffmpeg


def ffmpeg_binary() -> str | None:
    """Full path of the ffmpeg yt-dlp gets (a directory fails without ffprobe, see NOTES): the project's one
    locator, so downloads and the generate stages use the same binary."""
    return find_ffmpeg()


_JS_RUNTIME: str | None = None


def js_runtime() -> str | None:
    """Absolute path of the Deno binary yt-dlp should run YouTube's JS challenges in, or None.

    Looked up in the order that works without an activated venv: the ``deno`` Python
    package's own finder, the folder of ``sys.executable`` (a venv's ``bin``, also in
    Dask worker processes started from it), Python's scripts folder, then ``PATH``.
    A hit is remembered for the process; a miss is looked up again next time (cheap),
    so installing Deno while the app runs takes effect.
    """
    global _JS_RUNTIME
    if _JS_RUNTIME and os.access(_JS_RUNTIME, os.X_OK):
        return _JS_RUNTIME
    exe = "deno" + (sysconfig.get_config_var("EXE") or "")
    candidates: list[str] = []
    try:
        from deno import find_deno_bin

        candidates.append(os.fsdecode(find_deno_bin()))
    except (ImportError, OSError):
        pass
    candidates.append(str(Path(sys.executable).parent / exe))
    candidates.append(os.path.join(sysconfig.get_path("scripts"), exe))
    candidates.append(shutil.which("deno") or "")
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            _JS_RUNTIME = os.path.abspath(c)
            return _JS_RUNTIME
    return None


def js_runtimes_option() -> dict[str, dict[str, str]] | None:
    """yt-dlp's ``js_runtimes`` naming our Deno by path; None leaves yt-dlp to its own search."""
    path = js_runtime()
    return {"deno": {"path": path}} if path else None


def ejs_version() -> str | None:
    """Version of the installed yt-dlp-ejs (the challenge-solver scripts), or None when missing."""
    try:
        import yt_dlp_ejs

        return str(yt_dlp_ejs.version)
    except (ImportError, AttributeError):
        return None


def common_options() -> dict[str, Any]:
    """What every yt-dlp call needs to handle real YouTube: our JS runtime, by path."""
    js = js_runtimes_option()
    return {"js_runtimes": js} if js else {}

#!/usr/bin/env bash
# Versions of what the tests depend on but do not pin: Debian's espeak-ng and ffmpeg, and (once the
# venv exists) yt-dlp, faster-whisper, ctranslate2, the JS runtime. Never fails the run.
echo "== tool versions"
echo "espeak-ng: $(espeak-ng --version 2>/dev/null | head -1 || echo missing)"
echo "ffmpeg:    $(ffmpeg -hide_banner -version 2>/dev/null | head -1 || echo missing)"
echo "chromium:  $(chromium --version 2>/dev/null | head -1 || echo missing)"
py=.venv/bin/python
[ -x "$py" ] || py=python3
echo "python:    $($py --version 2>&1)"
$py - <<'PY' 2>/dev/null || echo "python packages: not installed yet (make test installs them)"
from importlib import metadata
for name in ("yt-dlp", "yt-dlp-ejs", "deno", "faster-whisper", "ctranslate2", "openai", "streamlit", "tinydb"):
    try:
        print(f"{name + ':':<15}{metadata.version(name)}")
    except metadata.PackageNotFoundError:
        print(f"{name + ':':<15}not installed")
PY
echo "=="

"""``tubemill run --dry-run --json``: the estimate as one JSON object, from real yt-dlp listing on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, cli_env
from tests.media_server import MediaServer


def test_dry_run_json_has_the_estimate(tmp_path: Path, media_server: MediaServer) -> None:
    """A feed of three episodes with known lengths: estimate_s, items and each stage's share; nothing starts."""
    home = tmp_path / "home"
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run",
                          media_server.url("/feed.xml"), "--dry-run", "--json"],
                         cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "estimate:" in res.stdout
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["items"] == 3 and doc["recipe"] == "transcribe" and doc["media_s"] > 0
    assert doc["estimate_s"] > 0 and doc["bottleneck"]
    assert set(doc["stages"]) == {"captions", "download", "transcribe", "summarize", "translate", "export"}
    assert all(not st["measured"] for st in doc["stages"].values())  # a fresh home: no batch measured it yet
    assert doc["calibrated"] == ["transcribe"]  # … but Whisper was timed on this machine, once
    assert (home / "calibration.json").exists()
    transcribe = doc["stages"]["transcribe"]
    assert transcribe["pool"] == "cpu" and 0 < transcribe["seconds_each"] < 10  # ≈ 8 s episodes × rtf
    again = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run",
                            media_server.url("/feed.xml"), "--dry-run", "--json"],
                           cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout.strip().splitlines()[-1])["estimate_s"] == doc["estimate_s"]  # cached
    assert not (home / "batches").exists() or not list((home / "batches").iterdir())

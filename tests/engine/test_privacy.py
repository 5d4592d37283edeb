"""What Tubemill leaves on the machine: a home only its user can read, and no third-party telemetry files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, cli_env


def test_home_is_created_0700_and_an_open_one_is_tightened(tmp_path: Path) -> None:
    """A fresh home is 0700 whichever command makes it first; an existing 0755 home of ours becomes 0700."""
    from pipeline.config.secrets import secrets_dir
    from pipeline.config.settings import Settings, save_settings
    from pipeline.engine.core import Engine

    for make in (lambda h: Engine(h).shutdown(), secrets_dir, lambda h: save_settings(h, Settings())):
        home = tmp_path / f"h{id(make)}" / "home"
        make(home)
        assert stat.S_IMODE(home.stat().st_mode) == 0o700, make
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    Engine(old).shutdown()
    assert stat.S_IMODE(old.stat().st_mode) == 0o700


def test_transcription_leaves_no_onnxruntime_telemetry(tmp_path: Path, media_files: dict[str, Path]) -> None:
    """faster-whisper's VAD runs on ONNX Runtime, which writes a device id and an event queue under
    ~/.cache/Microsoft/DeveloperTools unless told not to; a CLI run with VAD leaves nothing there."""
    fake_home = tmp_path / "user"
    fake_home.mkdir()
    home = tmp_path / "tm"
    env = {**cli_env(home), "HOME": str(fake_home)}
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.pop("ORT_TELEMETRY_DISABLED", None)
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(media_files["wav"]),
                          "--summarizer", "offline"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr
    assert not (fake_home / ".cache" / "Microsoft").exists(), sorted(p.name for p in fake_home.rglob("*"))

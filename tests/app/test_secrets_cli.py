"""``tubemill secrets``: keys read from stdin (never argv), stored 0600, listed masked, removed."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, cli_env

KEY = "pexels-0123456789-wxyz"


def tubemill(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in cli_env(home).items() if k not in ("PEXELS_API_KEY", "PIXABAY_API_KEY")}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=60)


def test_set_list_remove_a_media_key(home: Path) -> None:
    done = tubemill(home, "secrets", "set", "pexels_api_key", "--stdin", stdin=KEY + "\n")
    assert done.returncode == 0, done.stderr
    path = home / "secrets" / "pexels_api_key"
    assert path.read_text() == KEY and stat.S_IMODE(path.stat().st_mode) == 0o600
    listed = tubemill(home, "secrets", "list")
    assert listed.returncode == 0 and KEY not in listed.stdout + listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("pexels_api_key"))
    assert "…wxyz" in line and "file" in line
    assert tubemill(home, "secrets", "remove", "pexels_api_key").stdout.strip() == "removed"
    assert not path.exists()
    refused = tubemill(home, "secrets", "set", "not_a_key", "--stdin", stdin="x\n")
    assert refused.returncode != 0 and "invalid choice" in refused.stderr

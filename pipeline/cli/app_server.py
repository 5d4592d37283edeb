"""``tubemill app``: start the Streamlit app on this home (exec'd, so signals reach the server)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pipeline.cli.base import EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``app`` command and its flags."""
    a = sub.add_parser("app", help="start the Streamlit app")
    a.add_argument("--address", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8501)


def cmd_app(args: argparse.Namespace, home: Path) -> int:
    """Replace this process with ``streamlit run app.py`` on this home, bound to ``--address``."""
    app = Path(__file__).resolve().parents[2] / "app.py"
    env = {**os.environ, "TUBEMILL_HOME": str(home)}
    cmd = [sys.executable, str(app), "--server.address", args.address, "--server.port", str(args.port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # exec, not a child: signals reach the server and no orphan keeps the port or the home.
    os.execve(sys.executable, cmd, env)
    return EXIT_OK  # not reached

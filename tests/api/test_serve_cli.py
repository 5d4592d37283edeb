"""``tubemill serve`` as a user starts it: the token printed on the first start only, then served and stopped."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, cli_env, sigint_default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(home: Path, *extra: str) -> tuple[subprocess.Popen, int, list[str]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port), *extra],
                            cwd=ROOT, env=cli_env(home), stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "REST API on" in line:
            break
    for _ in range(100):  # the line comes just before uvicorn binds
        try:
            httpx.get(f"http://127.0.0.1:{port}/batches", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, port, lines


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_prints_the_token_once_serves_and_owns_the_home(home: Path) -> None:
    proc, port, lines = _start(home)
    try:
        shown = [m.group(1) for line in lines if (m := re.search(r"API token .*: (\S+)$", line))]
        assert len(shown) == 1, lines
        token = shown[0]
        assert token == (home / "secrets" / "api_token").read_text().strip()
        assert oct(os.stat(home / "secrets" / "api_token").st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/batches").status_code == 401
        r = httpx.post(url + "/batches", headers={"Authorization": f"Bearer {token}"},
                       json={"sources": "c1\n", "recipe": "probe", "name": "cli"})
        assert r.status_code == 201, r.text
    finally:
        assert _stop(proc) == 0
    proc, port, lines = _start(home)
    try:
        assert not any("API token" in line for line in lines), lines  # shown once, on the first start only
        assert httpx.get(f"http://127.0.0.1:{port}/batches", headers={"Authorization": f"Bearer {token}"}
                         ).json()[0]["name"] == "cli"
    finally:
        assert _stop(proc) == 0
    proc, port, lines = _start(home, "--rotate-token")
    try:
        shown = [m.group(1) for line in lines if (m := re.search(r"API token .*: (\S+)$", line))]
        assert len(shown) == 1 and shown[0] != token, lines
        url = f"http://127.0.0.1:{port}/batches"
        assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 401
        assert httpx.get(url, headers={"Authorization": f"Bearer {shown[0]}"}).status_code == 200
    finally:
        assert _stop(proc) == 0

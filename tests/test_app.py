"""The app starts: AppTest renders the Batches page, and `streamlit run` serves on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from pipeline.runner import Engine
from tests.conftest import ROOT, cli_env, fast_settings


@pytest.fixture
def app_home(home: Path) -> Path:
    st.cache_resource.clear()
    yield home
    from pages._engine import get_engine

    get_engine().shutdown(interrupt=True, timeout=5)
    st.cache_resource.clear()


def test_batches_page_renders_empty(app_home: Path) -> None:
    """With no batches the page says how to start one, without exceptions."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception
    assert at.title[0].value == "Batches"
    assert any("No batches yet" in m.value for m in at.markdown)


def test_batches_page_shows_progress_and_pauses(app_home: Path) -> None:
    """A finished batch shows its counts; the Pause button of an active batch pauses it."""
    seed = Engine(app_home, settings=fast_settings())
    seed.start()
    seed.submit("done-batch", ["a", "b"], recipe="probe")
    seed.wait("done-batch", timeout=10)
    seed.submit("slow-batch", ["s sleep=5"], recipe="probe")
    seed.shutdown(interrupt=True)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception
    texts = " ".join(m.value for m in at.markdown)
    assert "done-batch" in texts and "slow-batch" in texts
    pause = [b for b in at.button if b.label == "Pause" and not b.disabled]
    assert len(pause) == 1
    pause[0].click().run()
    from pages._engine import get_engine

    assert get_engine().summary("slow-batch").state == "paused"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streamlit_serves_on_loopback(home: Path) -> None:
    """`tubemill app` starts the server bound to 127.0.0.1 and it answers its health check."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), "app", "--port", str(port)],
                            cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
        listening = [c.laddr.ip for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening == ["127.0.0.1"], listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)

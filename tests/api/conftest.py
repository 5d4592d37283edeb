"""A real uvicorn on loopback serving the API on a test home, and an httpx client holding the token."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from pipeline.api.guard import Throttle, TokenSource, allowed_hosts, ensure_token
from pipeline.api.server import create_app
from pipeline.engine.core import Engine
from tests.conftest import fast_settings


@dataclass
class Api:
    base: str
    port: int
    token: str
    engine: Engine
    home: Path

    def client(self, token: str | None = "") -> httpx.Client:
        """A client with the right token (default), another one, or none (``None``)."""
        headers = {} if token is None else {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=20)


def start_uvicorn(app: object) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise AssertionError("uvicorn did not start")
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


@pytest.fixture
def serve_api(home: Path) -> Iterator[Callable[..., Api]]:
    """``serve_api()`` starts the server (its engine owns the home unless another engine already does)."""
    running: list[tuple[uvicorn.Server, threading.Thread, Engine]] = []

    def start(throttle: Throttle | None = None) -> Api:
        engine = Engine(home, settings=fast_settings(), role="tubemill serve (test)")
        engine.start()
        token, _ = ensure_token(home)
        app = create_app(engine, token=TokenSource(home), hosts=allowed_hosts("127.0.0.1"),
                         throttle=throttle or Throttle(base_s=0.05, max_s=0.2))
        server, thread, port = start_uvicorn(app)
        running.append((server, thread, engine))
        return Api(f"http://127.0.0.1:{port}", port, token, engine, home)

    yield start
    for server, thread, engine in running:
        server.should_exit = True
        thread.join(10)
        engine.shutdown(interrupt=True, timeout=5)

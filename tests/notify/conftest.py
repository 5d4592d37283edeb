"""A webhook receiver on 127.0.0.1: answers each POST from a script (a status code, or "hang"), records
the raw body and headers. The network boundary of the notifications, real HTTP on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Receiver:
    def __init__(self) -> None:
        self.script: list[int | str] = []  # consumed one per request; empty: 200
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with rec.lock:
                    rec.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    step = rec.script.pop(0) if rec.script else 200
                if step == "hang":
                    rec.release.wait(30)
                    return
                self.send_response(int(step))
                if int(step) == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/PATHTOKEN123"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()

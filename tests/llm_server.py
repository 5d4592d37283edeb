"""A local OpenAI-compatible HTTP server for tests: the real SDK, real HTTP, loopback only.

Requests go through a route table keyed by (method, path), so later endpoints
(``/v1/files``, ``/v1/batches``) are one :meth:`FakeLLMServer.route` call away. The
chat route answers with whatever ``responder(request_json)`` returns:

- a ``str``: the assistant message content of a 200 ``chat.completion``;
- a ``(status, body, headers)`` tuple: sent as is (``body`` a dict is sent as JSON),
  for 429/401/500/400 answers.

Every request is recorded (method, path, headers, parsed JSON body) for assertions.
Usage is deterministic: ~4 characters per token of prompt and of reply.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Reply = str | tuple[int, Any, dict[str, str]]
Responder = Callable[[dict[str, Any]], Reply]
Handler = Callable[["FakeLLMServer", "Recorded"], tuple[int, Any, dict[str, str]]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw bytes when it was not JSON
    time: float = field(default_factory=time.time)


def valid_summary(**overrides: Any) -> dict[str, Any]:
    """A summary the schema accepts, for responders to serialize."""
    data = {
        "tldr": "A talk about baking sourdough bread at home.",
        "key_points": ["Feed the starter daily.", "Use 75% hydration.", "Bake in a hot Dutch oven."],
        "chapters": [{"start": 0, "title": "Starter"}, {"start": 60, "title": "Baking"}],
        "tags": ["sourdough", "baking", "bread"],
    }
    data.update(overrides)
    return data


def error(status: int, message: str, headers: dict[str, str] | None = None,
          type_: str = "invalid_request_error") -> tuple[int, Any, dict[str, str]]:
    """An OpenAI-style error answer."""
    return status, {"error": {"message": message, "type": type_, "param": None, "code": None}}, headers or {}


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class FakeLLMServer:
    """ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon thread; ``base_url`` ends in ``/v1``."""

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda req: json.dumps(valid_summary()))
        self.requests: list[Recorded] = []
        self.responses: list[tuple[int, Any]] = []  # (status, body) as sent, in request order
        self.routes: dict[tuple[str, str], Handler] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self.route("POST", "/v1/chat/completions", FakeLLMServer._chat)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-llm", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Add or replace an endpoint: ``handler(server, request) -> (status, body, headers)``."""
        self.routes[(method.upper(), path)] = handler

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests, in order."""
        return [r.body for r in self.requests if r.path == "/v1/chat/completions"]

    def usage_sent(self) -> dict[str, int]:
        """Total prompt and completion tokens this server reported, to check a client's sums."""
        bodies = [b for _, b in self.responses if isinstance(b, dict) and "usage" in b]
        return {"input_tokens": sum(b["usage"]["prompt_tokens"] for b in bodies),
                "output_tokens": sum(b["usage"]["completion_tokens"] for b in bodies)}

    def next_id(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter:06d}"

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routes --------------------------------------------------------------------------------------------------

    def _chat(self, req: Recorded) -> tuple[int, Any, dict[str, str]]:
        reply = self.responder(req.body)
        if not isinstance(reply, str):
            return reply
        prompt = "".join(str(m.get("content") or "") for m in req.body.get("messages", []))
        p, c = _tokens(prompt), _tokens(reply)
        return 200, {
            "id": self.next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.body.get("model", "unknown"),
            "system_fingerprint": "fp_local",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }, {}

    # -- HTTP plumbing -------------------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        req = Recorded(method, path.split("?", 1)[0], headers, body)
        with self._lock:
            self.requests.append(req)
        handler = self.routes.get((method, req.path))
        if handler is None:
            status, out, extra = error(404, f"no route {method} {req.path}")
        else:
            try:
                status, out, extra = handler(self, req)
            except Exception as e:  # a broken test responder should show up as a 500, not a hung client
                status, out, extra = error(500, f"responder failed: {type(e).__name__}: {e}", type_="server_error")
        with self._lock:
            self.responses.append((status, out))
        data = out if isinstance(out, bytes) else (out if isinstance(out, str) else json.dumps(out)).encode()
        return status, data, extra

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, data, extra = server._dispatch(self.command, self.path, headers, raw)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
                pass

        return _Handler


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A started fake server per test; set ``.responder`` to script its answers."""
    with FakeLLMServer() as srv:
        yield srv

"""A local OpenAI-compatible HTTP server for tests: the real SDK, real HTTP, loopback only.

Requests go through a route table keyed by (method, path); a path may hold ``{name}`` placeholders
(``/v1/batches/{batch_id}``), whose values land in ``request.params``. The chat route answers with
whatever ``responder(request_json)`` returns:

- a ``str``: the assistant message content of a 200 ``chat.completion``;
- a ``(status, body, headers)`` tuple: sent as is (``body`` a dict is sent as JSON),
  for 429/401/500/400 answers.

Every request is recorded (method, path, headers, parsed JSON body, query) for assertions, and
``hits`` counts requests per route (``"GET /v1/batches/{batch_id}"``).
Usage is deterministic: ~4 characters per token of prompt and of reply.

The Files API (``/v1/files``) and the Batch API (``/v1/batches``) are served too, with a lifecycle
computed lazily from ``clock`` on every read (no background threads):

    validating --schedule.validating--> in_progress --schedule.in_progress--> finalizing
               --schedule.finalizing--> completed

``request_counts.completed`` grows in proportion to the time spent in ``in_progress``. Each batch
line is answered by the same ``responder`` as the realtime route: a ``str`` becomes a 200 line of
the output file (with ``usage``), an error tuple a line of the error file. Output lines come in a
seeded shuffled order, like the real service. Failure modes, per server or per next batch
(:meth:`FakeLLMServer.queue_batch`): ``fail_after_creation`` (validating -> failed, enqueued token
limit), ``expire`` (in_progress -> expired at ``schedule.expiry()`` with a partial output file),
cancel (cancelling -> cancelled after ``schedule.cancelling``, partial output) and ``no_batch_api``
(404 on both APIs, like most local servers). Tests drive time with :class:`FakeClock`::

    clock = FakeClock(); llm_server.clock = clock
    ...; clock.advance(llm_server.schedule.validating)   # now in_progress
"""

from __future__ import annotations

import email.message
import email.parser
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

Reply = str | tuple[int, Any, dict[str, str]]  # a ``Cut`` str is sent with finish_reason "length"
Responder = Callable[[dict[str, Any]], Reply]
Response = tuple[int, Any, dict[str, str]]
Handler = Callable[["FakeLLMServer", "Recorded"], Response]

BATCH_PREFIXES = ("/v1/files", "/v1/batches")
FILE_PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
TERMINAL = {"completed", "failed", "expired", "cancelled"}
_EPS = 1e-6  # a phase boundary counts as reached despite float rounding (1000 + 0.2 + 0.5 vs 1000 + 0.7)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw bytes when it was not JSON
    time: float = field(default_factory=time.time)
    query: dict[str, str] = field(default_factory=dict)  # the last value of each query parameter
    params: dict[str, str] = field(default_factory=dict)  # values of the route's {placeholders}


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
          type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> Response:
    """An OpenAI-style error answer."""
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}, headers or {}


class Cut(str):
    """A reply the server cut at ``max_tokens``: sent with ``finish_reason: "length"``."""


# -- how real OpenAI-compatible servers and models answer (measured, see shared NOTES) ------------------------------

LLAMA_CPP_SCHEMA_ERROR = (
    "[{'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), 'msg': \"Input should be 'text' or "
    "'json_object'\", 'input': 'json_schema', 'ctx': {'expected': \"'text' or 'json_object'\"}}]")
PROSE = ("Sure! This video is a fascinating exploration of the topic. The speaker explains many things in detail, "
         "and overall it is a great watch for anyone interested. I hope this summary helps you!")
FIELD_MODES = ("llama_cpp", "prose", "prose_wrapped", "truncated", "empty_fields", "soft_miss", "auth", "rate_limited",
               "context_too_long", "server_error")


def field_responder(mode: str, good: dict[str, Any] | None = None) -> Responder:
    """A responder that behaves like a server or model seen in the field.

    - ``llama_cpp``: llama.cpp's server: ``json_schema`` answered with HTTP 500 and a pydantic
      ``literal_error`` body (only ``text`` and ``json_object`` are accepted), then good JSON;
    - ``prose``: a small model that ignores "reply in JSON", whatever the format asked;
    - ``prose_wrapped``: the JSON inside chatter and a Markdown fence;
    - ``truncated``: the JSON cut at ``max_tokens`` (``finish_reason: length``), every time;
    - ``empty_fields``: grammar-constrained junk: valid JSON, empty fields;
    - ``soft_miss``: valid JSON with one key point (3–7 asked) and one tag, every time;
    - ``auth`` (401), ``rate_limited`` (429, ``Retry-After: 0``), ``context_too_long`` (400
      ``context_length_exceeded``), ``server_error`` (500 without a format word: a crash).
    """
    data = good or valid_summary(chapters=[{"start": 0, "title": "Opening"}])
    text = json.dumps(data)

    def respond(req: dict[str, Any]) -> Reply:
        fmt = (req.get("response_format") or {}).get("type")
        if mode == "llama_cpp":
            if fmt not in (None, "text", "json_object"):
                return 500, {"error": {"message": LLAMA_CPP_SCHEMA_ERROR, "type": "internal_server_error",
                                       "param": None, "code": None}}, {}
            return text
        if mode == "prose":
            return PROSE
        if mode == "prose_wrapped":
            return f"Here is the summary you asked for:\n```json\n{text}\n```\nLet me know if you need more!"
        if mode == "truncated":
            return Cut(text[: int(len(text) * 0.6)])
        if mode == "empty_fields":
            return json.dumps({"tldr": "", "key_points": [], "chapters": [], "tags": []})
        if mode == "soft_miss":
            return json.dumps({**data, "key_points": ["Only one point."], "tags": ["one"]})
        if mode == "auth":
            return error(401, "Incorrect API key provided: sk-te***.", type_="invalid_request_error",
                         code="invalid_api_key")
        if mode == "rate_limited":
            return error(429, "Rate limit reached for requests", {"retry-after": "0"}, type_="requests",
                         code="rate_limit_exceeded")
        if mode == "context_too_long":
            return error(400, "This model's maximum context length is 4096 tokens. However, your messages resulted "
                              "in 9000 tokens.", param="messages", code="context_length_exceeded")
        if mode == "server_error":
            return error(500, "The server had an error while processing your request.", type_="server_error")
        raise ValueError(f"unknown field mode {mode!r}")

    return respond


def _tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def batch_line(custom_id: str, body: dict[str, Any], url: str = "/v1/chat/completions",
               method: str = "POST") -> dict[str, Any]:
    """One request of a batch input file."""
    return {"custom_id": custom_id, "method": method, "url": url, "body": body}


def to_jsonl(items: list[Any]) -> bytes:
    """Items as JSON Lines (each dumped with ``json.dumps``; a ``str`` item is written as is)."""
    return "".join((i if isinstance(i, str) else json.dumps(i)) + "\n" for i in items).encode()


def from_jsonl(data: bytes | str) -> list[Any]:
    """The parsed lines of a JSONL file, skipping blank lines."""
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class FakeClock:
    """A manual clock for ``server.clock``: calling it gives the time; :meth:`advance` moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True)
class BatchSchedule:
    """Seconds each phase lasts; a batch copies the server's schedule when it is created."""

    validating: float = 0.2  # created -> in_progress (or -> failed)
    in_progress: float = 0.5  # in_progress -> finalizing; requests complete evenly over this span
    finalizing: float = 0.2  # finalizing -> completed
    cancelling: float = 0.2  # cancel request -> cancelled
    expire_after: float | None = None  # seconds after creation an ``expire`` batch expires; None: mid in_progress

    def expiry(self) -> float:
        return self.expire_after if self.expire_after is not None else self.validating + self.in_progress / 2


@dataclass(frozen=True)
class BatchKnobs:
    """Failure modes of one batch (see :meth:`FakeLLMServer.queue_batch`)."""

    fail_after_creation: bool = False
    expire: bool = False
    schedule: BatchSchedule | None = None  # None: the server's schedule


class Upload(NamedTuple):
    file_id: str
    filename: str
    purpose: str
    bytes: int  # size
    n_lines: int  # non-blank lines


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None, "expires_at": None}


@dataclass
class _Result:
    custom_id: str
    status: int
    body: Any
    id: str = field(default_factory=lambda: "batch_req_" + uuid.uuid4().hex[:24])
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class BatchRecord:
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    created_at: int  # unix seconds
    t0: float  # ``clock()`` at creation
    schedule: BatchSchedule
    knobs: BatchKnobs
    requests: list[dict[str, Any]]  # the valid input lines, in file order
    errors: list[dict[str, Any]]  # validation errors; any makes the batch fail
    model: str | None
    order: list[int]  # processing (and output) order: a seeded shuffle of range(len(requests))
    cancel_at: float | None = None
    results: list[_Result] = field(default_factory=list)  # in processing order, grown lazily
    output_file_id: str | None = None
    error_file_id: str | None = None
    finished: bool = False  # output files written

    def unix(self, t: float) -> int:
        return self.created_at + int(round(t - self.t0))


def _validate_input(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """The valid request lines, the errors (``{code, line, message, param}``) and the batch's model."""
    requests: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None

    def err(code: str, line: int, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "line": line, "message": message, "param": param})

    for no, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            err("invalid_json_line", no, "This line is not parseable as valid JSON.")
            continue
        cid = item.get("custom_id")
        if not isinstance(cid, str) or not cid:
            err("missing_required_parameter", no, "Missing required parameter: 'custom_id'.", "custom_id")
            continue
        if cid in seen:
            err("duplicate_custom_id", no, "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.", "custom_id")
            continue
        seen.add(cid)
        before = len(errors)
        if item.get("method") != "POST":
            err("invalid_method", no, f"The method for this request must be POST, not {item.get('method')!r}.",
                "method")
        if item.get("url") != endpoint:
            err("invalid_url", no, f"The URL provided for this request ({item.get('url')!r}) does not match the "
                f"batch endpoint ({endpoint!r}).", "url")
        body = item.get("body")
        if not isinstance(body, dict):
            err("invalid_request", no, "The request body must be a JSON object.", "body")
        elif not body.get("model"):
            err("missing_required_parameter", no, "Missing required parameter: 'body.model'.", "body.model")
        elif model is not None and body["model"] != model:
            err("mismatched_model", no, f"The provided model {body['model']!r} does not match the model of the "
                f"other requests in this batch ({model!r}); a batch uses one model.", "body.model")
        elif model is None:
            model = body["model"]
        if len(errors) == before:
            requests.append(item)
    if not requests and not errors:
        err("empty_file", 1, "The batch input file is empty.")
    return requests, errors, model


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``{field name: (filename or None, content)}`` of a multipart/form-data body."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if not content_type.lower().startswith("multipart/form-data") or not isinstance(boundary, str):
        raise ValueError("expected a multipart/form-data body with a boundary")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a multipart part has no header/body separator")
        headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if isinstance(name, str):
            fields[name] = (headers.get_filename(), content.removesuffix(b"\r\n"))
    return fields


class FakeLLMServer:
    """ThreadingHTTPServer on 127.0.0.1, port 0, in a daemon thread; ``base_url`` ends in ``/v1``.

    Batch knobs (plain attributes, read when a batch is created unless said otherwise): ``clock``
    (a callable giving seconds, read on every request), ``schedule`` (:class:`BatchSchedule`),
    ``fail_after_creation``, ``expire``, ``no_batch_api`` (read per request), ``seed`` (output shuffle).
    Counters: ``uploads`` (:class:`Upload` per file uploaded), ``batches_created``, ``hits``.
    """

    def __init__(self, responder: Responder | None = None, *, clock: Callable[[], float] | None = None,
                 schedule: BatchSchedule | None = None) -> None:
        self.responder: Responder = responder or (lambda req: json.dumps(valid_summary()))
        self.requests: list[Recorded] = []
        self.responses: list[tuple[int, Any]] = []  # (status, body) as sent, in request order
        self.routes: dict[tuple[str, str], Handler] = {}
        self.hits: Counter[str] = Counter()  # "METHOD /route/{pattern}" -> requests
        self._lock = threading.Lock()
        self._counter = 0
        # Files and batches
        self.clock: Callable[[], float] = clock or time.monotonic
        self.schedule = schedule or BatchSchedule()
        self.fail_after_creation = False
        self.expire = False
        self.no_batch_api = False
        self.seed = 0
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, BatchRecord] = {}  # in creation order
        self.uploads: list[Upload] = []
        self.batches_created = 0
        self.batch_bodies: list[dict[str, Any]] = []  # request bodies the responder answered for batches
        self.batch_responses: list[tuple[int, Any]] = []  # (status, body) of those answers
        self._next_knobs: list[BatchKnobs] = []
        self._state = threading.RLock()
        self.models = ["gpt-4o-mini", "local-model"]  # GET /v1/models lists these (any name is still accepted)
        self.route("POST", "/v1/chat/completions", FakeLLMServer._chat)
        self.route("GET", "/v1/models", FakeLLMServer._models)
        self.route("POST", "/v1/files", FakeLLMServer._file_create)
        self.route("GET", "/v1/files", FakeLLMServer._file_list)
        self.route("GET", "/v1/files/{file_id}", FakeLLMServer._file_get)
        self.route("GET", "/v1/files/{file_id}/content", FakeLLMServer._file_content)
        self.route("DELETE", "/v1/files/{file_id}", FakeLLMServer._file_delete)
        self.route("POST", "/v1/batches", FakeLLMServer._batch_create)
        self.route("GET", "/v1/batches", FakeLLMServer._batch_list)
        self.route("GET", "/v1/batches/{batch_id}", FakeLLMServer._batch_get)
        self.route("POST", "/v1/batches/{batch_id}/cancel", FakeLLMServer._batch_cancel)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-llm", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Add or replace an endpoint: ``handler(server, request) -> (status, body, headers)``.

        ``{name}`` segments in ``path`` match one path segment, given to the handler in ``request.params``.
        """
        self.routes[(method.upper(), path)] = handler

    def chat_requests(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat completion requests, in order."""
        return [r.body for r in self.requests if r.path == "/v1/chat/completions"]

    def usage_sent(self) -> dict[str, int]:
        """Total prompt and completion tokens this server reported, to check a client's sums."""
        bodies = [b for _, b in self.responses if isinstance(b, dict) and "usage" in b]
        return {"input_tokens": sum(b["usage"]["prompt_tokens"] for b in bodies),
                "output_tokens": sum(b["usage"]["completion_tokens"] for b in bodies)}

    def batch_usage_sent(self) -> dict[str, int]:
        """Total tokens reported in batch output lines (the realtime :meth:`usage_sent` leaves them out)."""
        bodies = [b for _, b in self.batch_responses if isinstance(b, dict) and "usage" in b]
        return {"input_tokens": sum(b["usage"]["prompt_tokens"] for b in bodies),
                "output_tokens": sum(b["usage"]["completion_tokens"] for b in bodies)}

    def next_id(self, prefix: str, sep: str = "-") -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}{sep}{self._counter:06d}"

    def queue_batch(self, *, fail_after_creation: bool = False, expire: bool = False,
                    schedule: BatchSchedule | None = None) -> None:
        """Knobs for the next created batch only (queued calls apply to the following batches in turn)."""
        with self._state:
            self._next_knobs.append(BatchKnobs(fail_after_creation, expire, schedule))

    def batch_status(self, batch_id: str) -> str:
        """A batch's status now, without an HTTP request."""
        with self._state:
            return self._batch_json(self.batches[batch_id])["status"]

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

    # -- chat ----------------------------------------------------------------------------------------------------

    def _models(self, req: Recorded) -> Response:
        return 200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "local"}
                                                for m in self.models]}, {}

    def _chat(self, req: Recorded) -> Response:
        return self._complete(req.body)

    def _complete(self, body: dict[str, Any]) -> Response:
        reply = self.responder(body)
        finish = "stop"
        if isinstance(reply, Cut):
            finish = "length"
        elif not isinstance(reply, str):
            return reply
        prompt = "".join(str(m.get("content") or "") for m in body.get("messages", []))
        p, c = _tokens(prompt), _tokens(reply)
        return 200, {
            "id": self.next_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "unknown"),
            "system_fingerprint": "fp_local",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }, {}

    # -- files ---------------------------------------------------------------------------------------------------

    def _store_file(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        f = StoredFile(self.next_id("file"), filename, purpose, data, int(time.time()))
        self.files[f.id] = f
        return f

    def _file_create(self, req: Recorded) -> Response:
        raw = req.body if isinstance(req.body, bytes) else json.dumps(req.body).encode()
        try:
            form = _parse_multipart(req.headers.get("content-type", ""), raw)
        except ValueError as e:
            return error(400, f"Invalid multipart/form-data body: {e}")
        purpose = form.get("purpose", (None, b""))[1].decode()
        if "file" not in form or form["file"][0] is None:
            return error(400, "Missing required parameter: 'file'.", param="file")
        if purpose not in FILE_PURPOSES:
            return error(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        filename, data = form["file"]
        with self._state:
            f = self._store_file(filename or "upload", purpose, data)
            self.uploads.append(Upload(f.id, f.filename, purpose, len(data),
                                       sum(1 for line in data.split(b"\n") if line.strip())))
        return 200, f.to_json(), {}

    def _file_or_404(self, req: Recorded) -> StoredFile | Response:
        f = self.files.get(req.params["file_id"])
        if f is None:
            return error(404, f"No such File object: {req.params['file_id']}", param="id")
        return f

    def _file_get(self, req: Recorded) -> Response:
        f = self._file_or_404(req)
        return (200, f.to_json(), {}) if isinstance(f, StoredFile) else f

    def _file_content(self, req: Recorded) -> Response:
        f = self._file_or_404(req)
        return (200, f.data, {"Content-Type": "application/octet-stream"}) if isinstance(f, StoredFile) else f

    def _file_delete(self, req: Recorded) -> Response:
        with self._state:
            f = self.files.pop(req.params["file_id"], None)
        if f is None:
            return error(404, f"No such File object: {req.params['file_id']}", param="id")
        return 200, {"id": f.id, "object": "file", "deleted": True}, {}

    def _file_list(self, req: Recorded) -> Response:
        with self._state:
            files = [f.to_json() for f in reversed(self.files.values())
                     if req.query.get("purpose") in (None, f.purpose)]
        return _page(files, req.query)

    # -- batches -------------------------------------------------------------------------------------------------

    def _batch_create(self, req: Recorded) -> Response:
        body = req.body if isinstance(req.body, dict) else {}
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not body.get(name):
                return error(400, f"Missing required parameter: '{name}'.", param=name)
        if body["endpoint"] != "/v1/chat/completions":
            return error(400, f"Invalid value for 'endpoint': {body['endpoint']!r}; this server batches only "
                         "'/v1/chat/completions'.", param="endpoint")
        if body["completion_window"] != "24h":
            return error(400, f"Invalid value for 'completion_window': {body['completion_window']!r}; "
                         "supported values are: '24h'.", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16):
            return error(400, "Invalid 'metadata': at most 16 string key-value pairs.", param="metadata")
        with self._state:
            f = self.files.get(body["input_file_id"])
            if f is None:
                return error(400, f"Invalid 'input_file_id': {body['input_file_id']!r}. No such File object.",
                             param="input_file_id")
            if f.purpose != "batch":
                return error(400, f"Invalid 'input_file_id': the file has purpose {f.purpose!r}; a batch input "
                             "file must be uploaded with purpose 'batch'.", param="input_file_id")
            knobs = self._next_knobs.pop(0) if self._next_knobs else BatchKnobs(self.fail_after_creation,
                                                                                self.expire)
            requests, errors, model = _validate_input(f.data, body["endpoint"])
            batch_id = self.next_id("batch", "_")
            order = list(range(len(requests)))
            random.Random(f"{self.seed}:{batch_id}").shuffle(order)
            if len(order) > 1 and order == sorted(order):
                order = order[1:] + order[:1]  # always visibly out of order
            b = BatchRecord(batch_id, body["endpoint"], f.id, body["completion_window"], metadata,
                            int(time.time()), self.clock(), knobs.schedule or self.schedule, knobs, requests,
                            errors, model, order)
            self.batches[b.id] = b
            self.batches_created += 1
            return 200, self._batch_json(b), {}

    def _batch_or_404(self, req: Recorded) -> BatchRecord | Response:
        b = self.batches.get(req.params["batch_id"])
        if b is None:
            return error(404, f"No batch found with id '{req.params['batch_id']}'.", param="batch_id")
        return b

    def _batch_get(self, req: Recorded) -> Response:
        with self._state:
            b = self._batch_or_404(req)
            return (200, self._batch_json(b), {}) if isinstance(b, BatchRecord) else b

    def _batch_cancel(self, req: Recorded) -> Response:
        with self._state:
            b = self._batch_or_404(req)
            if not isinstance(b, BatchRecord):
                return b
            status = self._status(b, self._now())
            if status in ("completed", "failed", "expired"):
                return error(400, f"Cannot cancel a batch with status '{status}'.")
            if b.cancel_at is None:
                b.cancel_at = self.clock()
            return 200, self._batch_json(b), {}

    def _batch_list(self, req: Recorded) -> Response:
        with self._state:
            data = [self._batch_json(b) for b in reversed(self.batches.values())]
        return _page(data, req.query)

    # -- the lifecycle, computed from the clock ------------------------------------------------------------------

    def _status(self, b: BatchRecord, t: float) -> str:
        s = b.schedule
        ip = b.t0 + s.validating
        fin = ip + s.in_progress
        if b.cancel_at is not None and t >= b.cancel_at:
            return "cancelling" if t < b.cancel_at + s.cancelling else "cancelled"
        if t < ip:
            return "validating"
        if b.errors or b.knobs.fail_after_creation:
            return "failed"
        if b.knobs.expire and t >= b.t0 + s.expiry():
            return "expired"
        if t < fin:
            return "in_progress"
        return "finalizing" if t < fin + s.finalizing else "completed"

    def _cutoff(self, b: BatchRecord) -> float:
        """When processing stops early: the cancel request or the expiry, if any."""
        cut = b.cancel_at if b.cancel_at is not None else float("inf")
        return min(cut, b.t0 + b.schedule.expiry()) if b.knobs.expire else cut

    def _processed(self, b: BatchRecord, t: float) -> int:
        """How many requests (in processing order) have been answered by time ``t``."""
        if b.errors or b.knobs.fail_after_creation:
            return 0
        n, ip, span = len(b.requests), b.t0 + b.schedule.validating, b.schedule.in_progress
        stop = min(t, self._cutoff(b))
        if stop < ip:
            return 0
        return n if span <= 0 else min(n, int(n * (stop - ip) / span + 1e-9))

    def _run_requests(self, b: BatchRecord, k: int) -> None:
        """Answer requests up to the ``k``-th in processing order with the chat responder."""
        while len(b.results) < k:
            item = b.requests[b.order[len(b.results)]]
            try:
                status, out, _ = self._complete(item["body"])
            except Exception as e:  # a broken test responder fails its line, not the batch
                status, out, _ = error(500, f"responder failed: {type(e).__name__}: {e}", type_="server_error")
            self.batch_bodies.append(item["body"])
            self.batch_responses.append((status, out))
            b.results.append(_Result(item["custom_id"], status, out))

    def _finish(self, b: BatchRecord, status: str) -> None:
        """Write the output and error files once the batch ends."""
        ok = [r for r in b.results if r.status == 200]
        bad = [r for r in b.results if r.status != 200]
        out_lines = [{"id": r.id, "custom_id": r.custom_id,
                      "response": {"status_code": r.status, "request_id": r.request_id, "body": r.body},
                      "error": None} for r in ok]
        err_lines = [{"id": r.id, "custom_id": r.custom_id,
                      "response": {"status_code": r.status, "request_id": r.request_id, "body": r.body},
                      "error": None} for r in bad]
        if status in ("expired", "cancelled"):
            code, message = (("batch_expired", "This request could not be executed before the completion window "
                              "expired.") if status == "expired" else
                             ("batch_cancelled", "This request was not executed because the batch was cancelled."))
            for i in b.order[len(b.results):]:
                err_lines.append({"id": _Result("", 0, None).id, "custom_id": b.requests[i]["custom_id"],
                                  "response": None, "error": {"code": code, "message": message}})
        if out_lines:
            b.output_file_id = self._store_file(f"{b.id}_output.jsonl", "batch_output", to_jsonl(out_lines)).id
        if err_lines:
            b.error_file_id = self._store_file(f"{b.id}_error.jsonl", "batch_output", to_jsonl(err_lines)).id
        b.finished = True

    def _now(self) -> float:
        return self.clock() + _EPS

    def _batch_json(self, b: BatchRecord) -> dict[str, Any]:
        t = self._now()
        s = b.schedule
        status = self._status(b, t)
        ip, cut = b.t0 + s.validating, self._cutoff(b)
        fin = ip + s.in_progress
        failed = status == "failed"
        k = self._processed(b, t)
        self._run_requests(b, k)
        if status in TERMINAL and not failed and not b.finished:
            self._finish(b, status)
        done = b.results[:k]
        usage = [r.body["usage"] for r in done if r.status == 200 and isinstance(r.body, dict) and "usage" in r.body]
        errors = None
        if failed and b.errors:
            errors = {"object": "list", "data": b.errors}
        elif failed:
            errors = {"object": "list", "data": [{
                "code": "token_limit_exceeded", "line": None, "param": None,
                "message": f"Enqueued token limit reached for {b.model or 'gpt-4o-mini'} in organization "
                           "org-fakefakefake. Limit: 2,000,000 enqueued tokens. Please try again once some "
                           "in_progress batches have been completed."}]}
        started = ip <= t and ip < cut and not failed
        p = sum(u.get("prompt_tokens", 0) for u in usage)
        c = sum(u.get("completion_tokens", 0) for u in usage)
        return {
            "id": b.id,
            "object": "batch",
            "endpoint": b.endpoint,
            "model": b.model,
            "errors": errors,
            "input_file_id": b.input_file_id,
            "completion_window": b.completion_window,
            "status": status,
            "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id,
            "created_at": b.created_at,
            "in_progress_at": b.unix(ip) if started else None,
            "expires_at": b.unix(b.t0 + s.expiry()) if b.knobs.expire else b.created_at + 24 * 3600,
            "finalizing_at": b.unix(fin) if fin <= t and fin < cut and not failed else None,
            "completed_at": b.unix(fin + s.finalizing) if status == "completed" else None,
            "failed_at": b.unix(ip) if failed else None,
            "expired_at": b.unix(b.t0 + s.expiry()) if status == "expired" else None,
            "cancelling_at": b.unix(b.cancel_at) if b.cancel_at is not None else None,
            "cancelled_at": b.unix((b.cancel_at or 0.0) + s.cancelling) if status == "cancelled" else None,
            "request_counts": {"total": len(b.requests) if started else 0,
                               "completed": sum(r.status == 200 for r in done),
                               "failed": sum(r.status != 200 for r in done)},
            "usage": {"input_tokens": p, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": c, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": p + c},
            "metadata": b.metadata,
        }

    # -- HTTP plumbing -------------------------------------------------------------------------------------------

    def _match(self, method: str, path: str) -> tuple[str, Handler | None, dict[str, str]]:
        """The route pattern, its handler and the placeholder values; no handler when nothing matches."""
        handler = self.routes.get((method, path))
        if handler is not None:
            return path, handler, {}
        for (m, pattern), h in self.routes.items():
            if m == method and "{" in pattern:
                regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
                found = re.fullmatch(regex, path)
                if found:
                    return pattern, h, found.groupdict()
        return path, None, {}

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes, dict]:
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        req = Recorded(method, parts.path, headers, body, query=query)
        pattern, handler, req.params = self._match(method, req.path)
        with self._lock:
            self.requests.append(req)
            self.hits[f"{method} {pattern}"] += 1
        if self.no_batch_api and req.path.startswith(BATCH_PREFIXES):
            status, out, extra = 404, {"detail": "Not Found"}, {}  # what FastAPI-based local servers answer
        elif handler is None:
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
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _serve(self) -> None:
                raw = self._read_body()
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, data, extra = server._dispatch(self.command, self.path, headers, raw)
                self.send_response(status)
                if not any(k.lower() == "content-type" for k in extra):
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


def _page(data: list[dict[str, Any]], query: dict[str, str]) -> Response:
    """A cursor page, newest first: ``limit`` (1-100, default 20) items after the id ``after``."""
    try:
        limit = max(1, min(100, int(query.get("limit", 20))))
    except ValueError:
        return error(400, f"Invalid 'limit': {query.get('limit')!r}.", param="limit")
    after = query.get("after")
    if after is not None:
        ids = [d["id"] for d in data]
        data = data[ids.index(after) + 1:] if after in ids else []
    page = data[:limit]
    return 200, {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                 "last_id": page[-1]["id"] if page else None, "has_more": len(data) > limit}, {}


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A started fake server per test; set ``.responder`` to script its answers."""
    with FakeLLMServer() as srv:
        yield srv

"""A loopback HTTP media server for tests, and its pytest fixtures (use as a plugin: ``tests.media_server``).

``MediaServer`` is a ``ThreadingHTTPServer`` on 127.0.0.1, port 0, in a daemon thread. Every route is a
callable ``route(handler)`` registered by exact URL path (the query string is ignored for routing and
counting). Unregistered paths answer 404. HTTP/1.1 with keep-alive; every body has a Content-Length; GET
and HEAD both work; 200 bodies honour a single ``Range: bytes=a-b`` with 206 (yt-dlp resumes that way) or 416.

Fixtures (this module is a pytest plugin; also importable on its own, ``python -m tests.media_server``
serves the default routes until Ctrl-C):

- ``media_files`` (session): ``{name: Path}`` from :func:`tests.media.build_media` - keys ``m4a``, ``mp3``,
  ``webm``, ``mp4`` (speech + still video), ``wav``, ``silent_mp4`` (video, no audio stream), ``vtt``
  (captions with the words of the ``mp4``). Words per file: ``tests.media.MEDIA_TEXT``.
- ``media_server`` (function): a FRESH started ``MediaServer`` per test with :func:`install_default_routes`,
  so hit counters and flaky-route state always start at zero; stopped at teardown (≈ms; hanging
  handlers are released by ``stop()``).

Default routes (``install_default_routes``):

- ``/media/<file name>`` for each file of ``media_files`` (``server.media_url("m4a")``);
- ``/feed.xml``: RSS 2.0 podcast, 3 items (m4a, mp3, webm) with title, ``itunes:duration`` (whole seconds),
  pubDate, guid (``ep-alpha``, ``ep-bravo``, ``ep-charlie``) and an ``<enclosure>``; ``FEED_ITEMS`` below;
- ``/page.html``: a ``<video>`` (mp4) and an ``<audio>`` (mp3) -> yt-dlp playlist of two entries;
- ``/captioned.html``: one ``<video>`` (mp4) with ``<track kind="subtitles" srclang="en"
  src="/captions/talk-delta.vtt">``, the .vtt served at that path;
- ``/notmedia.html``: HTML without any media;
- ``/media/ep-delta.mp3``: the mp3 with the title tag ``TAGGED_TITLE`` (its file name says nothing);
- ``/sundials.html``: a page titled ``SINGLE_PAGE_TITLE`` with one ``<audio>`` (the mp3);
- ``/missing.mp3``: 404 (so is any unknown path);
- ``/flaky429.mp3``: 429 + ``Retry-After: 1`` for the first request, then the mp3;
- ``/flaky500.mp3``: 500 for the first request, then the mp3;
- ``/late429.mp3``: the first request (yt-dlp's extraction GET) succeeds, the second (the download) gets 429,
  then OK;
- ``/hang.mp3``: 200 headers with Content-Length, then no body until the server stops;
- ``/stall.mp3``: reads the request and never answers at all until the server stops;
- ``/reset.mp3``: 200 headers, 16 KiB of the mp3, then a TCP RST (``SO_LINGER`` 0 + close), every time;
- ``/reset-early.mp3``: a TCP RST right after reading the request, before any byte of the response;
- ``/redirect.mp3``: 302 to ``/media/talk-bravo.mp3``.

Hostile routes (issue 12; also ``install_default_routes``), each breaking one promise a server makes:

- ``/endless.mp3``: 200 ``audio/mpeg`` with NO Content-Length, the mp3's bytes repeated until the client
  goes away (``add_endless``): a live stream that never ends;
- ``/trickle.mp3``: 200 with a Content-Length of 10 MB, then one byte every 10 s (``add_trickle``; tests use
  a small interval);
- ``/set-cookie.mp3``: the mp3 with ``Set-Cookie: injected=EVIL-SET-COOKIE-777`` (``add_set_cookie``);
- ``/loop.mp3``: 302 to itself, forever (``add_redirect_loop``);
- ``/to-loopback2.mp3``: 302 to the same path on ``127.0.0.2`` (another loopback address, same port);
- ``/to-file.mp3``: 302 to ``file:///etc/passwd``;
- ``/big.zip`` (``application/zip``), ``/big.html`` (``text/html``), ``/big.bin`` (``application/octet-stream``,
  ZIP bytes): 2 GB, generated as it is sent, never stored (``add_big``).

``sent(path)`` counts the body bytes the hostile routes wrote, so a test can show a client stopped early.
``MediaServer(host="127.0.0.2")`` listens on another loopback address.

Counting: ``hits(path)`` counts GET requests only (what yt-dlp sends); ``hits(path, "HEAD")`` counts HEAD,
``hits(path, None)`` all methods. ``requests`` keeps every request as a ``Hit(method, path, headers)``.
Flaky routes count every request (any method) towards their failures.
"""

from __future__ import annotations

import argparse
import collections
import mimetypes
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

try:  # as part of the tests package (pytest, python -m tests.media_server)
    from tests.media import MEDIA, MEDIA_TEXT, build_media, media_duration
except ModuleNotFoundError as exc:  # pragma: no cover - imported with tests/ itself on sys.path
    if exc.name != "tests":
        raise
    from media import MEDIA, MEDIA_TEXT, build_media, media_duration  # type: ignore[no-redef]

Route = Callable[["MediaRequestHandler"], None]

CONTENT_TYPES = {
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".webm": "audio/webm",
    ".mp4": "video/mp4",
    ".wav": "audio/wav",
    ".vtt": "text/vtt; charset=utf-8",
    ".srt": "application/x-subrip",
    ".html": "text/html; charset=utf-8",
    ".xml": "application/rss+xml; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}

# The RSS feed at /feed.xml: (media name, guid, title, pubDate as a unix time).
FEED_ITEMS: list[tuple[str, str, str, int]] = [
    ("m4a", "ep-alpha", "Episode Alpha: The Fox", 1_700_000_000),
    ("mp3", "ep-bravo", "Episode Bravo: Baking Bread", 1_700_086_400),
    ("webm", "ep-charlie", "Episode Charlie: The Comet", 1_700_172_800),
]

# /media/ep-delta.mp3: the mp3 with this ``title`` tag (ffmpeg ``-metadata``), a file name that says nothing.
TAGGED_TITLE = "Episode Delta: Sundials at Noon"
# /sundials.html: a page with one <audio> (the mp3); yt-dlp calls its entry "Sundials (1)".
SINGLE_PAGE_TITLE = "Sundials"

RESET_AFTER_BYTES = 16 * 1024
HANG_MAX_S = 120.0  # a hanging handler gives up by itself after this, even if stop() is never called


def content_type_for(path: str | os.PathLike[str]) -> str:
    ext = Path(path).suffix.lower()
    return CONTENT_TYPES.get(ext) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class MediaRequestHandler(BaseHTTPRequestHandler):
    """Dispatches to the owner's routes; helpers for routes: ``send_bytes``, ``send_status``, ``reset``."""

    protocol_version = "HTTP/1.1"
    timeout = 5.0  # socket timeout per connection: idle keep-alive threads end by themselves
    server: _Server

    # -- plumbing -------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self._dispatch()

    @property
    def route_path(self) -> str:
        return urlsplit(self.path).path

    @property
    def owner(self) -> MediaServer:
        return self.server.owner

    def _dispatch(self) -> None:
        path = self.route_path
        self.owner._record(Hit(self.command, path, dict(self.headers.items())))
        route = self.owner._routes.get(path)
        try:
            if route is None:
                self.send_status(404)
            else:
                route(self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    # -- helpers for routes ----------------------------------------------------------------------------------
    def send_status(self, status: int, headers: Mapping[str, str] | None = None, body: bytes | None = None) -> None:
        """A small text response (default body: the reason phrase)."""
        if body is None:
            body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_bytes(body, "text/plain; charset=utf-8", status=status, headers=headers, ranges=False)

    def send_bytes(
        self,
        data: bytes,
        content_type: str,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        ranges: bool = True,
    ) -> None:
        """Send ``data`` with Content-Type/Content-Length; with ``ranges`` a 200 honours a single Range.

        ``headers`` may be pairs, for a header sent more than once (``Set-Cookie``).
        """
        start, end = 0, len(data) - 1
        extra = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        if ranges and status == 200:
            if not any(k.lower() == "accept-ranges" for k, _ in extra):
                extra.append(("Accept-Ranges", "bytes"))
            rng = self.headers.get("Range")
            if rng:
                parsed = _parse_range(rng, len(data))
                if parsed is None:
                    self.send_status(416, {"Content-Range": f"bytes */{len(data)}"})
                    return
                start, end = parsed
                status = 206
                extra.append(("Content-Range", f"bytes {start}-{end}/{len(data)}"))
        body = data[start : end + 1] if data else b""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def open_stream(self, content_type: str, length: int | None = None) -> bool:
        """Headers of a body the route writes itself, piece by piece (the connection closes after it);
        False for a HEAD request, which gets the headers only."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header(*(("Content-Length", str(length)) if length is not None else ("Connection", "close")))
        self.end_headers()
        self.wfile.flush()
        return self.command != "HEAD"

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER on, 0 s, then close)."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.connection.close()


def _request_counter() -> Callable[[], int]:
    """1, 2, 3… across handler threads: flaky routes decide what to answer by request number."""
    lock, seen = threading.Lock(), [0]

    def number() -> int:
        with lock:
            seen[0] += 1
            return seen[0]

    return number


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one ``bytes=a-b`` range, or None when unsatisfiable/unsupported."""
    m = _RANGE.match(header)
    if not m or size == 0:
        return None
    a, b = m.groups()
    if a == "" and b == "":
        return None
    if a == "":  # suffix range: last b bytes
        n = int(b)
        if n == 0:
            return None
        return max(0, size - n), size - 1
    start = int(a)
    end = size - 1 if b == "" else min(int(b), size - 1)
    if start >= size or end < start:
        return None
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, owner: MediaServer) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__((owner.host, 0), MediaRequestHandler)

    def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # type: ignore[no-untyped-def]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError) or self.owner._stopping.is_set():
            return  # resets, timeouts and shutdown races are expected here
        super().handle_error(request, client_address)

    def abort_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class MediaServer:
    """Loopback HTTP server with configurable routes and per-path hit counters.

    >>> with MediaServer() as srv:
    ...     srv.add_file("/a.mp3", some_path)
    ...     url = srv.url("/a.mp3")
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._routes: dict[str, Route] = {}
        self._hits: collections.Counter[tuple[str, str]] = collections.Counter()
        self._sent: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self.requests: list[Hit] = []
        self.media: dict[str, str] = {}  # media name -> URL path (filled by install_default_routes)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> MediaServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="media-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; releases hanging handlers and aborts open connections. Never blocks for long."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.abort_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> threading.Event:
        """Set while/after ``stop()``: routes that wait should wait on this."""
        return self._stopping

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MediaServer not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def media_url(self, name: str) -> str:
        """URL of a default media file by its ``media_files`` name (``"m4a"``, ``"mp4"``, ...)."""
        return self.url(self.media[name])

    # -- counters -----------------------------------------------------------------------------------------------
    def _record(self, hit: Hit) -> None:
        with self._lock:
            self._hits[(hit.method, hit.path)] += 1
            self.requests.append(hit)

    def hits(self, path: str, method: str | None = "GET") -> int:
        """Requests for ``path`` (query ignored): GET only by default; ``method=None`` counts all methods."""
        path = urlsplit(path).path if "://" in path else path.split("?", 1)[0]
        with self._lock:
            if method is None:
                return sum(n for (_, p), n in self._hits.items() if p == path)
            return self._hits[(method.upper(), path)]

    def reset_hits(self) -> None:
        with self._lock:
            self._hits.clear()
            self.requests.clear()
            self._sent.clear()

    def sent(self, path: str) -> int:
        """Body bytes the hostile routes (endless, trickle, big) wrote for ``path`` so far."""
        with self._lock:
            return self._sent[path]

    def _wrote(self, path: str, n: int) -> None:
        with self._lock:
            self._sent[path] += n

    # -- routes ------------------------------------------------------------------------------------------------
    def add_route(self, path: str, handler: Route) -> None:
        """Register ``handler(req: MediaRequestHandler)`` for the exact path ``path`` (replaces any route)."""
        self._routes[path] = handler

    def remove_route(self, path: str) -> None:
        self._routes.pop(path, None)

    def add_bytes(self, path: str, data: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.add_route(path, lambda req: req.send_bytes(data, content_type, headers=headers))

    def add_text(self, path: str, text: str, content_type: str | None = None) -> None:
        self.add_bytes(path, text.encode("utf-8"), content_type or content_type_for(path))

    def add_file(self, path: str, file: str | os.PathLike[str], content_type: str | None = None) -> None:
        """Serve ``file`` (read once, now) at ``path``; Content-Type from ``file``'s extension by default."""
        data = Path(file).read_bytes()
        self.add_bytes(path, data, content_type or content_type_for(file))

    def add_status(self, path: str, status: int, headers: Mapping[str, str] | None = None) -> None:
        self.add_route(path, lambda req: req.send_status(status, headers))

    def add_redirect(self, path: str, location: str, status: int = 302) -> None:
        self.add_status(path, status, {"Location": location})

    def add_flaky(
        self,
        path: str,
        file: str | os.PathLike[str],
        status: int = 429,
        failures: int = 1,
        headers: Mapping[str, str] | None = None,
        ok_first: int = 0,
        content_type: str | None = None,
    ) -> None:
        """Serve ``file`` except requests number ``ok_first+1 .. ok_first+failures`` (any method), which get
        ``status`` (+ ``headers``; 429 gets ``Retry-After: 1`` unless given)."""
        if headers is None:
            headers = {"Retry-After": "1"} if status in (429, 503) else {}
        data = Path(file).read_bytes()
        ctype = content_type or content_type_for(file)
        number = _request_counter()

        def route(req: MediaRequestHandler) -> None:
            n = number()
            if ok_first < n <= ok_first + failures:
                req.send_status(status, headers)
            else:
                req.send_bytes(data, ctype)

        self.add_route(path, route)

    def add_hang(
        self,
        path: str,
        headers_first: bool = True,
        content_type: str = "audio/mpeg",
        length: int = 100_000,
        max_s: float = HANG_MAX_S,
    ) -> None:
        """Never finish: with ``headers_first`` send 200 + Content-Length then no body, else never answer.
        The handler waits on ``stopping`` (``stop()`` releases it) or gives up after ``max_s``."""

        def route(req: MediaRequestHandler) -> None:
            if headers_first:
                req.send_response(200)
                req.send_header("Content-Type", content_type)
                req.send_header("Content-Length", str(length))
                req.send_header("Accept-Ranges", "bytes")
                req.end_headers()
                req.wfile.flush()
            self._stopping.wait(max_s)
            req.close_connection = True

        self.add_route(path, route)

    def add_reset(
        self,
        path: str,
        file: str | os.PathLike[str],
        after_bytes: int = RESET_AFTER_BYTES,
        times: int | None = None,
        ok_first: int = 0,
        content_type: str | None = None,
    ) -> None:
        """200 with the full Content-Length of ``file``, ``after_bytes`` of the body, then a TCP RST.
        ``after_bytes=-1``: reset before sending anything. Requests number ``ok_first+1 .. ok_first+times``
        (any method; ``times=None``: all of them from ``ok_first+1`` on) are reset, the others served normally."""
        data = Path(file).read_bytes()
        ctype = content_type or content_type_for(file)
        number = _request_counter()

        def route(req: MediaRequestHandler) -> None:
            n = number()
            if n <= ok_first or (times is not None and n > ok_first + times):
                req.send_bytes(data, ctype)
                return
            if after_bytes >= 0:
                req.send_response(200)
                req.send_header("Content-Type", ctype)
                req.send_header("Content-Length", str(len(data)))
                req.end_headers()
                if req.command != "HEAD":
                    req.wfile.write(data[:after_bytes])
                req.wfile.flush()
                time.sleep(0.1)  # let the client read the headers and the first bytes
            req.reset()

        self.add_route(path, route)


    # -- hostile routes (issue 12) -----------------------------------------------------------------------------
    def add_endless(self, path: str, file: str | os.PathLike[str], content_type: str = "audio/mpeg",
                    chunk: int = 64 * 1024) -> None:
        """200 with no Content-Length (the body ends when the connection does): ``file``'s bytes, repeated
        until the client disconnects or the server stops. An endless live stream."""
        data = Path(file).read_bytes()
        block = (data * (chunk // max(1, len(data)) + 1))[:chunk]

        def route(req: MediaRequestHandler) -> None:
            if not req.open_stream(content_type):
                return
            while not self._stopping.is_set():
                req.wfile.write(block)
                self._wrote(path, len(block))

        self.add_route(path, route)

    def add_trickle(self, path: str, file: str | os.PathLike[str], every_s: float = 10.0,
                    length: int = 10_000_000, content_type: str = "audio/mpeg", max_s: float = HANG_MAX_S,
                    chunk: int = 1) -> None:
        """200 with Content-Length ``length``, then ``chunk`` byte(s) of ``file`` every ``every_s`` seconds (until
        the client goes away, the server stops, or ``max_s``): with the default a read of any block size
        never completes; with a bigger ``chunk`` it is a slow but steady transfer."""
        data = Path(file).read_bytes()
        data = (data * (length // max(1, len(data)) + 1))[:length] if length <= 50_000_000 else data

        def route(req: MediaRequestHandler) -> None:
            if not req.open_stream(content_type, length):
                return
            start = time.monotonic()
            for i in range(0, length, chunk):
                if self._stopping.wait(every_s) or time.monotonic() - start > max_s:
                    return
                piece = data[i % len(data): i % len(data) + min(chunk, length - i)]
                req.wfile.write(piece)
                req.wfile.flush()
                self._wrote(path, len(piece))

        self.add_route(path, route)

    def add_set_cookie(self, path: str, file: str | os.PathLike[str],
                       cookies: tuple[str, ...] = ("injected=EVIL-SET-COOKIE-777; Path=/",),
                       content_type: str | None = None) -> None:
        """Serve ``file`` with a ``Set-Cookie`` header per entry of ``cookies`` (the request's own Cookie
        header is in ``requests``, as for every route)."""
        data = Path(file).read_bytes()
        ctype = content_type or content_type_for(file)

        def route(req: MediaRequestHandler) -> None:
            req.send_bytes(data, ctype, headers=[("Set-Cookie", c) for c in cookies])

        self.add_route(path, route)

    def add_redirect_loop(self, path: str, status: int = 302) -> None:
        """``status`` redirect to ``path`` itself, every time: a loop no client can finish."""
        self.add_redirect(path, path, status)

    def add_big(self, path: str, size: int = 2 * 2**30, content_type: str = "application/zip",
                head: bytes = b"PK\x03\x04\x14\x00\x00\x00\x08\x00", chunk: int = 64 * 1024) -> None:
        """A ``size``-byte body (Content-Length set) of ``head`` then zeros, generated as it is sent and never
        stored; ``sent(path)`` tells how much of it went out before the client stopped reading."""
        zeros = bytes(chunk)

        def route(req: MediaRequestHandler) -> None:
            if not req.open_stream(content_type, size):
                return
            req.wfile.write(head)
            self._wrote(path, len(head))
            left = size - len(head)
            while left > 0 and not self._stopping.is_set():
                n = min(left, chunk)
                req.wfile.write(zeros[:n])
                self._wrote(path, n)
                left -= n

        self.add_route(path, route)


# -- default content ------------------------------------------------------------------------------------------


def rss_feed(
    base_url: str,
    items: list[Mapping[str, object]],
    title: str = "Tubemill Test Podcast",
    link: str | None = None,
) -> str:
    """RSS 2.0 + iTunes namespace. Each item: ``title``, ``url`` (enclosure; absolute or a path),
    optional ``guid``, ``duration`` (seconds), ``pubdate`` (unix time), ``type``, ``length``, ``description``."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">',
        "<channel>",
        f"<title>{escape(title)}</title>",
        f"<link>{escape(link or base_url + '/')}</link>",
        "<description>Speech clips for Tubemill tests</description>",
        "<language>en-us</language>",
    ]
    for it in items:
        url = str(it["url"])
        if url.startswith("/"):
            url = base_url + url
        out.append("<item>")
        out.append(f"<title>{escape(str(it['title']))}</title>")
        if it.get("description"):
            out.append(f"<description>{escape(str(it['description']))}</description>")
        if it.get("guid"):
            out.append(f'<guid isPermaLink="false">{escape(str(it["guid"]))}</guid>')
        if it.get("pubdate") is not None:
            out.append(f"<pubDate>{formatdate(float(it['pubdate']), usegmt=True)}</pubDate>")  # type: ignore[arg-type]
        if it.get("duration") is not None:
            s = round(float(it["duration"]))  # type: ignore[arg-type]
            out.append(f"<itunes:duration>{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}</itunes:duration>")
        ctype = escape(str(it.get("type") or content_type_for(url)))
        out.append(f'<enclosure url="{escape(url)}" length="{int(it.get("length") or 0)}" type="{ctype}"/>')  # type: ignore[call-overload]
        out.append("</item>")
    out += ["</channel>", "</rss>", ""]
    return "\n".join(out)


def tagged_copy(src: Path, title: str, name: str) -> Path:
    """``src`` remuxed (no re-encode) with a ``title`` tag, beside it; made once, reused by later tests."""
    out = src.with_name(name)
    if not out.exists():
        import subprocess

        from tests.media import ffmpeg_exe

        tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
        subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                        "-map", "0:a", "-c", "copy", "-metadata", f"title={title}", str(tmp)],
                       check=True, capture_output=True, timeout=60)
        os.replace(tmp, out)
    return out


def html_page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>\n'
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def install_default_routes(server: MediaServer, media_files: Mapping[str, Path]) -> None:
    """Register the routes listed in this module's docstring (server must be started: URLs are absolute)."""
    for name, path in media_files.items():
        url_path = ("/captions/" if path.suffix == ".vtt" else "/media/") + path.name
        server.media[name] = url_path
        server.add_file(url_path, path)

    base = server.base_url
    items = []
    for name, guid, title, pub in FEED_ITEMS:
        if name not in media_files:
            continue
        f = media_files[name]
        items.append({
            "title": title, "guid": guid, "pubdate": pub, "duration": media_duration(f),
            "url": server.media[name], "length": f.stat().st_size, "description": MEDIA_TEXT.get(name, ""),
        })  # fmt: skip
    server.add_text("/feed.xml", rss_feed(base, items), "application/rss+xml; charset=utf-8")

    if "mp4" in media_files and "mp3" in media_files:
        server.add_text("/page.html", html_page("A page with media", (
            f'<video controls width="160"><source src="{server.media["mp4"]}" type="video/mp4"></video>\n'
            f'<audio controls><source src="{server.media["mp3"]}" type="audio/mpeg"></audio>'
        )))  # fmt: skip
    if "mp4" in media_files and "vtt" in media_files:
        server.add_text("/captioned.html", html_page("A captioned video", (
            f'<video controls width="160"><source src="{server.media["mp4"]}" type="video/mp4">\n'
            f'<track kind="subtitles" srclang="en" label="English" src="{server.media["vtt"]}" default>\n'
            "</video>"
        )))  # fmt: skip
    server.add_text("/notmedia.html", html_page("Nothing to see", "<p>Just words. No video, no audio.</p>"))
    if "mp3" in media_files:  # titles and durations from the media itself (issue 14)
        server.add_file("/media/ep-delta.mp3", tagged_copy(media_files["mp3"], TAGGED_TITLE, "ep-delta.mp3"))
        server.add_text("/sundials.html", html_page(SINGLE_PAGE_TITLE, (
            f'<audio controls><source src="{server.media["mp3"]}" type="audio/mpeg"></audio>')))

    server.add_status("/missing.mp3", 404)
    if "mp3" in media_files:
        mp3 = media_files["mp3"]
        server.add_flaky("/flaky429.mp3", mp3, status=429, failures=1)
        server.add_flaky("/flaky500.mp3", mp3, status=500, failures=1)
        server.add_flaky("/late429.mp3", mp3, status=429, failures=1, ok_first=1)
        server.add_reset("/reset.mp3", mp3)
        server.add_reset("/reset-early.mp3", mp3, after_bytes=-1)
        server.add_redirect("/redirect.mp3", server.media["mp3"])
    server.add_hang("/hang.mp3", headers_first=True)
    server.add_hang("/stall.mp3", headers_first=False)
    if "mp3" in media_files:  # hostile routes (issue 12)
        mp3 = media_files["mp3"]
        server.add_endless("/endless.mp3", mp3)
        server.add_trickle("/trickle.mp3", mp3)
        server.add_set_cookie("/set-cookie.mp3", mp3)
    server.add_redirect_loop("/loop.mp3")
    server.add_redirect("/to-loopback2.mp3", f"http://127.0.0.2:{server.port}/to-loopback2.mp3")
    server.add_redirect("/to-file.mp3", "file:///etc/passwd")
    server.add_big("/big.zip")
    server.add_big("/big.html", content_type="text/html; charset=utf-8", head=b"<!DOCTYPE html><html><body>")
    server.add_big("/big.bin", content_type="application/octet-stream")


# -- pytest fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def media_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated once per session: name -> Path (see ``tests.media.MEDIA``)."""
    return build_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def media_server(media_files: dict[str, Path]) -> Iterator[MediaServer]:
    """A fresh, started ``MediaServer`` with the default routes; fresh counters and flaky state per test."""
    server = MediaServer().start()
    try:
        install_default_routes(server, media_files)
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    ap = argparse.ArgumentParser(description="Serve the Tubemill test media on 127.0.0.1 until Ctrl-C.")
    ap.add_argument("--dir", default="test-media", help="where to generate (and cache) the media")
    args = ap.parse_args(argv)
    files = build_media(args.dir)
    with MediaServer() as srv:
        install_default_routes(srv, files)
        for p in sorted(srv._routes):
            print(srv.url(p))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

__all__ = [
    "FEED_ITEMS",
    "MEDIA",
    "SINGLE_PAGE_TITLE",
    "TAGGED_TITLE",
    "Hit",
    "MediaRequestHandler",
    "MediaServer",
    "content_type_for",
    "html_page",
    "install_default_routes",
    "media_files",
    "media_server",
    "rss_feed",
    "tagged_copy",
]

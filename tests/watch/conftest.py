"""A loopback feed server whose feeds gain entries, fail on demand, and answer 304 when unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


def answer_feed(h: BaseHTTPRequestHandler, body: bytes, etag: str) -> None:
    """A conditional feed answer, as YouTube's feeds give one: a bodiless 304 when the client's ETag matches,
    else the feed with its ETag (the bench's 200 feeds answer through this too)."""
    if h.headers.get("If-None-Match") == etag:
        h.send_response(304)
        h.end_headers()
        return
    h.send_response(200)
    h.send_header("Content-Type", "application/xml")
    h.send_header("ETag", etag)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@dataclass
class Feeds:
    base: str = ""
    videos: dict[str, list[str]] = field(default_factory=dict)  # channel or path -> video ids, newest first
    status: dict[str, int] = field(default_factory=dict)  # forced status per key
    hits: list[str] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)  # path -> HTML (no feed: yt-dlp lists it)

    def atom(self, key: str) -> bytes:
        rows = "".join(
            f"<entry><id>yt:video:{v}</id><yt:videoId>{v}</yt:videoId><title>Video {v}</title>"
            f'<link rel="alternate" href="https://www.youtube.com/watch?v={v}"/>'
            f"<published>2026-12-0{1 + i % 9}T10:00:00+00:00</published></entry>"
            for i, v in enumerate(self.videos.get(key, [])))
        return ('<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
                'xmlns:yt="http://www.youtube.com/xml/schemas/2015">'
                f"<title>{key}</title>{rows}</feed>").encode()

    def rss(self, key: str) -> bytes:
        rows = "".join(f"<item><title>Episode {v}</title><enclosure url=\"{self.base}/media/{v}.mp3\" "
                       f'type="audio/mpeg"/><guid>{v}</guid></item>' for v in self.videos.get(key, []))
        return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{key}</title>{rows}</channel></rss>'.encode()


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> Iterator[Feeds]:
    state = Feeds()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            u = urlsplit(self.path)
            q = parse_qs(u.query)
            key = (q.get("channel_id") or q.get("playlist_id") or [u.path.strip("/")])[0]
            state.hits.append(key)
            code = state.status.get(key)
            if code:
                self.send_response(code)
                if code == 429:
                    self.send_header("Retry-After", "120")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if key in state.pages:
                page = state.pages[key].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if key not in state.videos:
                self.send_error(404)
                return
            body = state.atom(key) if u.path.endswith("videos.xml") else state.rss(key)
            answer_feed(self, body, f'"{hash(body) & 0xFFFFFFFF:x}"')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("TUBEMILL_YOUTUBE_FEEDS", f"{state.base}/feeds/videos.xml")
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield state
    server.shutdown()
    server.server_close()

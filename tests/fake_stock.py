"""A loopback fake of the Pexels, Pixabay and Openverse APIs: their JSON shapes, real pictures and clips.

Fakes only the network edge: the visuals stage talks HTTP to 127.0.0.1 as it would to the real
hosts. Answers carry the field names of the real APIs (Pexels ``photos[].src.large2x``,
``videos[].video_files[]``; Pixabay ``hits[].largeImageURL``, ``hits[].videos.medium``; Openverse
``results[].license``, ``license_version``…), the keys are checked where the real API checks them
(Pexels: the ``Authorization`` header; Pixabay: the ``key`` parameter), and the files are real:
JPEG and PNG pictures drawn with Pillow per asset, and small H.264 MP4 clips made with ffmpeg.

Failures on demand (:meth:`FakeStock.fail`): ``429`` with ``Retry-After``, ``500``, ``hang``
(no answer until the client times out) and ``cut`` (headers promise more bytes than are sent,
then the connection closes), for the API paths, the file paths or both, the first N requests or all.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

PEXELS_KEY = "pexels-test-key-0123456789"
PIXABAY_KEY = "pixabay-test-key-9876543210"


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Failure:
    mode: str  # "429", "500", "hang", "cut"
    where: str = "api"  # "api", "files" or "all"
    times: int | None = None  # fail this many requests, then answer; None: every one
    retry_after: str | None = None


def make_clip(path: Path, seconds: float = 1.0, size: str = "180x320", colour: str = "testsrc") -> Path:
    """A small real H.264 MP4 (ffmpeg's test pattern)."""
    from pipeline.common.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"{colour}=size={size}:rate=15",
                    "-t", f"{seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path


def picture(seed: str, fmt: str, size: tuple[int, int] = (480, 720)) -> bytes:
    """A real picture, different per seed (a colour and a label), as JPEG or PNG bytes."""
    h = hashlib.sha256(seed.encode()).digest()
    img = Image.new("RGB", size, (h[0], h[1], h[2]))
    ImageDraw.Draw(img).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(h[3], h[4], h[5]))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@dataclass
class FakeStock:
    """The three APIs on one loopback server; ``base_url`` goes into every ``*_base_url`` option."""

    workdir: Path
    per_query: int = 4  # results per search answer
    hang_s: float = 4.0
    latency_s: float = 0.0  # added to every answer: a real provider's round trip (the benchmark uses it)
    seen: list[Seen] = field(default_factory=list)
    failure: Failure | None = None
    clips: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.clips = [make_clip(self.workdir / f"clip{k}.mp4", 1.0 + k * 0.5,
                                colour="testsrc" if k == 0 else "smptebars").read_bytes() for k in range(2)]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                fake._answer(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeStock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fail(self, mode: str | None, where: str = "api", times: int | None = None,
             retry_after: str | None = None) -> None:
        self.failure = Failure(mode, where, times, retry_after) if mode else None

    def api_calls(self, prefix: str = "") -> list[Seen]:
        return [s for s in self.seen if not s.path.startswith("/files/") and s.path.startswith(prefix)]

    def file_calls(self) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith("/files/")]

    # ------------------------------------------------------------ answers

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        url = urllib.parse.urlsplit(h.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self._lock:
            self.seen.append(Seen(url.path, query, {k.lower(): v for k, v in h.headers.items()}))
            failure = self.failure
            hit = failure is not None and (failure.where == "all" or
                                           (failure.where == "files") == url.path.startswith("/files/"))
            if hit and failure is not None and failure.times is not None:
                failure.times -= 1
                if failure.times < 0:
                    self.failure, hit = None, False
        if hit and failure is not None:
            return self._failure(h, failure)
        if url.path.startswith("/files/"):
            return self._file(h, url.path)
        routes = {"/v1/search": self._pexels, "/videos/search": self._pexels, "/api/": self._pixabay,
                  "/api/videos/": self._pixabay, "/v1/images/": self._openverse}
        route = routes.get(url.path)
        if route is None:
            return self._send(h, 404, b'{"detail": "Not found."}')
        status, body = route(url.path, query, h.headers)
        self._send(h, status, body if isinstance(body, bytes) else json.dumps(body).encode())

    def _failure(self, h: BaseHTTPRequestHandler, f: Failure) -> None:
        if f.mode == "hang":
            time.sleep(self.hang_s)
            h.close_connection = True
            return
        if f.mode == "cut":
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b'{"photos": [')
            h.wfile.flush()
            h.close_connection = True
            return
        extra = {"Retry-After": f.retry_after} if f.mode == "429" and f.retry_after else {}
        self._send(h, int(f.mode), b'{"error": "fake failure"}', extra)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None,
              ctype: str = "application/json") -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _ids(self, provider: str, q: str) -> list[int]:
        base = int(hashlib.sha256(f"{provider}:{q}".encode()).hexdigest()[:6], 16)
        return [base * 10 + k for k in range(self.per_query)]

    def _file(self, h: BaseHTTPRequestHandler, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".mp4"):
            clip = self.clips[int(name.split("-")[-1].split(".")[0]) % len(self.clips)]
            return self._send(h, 200, clip, ctype="video/mp4")
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        self._send(h, 200, picture(name, fmt), ctype=f"image/{fmt.lower()}")

    def _pexels(self, path: str, q: dict[str, str], headers: Any) -> tuple[int, Any]:
        if headers.get("Authorization") != PEXELS_KEY:
            return 401, {"error": "Unauthorized"}  # no Authorization header, or a wrong key
        query, per = q.get("query", ""), int(q.get("per_page", 15))
        ids = self._ids("pexels", query)[:per]
        f = f"{self.base_url}/files/pexels"
        if path == "/videos/search":
            videos = [{"id": i, "width": 1080, "height": 1920, "duration": 1 + i % 2, "full_res": None, "tags": [],
                       "url": f"https://www.pexels.com/video/clip-{i}/", "image": f"{f}/thumb-{i}.jpg",
                       "avg_color": None, "user": {"id": 7, "name": f"Videographer {i % 5}",
                                                   "url": f"https://www.pexels.com/@v{i % 5}"},
                       "video_files": [
                           {"id": i * 2, "quality": "sd", "file_type": "video/mp4", "width": 360, "height": 640,
                            "fps": 15.0, "link": f"{f}/v-{i}-sd-{i % 2}.mp4", "size": 1000},
                           {"id": i * 2 + 1, "quality": "hd", "file_type": "video/mp4", "width": 1080, "height": 1920,
                            "fps": 15.0, "link": f"{f}/v-{i}-hd-{i % 2}.mp4", "size": 2000}],
                       "video_pictures": [{"id": 1, "nr": 0, "picture": f"{f}/pic-{i}.jpg"}]} for i in ids]
            return 200, {"page": 1, "per_page": per, "total_results": len(videos),
                         "url": f"https://www.pexels.com/search/videos/{query}/", "videos": videos}
        photos = [{"id": i, "width": 3000, "height": 4500, "url": f"https://www.pexels.com/photo/p-{i}/",
                   "photographer": f"Photographer {i % 7}", "photographer_url": f"https://www.pexels.com/@p{i % 7}",
                   "photographer_id": i % 7, "avg_color": "#7E7E7E", "liked": False, "alt": query,
                   "src": {k: f"{f}/{i}-{k}.{'png' if i % 2 else 'jpeg'}" for k in
                           ("original", "large2x", "large", "medium", "small", "portrait", "landscape", "tiny")}}
                  for i in ids]
        return 200, {"page": 1, "per_page": per, "photos": photos, "total_results": len(photos),
                     "next_page": f"{self.base_url}/v1/search/?page=2&per_page={per}&query={query}"}

    def _pixabay(self, path: str, q: dict[str, str], headers: Any) -> tuple[int, Any]:
        if q.get("key") != PIXABAY_KEY:
            return 400, b"[ERROR 400] Invalid or missing API key"  # Pixabay answers this as text
        query, per = q.get("q", ""), int(q.get("per_page", 20))
        ids = self._ids("pixabay", query)[:per]
        f = f"{self.base_url}/files/pixabay"
        common = [{"id": i, "pageURL": f"https://pixabay.com/photos/x-{i}/", "tags": query, "views": 1,
                   "downloads": 1, "likes": 1, "comments": 0, "user_id": 100 + i % 3, "user": f"user{i % 3}",
                   "userImageURL": ""} for i in ids]
        if path == "/api/videos/":
            hits = [{**c, "type": "film", "duration": 1 + c["id"] % 2,
                     "videos": {s: {"url": f"{f}/v-{c['id']}-{s}-{c['id'] % 2}.mp4", "width": w, "height": hh,
                                    "size": 1000, "thumbnail": f"{f}/t-{c['id']}.jpg"}
                                for s, w, hh in (("large", 1920, 1080), ("medium", 1280, 720), ("small", 960, 540),
                                                 ("tiny", 640, 360))}} for c in common]
        else:
            hits = [{**c, "type": "photo", "previewURL": f"{f}/{c['id']}_150.jpg", "previewWidth": 100,
                     "previewHeight": 150, "webformatURL": f"{f}/{c['id']}_640.jpg", "webformatWidth": 427,
                     "webformatHeight": 640, "largeImageURL": f"{f}/{c['id']}_1280.jpg", "imageWidth": 3000,
                     "imageHeight": 4500, "imageSize": 100000} for c in common]
        return 200, {"total": len(hits), "totalHits": len(hits), "hits": hits}

    def _openverse(self, path: str, q: dict[str, str], headers: Any) -> tuple[int, Any]:
        query, per = q.get("q", ""), int(q.get("page_size", 20))
        ids = self._ids("openverse", query)[:per]
        f = f"{self.base_url}/files/openverse"
        licences = [("by", "2.0"), ("cc0", "1.0"), ("by-sa", "4.0"), ("pdm", "")]
        results = []
        for n, i in enumerate(ids):
            code, ver = licences[n % len(licences)]
            results.append({
                "id": f"0000-{i}", "title": f"{query} {n}", "indexed_on": "2024-01-01T00:00:00Z",
                "foreign_landing_url": f"https://www.flickr.com/photos/x/{i}", "url": f"{f}/{i}.jpg",
                "creator": f"Creator {n}", "creator_url": f"https://www.flickr.com/photos/c{n}",
                "license": code, "license_version": ver,
                "license_url": f"https://creativecommons.org/licenses/{code}/{ver}/" if ver else
                "https://creativecommons.org/publicdomain/mark/1.0/",
                "provider": "flickr", "source": "flickr", "category": "photograph", "filesize": None,
                "filetype": "jpg", "tags": [{"name": query, "accuracy": None}],
                "attribution": f'"{query} {n}" by Creator {n} is licensed under CC {code.upper()} {ver}.',
                "fields_matched": ["title"], "mature": False, "height": 4500, "width": 3000,
                "thumbnail": f"https://api.openverse.org/v1/images/0000-{i}/thumb/",
                "detail_url": f"https://api.openverse.org/v1/images/0000-{i}/", "related_url": "",
                "unstable__sensitivity": []})
        return 200, {"result_count": len(results), "page_count": 1, "page_size": per, "page": 1,
                     "results": results}

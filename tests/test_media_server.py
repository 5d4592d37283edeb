"""Self-test of the loopback media server with REAL yt-dlp; documents what yt-dlp does against it.

Observed with yt-dlp 2026.10.26 (its ``requests``/urllib3 handler is the one in use: ``requests`` is installed,
so transport messages are urllib3's), options ``retries=0, fragment_retries=0, extractor_retries=0``.
Every failure below surfaces as ``yt_dlp.utils.DownloadError`` (``e.msg`` == ``str(e)``, starts with
``"ERROR: "``); ``e.exc_info`` is a ``sys.exc_info()`` triple. Where the failure happens matters:

* EXTRACTION stage (the generic extractor's first GET of the URL): ``e.exc_info[1]`` is the real exception.
* DOWNLOAD stage (HttpFD, after extraction succeeded): for HTTP status errors ``e.exc_info[1]`` is still
  the ``HTTPError``; but for transport errors (timeouts, resets) yt-dlp's RetryManager reports outside the
  ``except`` block, so ``e.exc_info == (None, None, None)`` and ONLY the message tells:
  ``"ERROR: \\r[download] Got error: <urllib3 text>"`` - note the carriage return after ``"ERROR: "`` (the
  console shows no ``\\r``); with ``retries=N>0`` the message ends ``". Giving up after N retries"`` and the
  in-run retries resume with ``Range: bytes=<part size>-``. Match on ``"[download] Got error:"``.

Per route (all measured; times are wall clock on a 2-core box):

=====================  ==========  =====================================================================
route                  stage       what you get
=====================  ==========  =====================================================================
/missing.mp3 (404)     extraction  exc_info[1]: ``yt_dlp.networking.exceptions.HTTPError``; ``.status == 404``,
                                   ``.reason == "Not Found"``, ``.response.headers``; msg ``"ERROR: [generic]
                                   missing: Unable to download webpage: HTTP Error 404: Not Found (caused by
                                   <HTTPError 404: Not Found>)"``. ~0.07 s.
/flaky429.mp3          extraction  same ``HTTPError``, ``.status == 429``; ``.response.get_header("Retry-After")
                                   == "1"``. The next attempt succeeds (yt-dlp does not retry extraction
                                   GETs by itself here).
/flaky500.mp3          extraction  same ``HTTPError``, ``.status == 500``, ``.reason == "Internal Server Error"``.
/late429.mp3           download    exc_info[1]: ``HTTPError`` ``.status == 429``; msg ``"ERROR: unable to
                                   download video data: HTTP Error 429: Too Many Requests"``.
/hang.mp3              download    headers then no body, ``socket_timeout=2``: after ~2.1 s, exc_info
                                   ``(None, None, None)``, msg ``"ERROR: \\r[download] Got error:
                                   HTTPConnectionPool(host='127.0.0.1', port=N): Read timed out."``.
/stall.mp3             extraction  never answers, ``socket_timeout=2``: after ~2.1 s, exc_info[1]:
                                   ``yt_dlp.networking.exceptions.TransportError`` (``.cause`` is
                                   ``requests.exceptions.ReadTimeout``), msg ``"... Unable to download webpage:
                                   HTTPConnectionPool(...): Read timed out. (read timeout=2.0) (caused by
                                   TransportError(...))"``.
/reset.mp3             download    RST after 16 KiB: exc_info ``(None, None, None)``, msg ``"ERROR: \\r[download]
                                   Got error: ("Connection broken: ConnectionResetError(104, 'Connection reset
                                   by peer')", ConnectionResetError(104, ...))"``. Leaves ``<id>.<ext>.part``
                                   (15,360 bytes seen); the next run resumes it with ``Range: bytes=15360-``.
/reset-early.mp3       extraction  RST before any response byte: exc_info[1]: ``TransportError`` (``.cause``
                                   is ``requests.exceptions.ConnectionError``), msg ``"... ('Connection
                                   aborted.', ConnectionResetError(104, 'Connection reset by peer'))"``.
closed port            extraction  exc_info[1]: ``TransportError`` (``.cause`` urllib3 ``NewConnectionError``),
                                   msg ``"... Failed to establish a new connection: [Errno 111] Connection
                                   refused"``.
/notmedia.html         extraction  exc_info[1]: ``yt_dlp.utils.UnsupportedError`` (an ``ExtractorError``),
                                   ``.expected is True``, msg ``"ERROR: Unsupported URL: http://..."``
=====================  ==========  =====================================================================

(``HTTPError`` and ``TransportError`` are both ``yt_dlp.networking.exceptions.RequestError``; neither is an
``ExtractorError``.) Other facts pinned below: a direct URL's id/title is the base name, ``direct`` True,
``duration`` None; the RSS feed flat entries have no ``id`` and a ``#__youtubedl_smuggle=`` fragment, resolved
entries take the ``<guid>`` as id; a page with one ``<video>`` is a single video (extractor ``html5``, id
``<page>-1``), with two media tags a playlist ``<page>-1``, ``<page>-2``; a download fetches the media twice
(the extractor's GET reads only headers, then the downloader's GET).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yt_dlp
from yt_dlp.networking.exceptions import HTTPError, RequestError, TransportError
from yt_dlp.utils import DownloadError, ExtractorError, UnsupportedError, unsmuggle_url

from tests.media import MEDIA_TEXT, ffmpeg_exe, media_duration
from tests.media_server import FEED_ITEMS, MediaServer

FAST: dict[str, Any] = {
    "quiet": True,
    "no_warnings": True,
    "noprogress": True,
    "retries": 0,
    "fragment_retries": 0,
    "extractor_retries": 0,
    "socket_timeout": 5,
}


def ydl_opts(tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return {**FAST, "outtmpl": str(tmp_path / "%(id)s.%(ext)s"), "ffmpeg_location": ffmpeg_exe(), **kw}


def extract(url: str, **kw: Any) -> dict[str, Any]:
    with yt_dlp.YoutubeDL({**FAST, **kw}) as ydl:
        return ydl.sanitize_info(ydl.extract_info(url, download=False))


def qualname(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def failure(url: str, tmp_path: Path, **kw: Any) -> DownloadError:
    with pytest.raises(DownloadError) as ei, yt_dlp.YoutubeDL(ydl_opts(tmp_path, **kw)) as ydl:
        ydl.download([url])
    return ei.value


# -- the server itself -------------------------------------------------------------------------------------------


def test_range_head_and_counters(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """Static files: Content-Type/Length, 206 for Range, 416 past the end, HEAD counted apart from GET."""
    data = media_files["mp3"].read_bytes()
    url = media_server.media_url("mp3")
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "audio/mpeg"
        assert int(r.headers["Content-Length"]) == len(data)
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.read() == data
    req = urllib.request.Request(url, headers={"Range": "bytes=100-199"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        assert r.read() == data[100:200]
    req = urllib.request.Request(url, headers={"Range": "bytes=-10"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.read() == data[-10:]
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"}), timeout=5)
    assert ei.value.code == 416
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5) as r:
        assert int(r.headers["Content-Length"]) == len(data) and r.read() == b""
    path = media_server.media["mp3"]
    assert media_server.hits(path) == 4 and media_server.hits(path, "HEAD") == 1
    assert media_server.hits(url + "?x=1", None) == 5  # all methods; a full URL or a query string is fine
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(media_server.url("/nowhere"), timeout=5)
    assert ei.value.code == 404 and media_server.hits("/nowhere") == 1
    media_server.reset_hits()
    assert media_server.hits(path, None) == 0 and media_server.requests == []
    assert media_files["vtt"].read_text().startswith("WEBVTT")
    assert MEDIA_TEXT["vtt"] == MEDIA_TEXT["mp4"]


def test_stop_does_not_wait_for_hanging_handlers(media_files: dict[str, Path]) -> None:
    """stop() returns promptly while clients sit on /hang.mp3 and /stall.mp3."""
    import socket
    import threading

    srv = MediaServer().start()
    srv.add_hang("/hang.mp3")
    srv.add_hang("/stall.mp3", headers_first=False)
    socks = []
    for p in ("/hang.mp3", "/stall.mp3"):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    assert socks[0].recv(12) == b"HTTP/1.1 200"
    deadline = time.monotonic() + 2
    while srv.hits("/stall.mp3") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.perf_counter()
    srv.stop()
    assert time.perf_counter() - t0 < 1.5
    for s in socks:
        s.settimeout(2)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass  # reset by the abort: fine, the point is that it is not hanging
        s.close()
    assert not [t for t in threading.enumerate() if t.name == "media-server"]


# -- yt-dlp: the happy paths ---------------------------------------------------------------------------------------


def test_direct_url_info_and_download(media_server: MediaServer, media_files: dict[str, Path], tmp_path: Path) -> None:
    """A direct media URL: id/title are the base name, direct=True, no duration; bestaudio download is the file."""
    url = media_server.media_url("m4a")
    info = extract(url)
    assert (info["id"], info["title"], info["ext"], info["extractor"]) == ("talk-alpha", "talk-alpha", "m4a", "generic")
    assert info["direct"] is True and info.get("duration") is None
    assert media_server.hits(media_server.media["m4a"]) == 1  # headers only: the body is never read here
    with yt_dlp.YoutubeDL(ydl_opts(tmp_path, format="bestaudio/best")) as ydl:
        assert ydl.download([url]) == 0
    out = tmp_path / "talk-alpha.m4a"
    assert out.read_bytes() == media_files["m4a"].read_bytes()
    assert media_server.hits(media_server.media["m4a"]) == 3  # extraction GET + download GET


def test_redirect_is_followed(media_server: MediaServer) -> None:
    """A 302 to a media file: the info describes the target (id = target base name)."""
    info = extract(media_server.url("/redirect.mp3"))
    assert info["id"] == "talk-bravo" and info["webpage_url"].endswith("/media/talk-bravo.mp3")


def test_rss_feed_flat(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """RSS feed, extract_flat: a playlist of url_transparent entries, no id, smuggle fragment on the URL."""
    info = extract(media_server.url("/feed.xml"), extract_flat="in_playlist")
    assert info["_type"] == "playlist" and info["title"] == "Tubemill Test Podcast"
    assert info["id"] == media_server.url("/feed.xml")
    entries = info["entries"]
    assert [e["title"] for e in entries] == [t for _, _, t, _ in FEED_ITEMS]
    assert [e["duration"] for e in entries] == [round(media_duration(media_files[n])) for n, *_ in FEED_ITEMS]
    assert [e["timestamp"] for e in entries] == [ts for *_, ts in FEED_ITEMS]
    assert all(e.get("id") is None and e["_type"] == "url_transparent" for e in entries)
    for e, (name, guid, _, _) in zip(entries, FEED_ITEMS, strict=True):
        base, _, frag = e["url"].partition("#")
        assert base == media_server.media_url(name)
        assert frag.startswith("__youtubedl_smuggle=")
        assert json.loads(urllib.parse.unquote_plus(frag.split("=", 1)[1])) == {"force_videoid": guid}
        assert unsmuggle_url(e["url"]) == (base, {"force_videoid": guid})
    assert media_server.hits("/feed.xml") == 1
    assert sum(media_server.hits(media_server.media[n]) for n, *_ in FEED_ITEMS) == 0


def test_rss_feed_resolved(media_server: MediaServer) -> None:
    """RSS feed fully resolved: entry ids are the <guid>s, URLs are clean, each enclosure is fetched once."""
    info = extract(media_server.url("/feed.xml"))
    assert [e["id"] for e in info["entries"]] == [g for _, g, _, _ in FEED_ITEMS]
    assert [e["url"] for e in info["entries"]] == [media_server.media_url(n) for n, *_ in FEED_ITEMS]
    assert [media_server.hits(media_server.media[n]) for n, *_ in FEED_ITEMS] == [1, 1, 1]


def test_html_page_with_video(media_server: MediaServer) -> None:
    """An HTML page with a <video> and an <audio>: a playlist of HTML5 entries page-1, page-2 (also when flat)."""
    for flat in (False, True):
        info = extract(media_server.url("/page.html"), **({"extract_flat": "in_playlist"} if flat else {}))
        assert info["_type"] == "playlist" and info["id"] == "page" and info["title"] == "A page with media"
        got = [(e["id"], e["title"], e["url"], e["ext"]) for e in info["entries"]]
        assert got == [
            ("page-1", "A page with media (1)", media_server.media_url("mp4"), "mp4"),
            ("page-2", "A page with media (2)", media_server.media_url("mp3"), "mp3"),
        ]
    assert media_server.hits(media_server.media["mp4"]) == 0  # media URLs come from the HTML, not fetched


def test_captioned_page_subtitles(media_server: MediaServer, media_files: dict[str, Path], tmp_path: Path) -> None:
    """<video> + <track kind=subtitles srclang=en>: info has subtitles["en"]; skip_download fetches only the .vtt."""
    url = media_server.url("/captioned.html")
    info = extract(url)
    assert info.get("_type", "video") == "video" and info["id"] == "captioned-1" and info["extractor"] == "html5"
    assert info["subtitles"] == {"en": [{"url": media_server.media_url("vtt"), "ext": "vtt"}]}
    opts = ydl_opts(tmp_path, skip_download=True, writesubtitles=True, subtitleslangs=["en"])
    with yt_dlp.YoutubeDL(opts) as ydl:
        assert ydl.download([url]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["captioned-1.en.vtt"]
    assert (tmp_path / "captioned-1.en.vtt").read_bytes() == media_files["vtt"].read_bytes()
    assert media_server.hits(media_server.media["vtt"]) == 1
    assert media_server.hits(media_server.media["mp4"], None) == 0


# -- yt-dlp: the faulty routes ------------------------------------------------------------------------------------


def test_404_is_http_error(media_server: MediaServer, tmp_path: Path) -> None:
    """404: DownloadError whose exc_info[1] is networking HTTPError with status 404, at extraction."""
    e = failure(media_server.url("/missing.mp3"), tmp_path)
    err = e.exc_info[1]
    assert type(err) is HTTPError and isinstance(err, RequestError) and not isinstance(err, ExtractorError)
    assert (err.status, err.reason) == (404, "Not Found")
    assert "Unable to download webpage: HTTP Error 404: Not Found" in e.msg and e.msg.startswith("ERROR: [generic]")
    assert media_server.hits("/missing.mp3") == 1


def test_429_then_ok(media_server: MediaServer, tmp_path: Path) -> None:
    """429 + Retry-After on the first request: HTTPError 429 (headers kept); the next attempt downloads."""
    url = media_server.url("/flaky429.mp3")
    err = failure(url, tmp_path).exc_info[1]
    assert isinstance(err, HTTPError) and err.status == 429 and err.reason == "Too Many Requests"
    assert err.response.get_header("Retry-After") == "1"
    assert media_server.hits("/flaky429.mp3") == 1  # retries=0: no retry of the extraction GET
    with yt_dlp.YoutubeDL(ydl_opts(tmp_path)) as ydl:
        assert ydl.download([url]) == 0
    assert (tmp_path / "flaky429.mp3").stat().st_size > 10_000


def test_500_then_ok(media_server: MediaServer, tmp_path: Path) -> None:
    """500 on the first request: HTTPError 500; then OK."""
    url = media_server.url("/flaky500.mp3")
    err = failure(url, tmp_path).exc_info[1]
    assert isinstance(err, HTTPError) and (err.status, err.reason) == (500, "Internal Server Error")
    assert extract(url)["id"] == "flaky500"


def test_429_in_download_stage(media_server: MediaServer, tmp_path: Path) -> None:
    """429 on the downloader's GET (extraction passed): exc_info[1] is still HTTPError 429."""
    e = failure(media_server.url("/late429.mp3"), tmp_path)
    err = e.exc_info[1]
    assert isinstance(err, HTTPError) and err.status == 429
    assert e.msg == "ERROR: unable to download video data: HTTP Error 429: Too Many Requests"
    assert media_server.hits("/late429.mp3") == 2


def test_hang_after_headers_times_out(media_server: MediaServer, tmp_path: Path) -> None:
    """Headers then no body, socket_timeout=2: a download-stage error with NO exc_info, only a message."""
    t0 = time.perf_counter()
    e = failure(media_server.url("/hang.mp3"), tmp_path, socket_timeout=2)
    assert time.perf_counter() - t0 < 6
    assert e.exc_info == (None, None, None)
    assert e.msg.startswith("ERROR: \r[download] Got error: ") and "Read timed out" in e.msg
    assert media_server.hits("/hang.mp3") == 2


def test_stall_before_headers_times_out(media_server: MediaServer, tmp_path: Path) -> None:
    """No answer at all, socket_timeout=2: extraction-stage TransportError (cause: requests ReadTimeout)."""
    t0 = time.perf_counter()
    e = failure(media_server.url("/stall.mp3"), tmp_path, socket_timeout=2)
    assert time.perf_counter() - t0 < 6
    err = e.exc_info[1]
    assert type(err) is TransportError and qualname(err.cause) == "requests.exceptions.ReadTimeout"
    assert "Read timed out" in e.msg and "Unable to download webpage" in e.msg


def test_reset_mid_body(media_server: MediaServer, tmp_path: Path) -> None:
    """RST after 16 KiB of body: download-stage error, no exc_info, message names ConnectionResetError."""
    e = failure(media_server.url("/reset.mp3"), tmp_path)
    assert e.exc_info == (None, None, None)
    assert e.msg.startswith("ERROR: \r[download] Got error: ") and "Connection reset by peer" in e.msg
    parts = list(tmp_path.glob("*.part"))
    assert [p.name for p in parts] == ["reset.mp3.part"] and 0 < parts[0].stat().st_size <= 16 * 1024


def test_reset_then_resume_with_range(media_server: MediaServer, media_files: dict[str, Path], tmp_path: Path) -> None:
    """After a mid-body reset the next run resumes the .part with a Range request (206) and the file is whole."""
    media_server.add_reset("/resume.mp3", media_files["mp3"], times=2)  # extraction + first download GET
    url = media_server.url("/resume.mp3")
    failure(url, tmp_path)
    part = (tmp_path / "resume.mp3.part").stat().st_size
    with yt_dlp.YoutubeDL(ydl_opts(tmp_path)) as ydl:
        assert ydl.download([url]) == 0
    assert (tmp_path / "resume.mp3").read_bytes() == media_files["mp3"].read_bytes()
    ranges = [h.headers.get("Range") for h in media_server.requests if h.path == "/resume.mp3"]
    assert ranges == [None, None, None, f"bytes={part}-"]


def test_reset_before_response(media_server: MediaServer, tmp_path: Path) -> None:
    """RST before any response byte: extraction-stage TransportError (cause: requests ConnectionError)."""
    err = failure(media_server.url("/reset-early.mp3"), tmp_path).exc_info[1]
    assert type(err) is TransportError and qualname(err.cause) == "requests.exceptions.ConnectionError"
    assert "Connection reset by peer" in str(err)


def test_connection_refused(tmp_path: Path) -> None:
    """Nothing listening on the port: extraction-stage TransportError 'Connection refused'."""
    with MediaServer() as srv:
        url = srv.url("/gone.mp3")
    err = failure(url, tmp_path).exc_info[1]
    assert type(err) is TransportError and "Connection refused" in str(err)
    assert qualname(err.cause) == "urllib3.exceptions.NewConnectionError"


def test_page_without_media_is_unsupported(media_server: MediaServer, tmp_path: Path) -> None:
    """An HTML page with no media: UnsupportedError (expected=True), 'Unsupported URL'."""
    e = failure(media_server.url("/notmedia.html"), tmp_path)
    err = e.exc_info[1]
    assert type(err) is UnsupportedError and isinstance(err, ExtractorError) and err.expected is True
    assert e.msg == f"ERROR: Unsupported URL: {media_server.url('/notmedia.html')}"


# -- hostile routes (issue 12) -----------------------------------------------------------------------------------


def test_endless_route_has_no_length_and_never_ends(media_server: MediaServer) -> None:
    """/endless.mp3: 200 audio/mpeg, no Content-Length, as many bytes as the client reads."""
    with urllib.request.urlopen(media_server.url("/endless.mp3"), timeout=5) as r:
        assert r.headers["Content-Type"] == "audio/mpeg" and r.headers["Content-Length"] is None
        got = sum(len(r.read(64 * 1024)) for _ in range(40))
    assert got == 40 * 64 * 1024 and media_server.sent("/endless.mp3") >= got


def test_trickle_route_sends_one_byte_per_interval(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """add_trickle: the full Content-Length up front, then a byte per interval (a read of 5 takes ~5 intervals)."""
    media_server.add_trickle("/t.mp3", media_files["mp3"], every_s=0.05, length=1000)
    t0 = time.perf_counter()
    with urllib.request.urlopen(media_server.url("/t.mp3"), timeout=5) as r:
        assert r.headers["Content-Length"] == "1000"
        assert r.read(5) == media_files["mp3"].read_bytes()[:5]
    assert 0.2 <= time.perf_counter() - t0 < 2
    assert media_server.hits("/trickle.mp3") == 0  # the default route (1 byte per 10 s) is untouched


def test_set_cookie_route(media_server: MediaServer, media_files: dict[str, Path]) -> None:
    """/set-cookie.mp3: the mp3 with Set-Cookie injected=EVIL-SET-COOKIE-777; the request's Cookie is recorded."""
    req = urllib.request.Request(media_server.url("/set-cookie.mp3"), headers={"Cookie": "mine=1"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.headers["Set-Cookie"].startswith("injected=EVIL-SET-COOKIE-777")
        assert r.read() == media_files["mp3"].read_bytes()
    assert media_server.requests[-1].headers["Cookie"] == "mine=1"


def test_redirect_routes(media_server: MediaServer) -> None:
    """/loop.mp3 redirects to itself; /to-loopback2.mp3 to 127.0.0.2 (same port); /to-file.mp3 to file:."""
    class NoFollow(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoFollow)
    for path, target in (("/loop.mp3", "/loop.mp3"),
                         ("/to-loopback2.mp3", f"http://127.0.0.2:{media_server.port}/to-loopback2.mp3"),
                         ("/to-file.mp3", "file:///etc/passwd")):
        with pytest.raises(urllib.error.HTTPError) as info:
            opener.open(media_server.url(path), timeout=5)
        assert info.value.code == 302 and info.value.headers["Location"] == target


@pytest.mark.parametrize(("path", "ctype", "head"), [
    ("/big.zip", "application/zip", b"PK\x03\x04"), ("/big.html", "text/html; charset=utf-8", b"<!DOCTYPE html>"),
    ("/big.bin", "application/octet-stream", b"PK\x03\x04"),
])
def test_big_routes_are_generated_not_stored(media_server: MediaServer, path: str, ctype: str, head: bytes) -> None:
    """2 GB bodies with a Content-Length, made as they are sent: a client reading 64 KB gets about that much."""
    with urllib.request.urlopen(media_server.url(path), timeout=5) as r:
        assert r.headers["Content-Type"] == ctype and r.headers["Content-Length"] == str(2 * 2**30)
        assert r.read(64 * 1024).startswith(head)
    time.sleep(0.2)
    assert media_server.sent(path) < 64 * 2**20  # what the socket buffers took, not 2 GB


def test_server_on_another_loopback_address(media_files: dict[str, Path]) -> None:
    """MediaServer(host="127.0.0.2") listens there, and only there."""
    with MediaServer(host="127.0.0.2") as srv:
        srv.add_file("/a.mp3", media_files["mp3"])
        assert srv.base_url.startswith("http://127.0.0.2:")
        with urllib.request.urlopen(srv.url("/a.mp3"), timeout=5) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/a.mp3", timeout=5)

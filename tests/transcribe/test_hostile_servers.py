"""Hostile servers (issue 12): real yt-dlp, in its child process, against the loopback media server's hostile
routes — cookies that must not be rewritten or printed, endless and trickling bodies, huge non-media files,
redirect loops, a full disk, and redirects into the local network. Small caps keep each test to seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pipeline import errors
from pipeline.config import secrets
from pipeline.engine.core import Engine
from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe.sources import expand
from pipeline.recipes.transcribe.stages import download
from state.models import ItemStatus
from tests.conftest import ROOT, cli_env, sigint_default, wait_for
from tests.media_server import MediaServer

USER_VALUE = "USER-SECRET-VALUE-4242"
COOKIES = (
    "# Netscape HTTP Cookie File\n"
    "# exported by hand: this comment must survive\n"
    "\n"
    f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{USER_VALUE}\n"
    "127.0.0.1\tFALSE\t/\tFALSE\tnot-a-number\tbad_expiry\tBAD-EXPIRY-VALUE-7777\n"
    "#HttpOnly_.example.com\tTRUE\t/\tTRUE\t2000000000\tSID\tHTTPONLY-VALUE-5555\n"
)


def ctx_for(tmp_path: Path, options: dict[str, Any] | None = None, cancel: threading.Event | None = None,
            **kw: Any) -> StageContext:
    flag = cancel or threading.Event()
    opts = {"min_free_disk_mb": 0, **(options or {})}
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage="download", workdir=tmp_path / "item",
                        options=opts, attempt=1, account=kw.pop("account", None), _progress=lambda f: None,
                        _cancelled=flag.is_set, home=tmp_path / "home", **kw)


def fail(url: str, ctx: StageContext) -> tuple[errors.TubemillError, float]:
    t0 = time.monotonic()
    with pytest.raises(errors.TubemillError) as info:
        download.run({"source": url, "meta": {}}, ctx)
    return info.value, time.monotonic() - t0


def files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def ytdlp_children_talking_to(port: int) -> list[int]:
    """Pids of our yt-dlp child processes with a TCP connection to ``port`` (the spares have none)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "pipeline.recipes.transcribe.ytdlp_child" in " ".join(p.cmdline()) and any(
                    c.raddr and c.raddr.port == port for c in p.net_connections(kind="tcp")):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out



# ---------------------------------------------------------------------- cookies
def test_user_cookie_file_is_byte_identical_after_a_batch(make_engine: Callable[..., Engine],
                                                          media_server: MediaServer, tmp_path: Path) -> None:
    """--cookies FILE with comments and a bad-expiry line, against a server that sets cookies: the batch uses
    the cookies, the file is byte-identical afterwards, and the injected cookie is in no file of the home."""
    user = tmp_path / "alice.txt"
    user.write_text(COOKIES)
    before = user.read_bytes()
    home = tmp_path / "home"
    e = make_engine(home=home)
    urls = [media_server.url("/set-cookie.mp3"), media_server.url("/set-cookie.mp3") + "?again=1"]
    e.submit("cookies", [x.to_item() for x in expand("\n".join(urls)).entries], recipe=["download"],
             options={"cookie_files": {"alice": str(user)}, "retry_limit": 0})
    s = e.wait("cookies", timeout=60)
    assert s.counts.get("done") == 2, e.items("cookies")
    assert user.read_bytes() == before
    sent = [h.headers.get("Cookie") or "" for h in media_server.requests if h.path == "/set-cookie.mp3"]
    assert sent and all(f"session={USER_VALUE}" in c for c in sent)  # the copy carried the user's cookie
    # within one call yt-dlp's jar sends the injected cookie back; each new call starts from the user's file
    assert sum("injected=" not in c for c in sent) == 2, sent
    for p in files_under(home):
        assert b"EVIL-SET-COOKIE-777" not in p.read_bytes(), p
    assert not list((home / "secrets" / "cookie-copies").glob("*.txt"))  # every copy was deleted


def test_settings_page_cookie_file_is_unchanged(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                home: Path) -> None:
    """A cookie file saved on the Settings page (a home account) is never rewritten by yt-dlp either."""
    saved = secrets.save_cookie_file(home, "main", COOKIES.encode())
    before = saved.read_bytes()
    e = make_engine()
    e.submit("page", [x.to_item() for x in expand(media_server.url("/set-cookie.mp3")).entries],
             recipe=["download"], options={"retry_limit": 0})
    assert e.wait("page", timeout=60).counts.get("done") == 1, e.items("page")
    assert saved.read_bytes() == before
    hit = next(h for h in media_server.requests if h.path == "/set-cookie.mp3")
    assert f"session={USER_VALUE}" in (hit.headers.get("Cookie") or "")


def test_refreshed_cookies_kept_only_by_choice_and_only_first_party(media_server: MediaServer,
                                                                    media_files: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """keep_refreshed_cookies: a refreshed first-party cookie is kept in Tubemill's copy (and sent next time);
    a third-party Set-Cookie is not; the user's file never changes. Without the option nothing is kept."""
    media_server.add_set_cookie("/refresh.mp3", media_files["mp3"],
                                cookies=("session=REFRESHED-VALUE-99; Domain=.tubemill.invalid; Path=/",))
    user = tmp_path / "mine.txt"
    user.write_text("# Netscape HTTP Cookie File\n.tubemill.invalid\tTRUE\t/\tFALSE\t0\tsession\tOLD-VALUE-1234\n")
    before = user.read_bytes()
    proxy = media_server.base_url  # the media server answers proxied requests by path: a "remote" first party
    remote = "http://media.tubemill.invalid/refresh.mp3"
    third_party = media_server.url("/set-cookie.mp3")
    kept = tmp_path / "home" / "secrets" / "cookie-copies" / "mine.kept.txt"

    def get(url: str, n: int, keep: bool) -> str:
        """Download ``url``; the Cookie header of the call's first request (before any Set-Cookie of its own)."""
        ctx = ctx_for(tmp_path / f"run{n}", {"proxy": proxy, "keep_refreshed_cookies": keep}, cookiefile=str(user),
                      account="mine")
        ctx.home = tmp_path / "home"
        seen = len(media_server.requests)
        download.run({"source": url, "meta": {}}, ctx)
        return media_server.requests[seen].headers.get("Cookie") or ""

    assert "session=OLD-VALUE-1234" in get(remote, 1, keep=False)
    assert not kept.exists()
    get(remote, 2, keep=True)
    get(third_party, 3, keep=True)
    text = kept.read_text()
    assert "REFRESHED-VALUE-99" in text and "OLD-VALUE-1234" not in text and "EVIL-SET-COOKIE-777" not in text
    assert kept.stat().st_mode & 0o777 == 0o600
    assert "session=REFRESHED-VALUE-99" in get(remote, 4, keep=True)
    assert "session=OLD-VALUE-1234" in get(remote, 5, keep=False)  # without the option: the user's file only
    assert user.read_bytes() == before
    user.write_text(user.read_text().replace("OLD-VALUE-1234", "NEW-FROM-USER-5678"))  # a replaced file wins
    assert "session=NEW-FROM-USER-5678" in get(remote, 6, keep=True)


def test_malformed_cookie_values_never_reach_the_terminal(media_server: MediaServer, home: Path,
                                                          tmp_path: Path) -> None:
    """A cookie file with malformed lines: the CLI says which lines (by number) and what is wrong, and no
    cookie value appears anywhere in its output — also with -v, where yt-dlp's own lines are shown."""
    values = ("GOOD-VALUE-1111", "BAD-EXPIRY-2222", "SHORT-LINE-3333", "FLAG-MISMATCH-4444", "SEVEN-EIGHT-5555")
    jar = tmp_path / "bad.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        f"127.0.0.1\tFALSE\t/\tFALSE\t0\tgood\t{values[0]}\n"
        f"127.0.0.1\tFALSE\t/\tFALSE\tsoon\tbad\t{values[1]}\n"
        f"127.0.0.1\tFALSE\t{values[2]}\n"
        f"example.com\tTRUE\t/\tFALSE\t0\tflag\t{values[3]}\n"
        f".example.com\tTRUE\t/\tFALSE\t0\tx\t{values[4]}\textra\n"
    )
    src = tmp_path / "src.txt"
    src.write_text(media_server.url("/missing.mp3") + "\n")  # the jar is loaded, the download fails at once
    res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "-v", "run", str(src),
                          "--recipe", "transcribe", "--captions", "never", "--retry-limit", "0",
                          "--cookies", str(jar)], cwd=ROOT, env=cli_env(home), capture_output=True, text=True,
                         timeout=120)
    out = res.stdout + res.stderr
    assert "line 3: the expiry (field 5) is not a number" in out and "line 4: 3 tab-separated fields" in out
    assert "line 5: field 2" in out and "line 6: 8 tab-separated fields" in out
    assert "404" in out  # the download really ran (its yt-dlp error, redacted, with -v)
    for v in values:
        assert v not in out, v
    hit = next(h for h in media_server.requests if h.path == "/missing.mp3")
    assert values[0] in (hit.headers.get("Cookie") or "")  # the good line was used


# ---------------------------------------------------------------------- caps
def test_endless_stream_stops_at_the_cap(media_server: MediaServer, tmp_path: Path) -> None:
    """An endless body (no Content-Length) stops at max_download_mb and fails as too large; nothing is done."""
    ctx = ctx_for(tmp_path, {"max_download_mb": 1})
    err, took = fail(media_server.url("/endless.mp3"), ctx)
    assert isinstance(err, errors.TooLarge) and not err.retryable
    assert "too large" in str(err) and "1.0 MB per-download cap (max_download_mb)" in str(err)
    assert took < 10
    assert download.find_audio(ctx.tmpdir) is None
    assert sum(p.stat().st_size for p in ctx.tmpdir.iterdir()) <= 2**20  # not a byte past the cap


def test_cap_never_exceeds_the_free_disk_above_the_floor(media_server: MediaServer, tmp_path: Path) -> None:
    """With the governor's floor just under the free disk, the cap is what is left: "disk nearly full",
    retryable later (not "too large"); with no room at all the download does not start."""
    import shutil

    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    ctx = ctx_for(tmp_path, {"min_free_disk_mb": free_mb - 1})  # about 1 MB of room
    err, _ = fail(media_server.url("/endless.mp3"), ctx)
    assert isinstance(err, errors.DiskFull) and err.retryable and err.retry_after >= 300
    assert "disk nearly full" in str(err) and "governor's floor" in str(err)
    media_server.reset_hits()
    err, _ = fail(media_server.url("/media/talk-bravo.mp3"), ctx_for(tmp_path / "b", {"min_free_disk_mb": 2**40}))
    assert isinstance(err, errors.DiskFull) and media_server.hits("/media/talk-bravo.mp3") == 0


def test_trickle_fails_as_stalled_and_retryable(media_server: MediaServer, media_files: dict[str, Path],
                                                tmp_path: Path) -> None:
    """A body trickling under the minimum rate fails after the stall window, retryable (stall_seconds=2)."""
    media_server.add_trickle("/slow.mp3", media_files["mp3"], every_s=0.05)  # 20 B/s
    ctx = ctx_for(tmp_path, {"stall_rate_kbps": 1, "stall_seconds": 2})
    err, took = fail(media_server.url("/slow.mp3"), ctx)
    assert isinstance(err, errors.Stalled) and err.retryable
    assert "stalled: under 1 KB/s for 2 s" in str(err)
    assert 2 <= took < 8


def test_slow_but_alive_transfer_is_not_a_stall(media_server: MediaServer, media_files: dict[str, Path],
                                                tmp_path: Path) -> None:
    """Above the minimum rate a download that takes longer than the window still completes (yt-dlp reads in
    blocks small enough to arrive within the window)."""
    data = media_files["mp3"].read_bytes()[:6000]
    small = tmp_path / "small.mp3"
    small.write_bytes(data)
    media_server.add_trickle("/alive.mp3", small, every_s=0.1, length=len(data), chunk=200)  # 2 KB/s, 3 s
    ctx = ctx_for(tmp_path, {"stall_rate_kbps": 1, "stall_seconds": 1.5})
    out = download.run({"source": media_server.url("/alive.mp3"), "meta": {}}, ctx)
    assert Path(out.artifacts["audio"]).read_bytes() == data


@pytest.mark.parametrize(("path", "needle"), [
    ("/big.zip", "not media (application/zip)"),
    ("/big.html", "not media (text/html)"),
    ("/big.bin", "not media (application/octet-stream: a ZIP archive)"),
])
def test_large_non_media_fails_after_a_few_kb(media_server: MediaServer, tmp_path: Path, path: str,
                                              needle: str) -> None:
    """A 2 GB HTML page or ZIP archive is refused from its content type or first bytes: in seconds, with a
    clear message, after the server sent a few KB (what the socket buffers took), not gigabytes."""
    err, took = fail(media_server.url(path), ctx_for(tmp_path))
    assert isinstance(err, errors.NotMedia) and not err.retryable
    assert needle in str(err), str(err)
    assert took < 8
    assert media_server.sent(path) < 16 * 2**20
    assert not any(p.stat().st_size for p in ctx_for(tmp_path).tmpdir.iterdir())


def test_captions_lookup_is_fenced_too(media_server: MediaServer, media_files: dict[str, Path],
                                       tmp_path: Path) -> None:
    """The captions stage's yt-dlp call runs in the same fence: a 2 GB page is refused at its headers, a page
    that trickles hits the extraction deadline, and a normal captioned page still gives its transcript."""
    from pipeline.recipes.transcribe.stages import captions

    def look(url: str, **options: Any) -> Any:
        ctx = ctx_for(tmp_path / str(len(list(tmp_path.iterdir()))), options)
        ctx.stage = "captions"
        ctx.workdir.mkdir(parents=True)
        return captions.run({"source": url, "meta": {}}, ctx)

    with pytest.raises(errors.NotMedia, match=r"not media \(text/html\): a 2.0 GB page"):
        look(media_server.url("/big.html"))
    media_server.add_trickle("/slow.html", media_files["vtt"], every_s=0.05, length=5000,
                             content_type="text/html")
    t0 = time.monotonic()
    with pytest.raises(errors.Stalled, match="no media after 2 s"):
        look(media_server.url("/slow.html"), extract_timeout_s=2)
    assert time.monotonic() - t0 < 6
    out = look(media_server.url("/captioned.html"))
    assert Path(out.artifacts["json"]).exists() and out.meta["transcript_source"] == "captions"


# ---------------------------------------------------------------------- cancel and interrupt
def _start_trickle_batch(make_engine: Callable[..., Engine], media_server: MediaServer,
                         media_files: dict[str, Path], name: str) -> Engine:
    media_server.add_trickle("/drip.mp3", media_files["mp3"], every_s=10.0)
    e = make_engine()
    e.submit(name, [x.to_item() for x in expand(media_server.url("/drip.mp3")).entries], recipe=["download"],
             options={"retry_limit": 0})
    # running, and the download's own GET (after yt-dlp's extraction GET) is blocked in its first read
    wait_for(lambda: media_server.hits("/drip.mp3") >= 2 and bool(ytdlp_children_talking_to(media_server.port)))
    return e


def test_cancel_stops_a_stalled_read_within_two_seconds(make_engine: Callable[..., Engine],
                                                        media_server: MediaServer, media_files: dict[str, Path]
                                                        ) -> None:
    """Against 1 byte per 10 s, cancel ends the download (its process too) within about 2 s."""
    e = _start_trickle_batch(make_engine, media_server, media_files, "drip")
    t0 = time.monotonic()
    e.cancel("drip")
    s = e.wait("drip", timeout=10)
    took = time.monotonic() - t0
    assert s.state == "cancelled" and e.items("drip")[0]["status"] == ItemStatus.CANCELLED
    assert not ytdlp_children_talking_to(media_server.port)
    assert took < 2.0, took


def test_interrupt_stops_a_stalled_read_and_keeps_the_item(make_engine: Callable[..., Engine],
                                                           media_server: MediaServer,
                                                           media_files: dict[str, Path]) -> None:
    """Shutting the engine down (Ctrl-C in the app or CLI) stops a stalled download within about 2 s; the item
    goes back to pending without spending an attempt."""
    from state.reader import find_summary, read_batch

    e = _start_trickle_batch(make_engine, media_server, media_files, "drip2")
    t0 = time.monotonic()
    e.shutdown(interrupt=True, timeout=10)
    assert time.monotonic() - t0 < 2.5
    assert not ytdlp_children_talking_to(media_server.port)
    [item] = read_batch(e.home, find_summary(e.home, "drip2").id)[1]
    assert item["status"] == ItemStatus.PENDING and not item.get("attempts")


def test_pause_stops_a_stalled_read_and_resume_runs_it_again(make_engine: Callable[..., Engine],
                                                             media_server: MediaServer,
                                                             media_files: dict[str, Path]) -> None:
    """Pause frees the account from a stalled download within about 2 s (the item waits in the queue, no
    attempt spent); resume starts it again."""
    e = _start_trickle_batch(make_engine, media_server, media_files, "drip3")
    t0 = time.monotonic()
    e.pause("drip3")
    wait_for(lambda: not e.summary("drip3").counts["running"])
    assert time.monotonic() - t0 < 2.5 and not ytdlp_children_talking_to(media_server.port)
    (item,) = e.items("drip3")
    assert item["status"] == ItemStatus.PENDING and not item.get("attempts")
    hits = media_server.hits("/drip.mp3")
    e.resume("drip3")
    wait_for(lambda: media_server.hits("/drip.mp3") > hits)  # it runs again
    e.cancel("drip3")
    assert e.wait("drip3", timeout=10).state == "cancelled"


def test_a_trickling_feed_does_not_hold_the_listing(media_server: MediaServer, media_files: dict[str, Path]
                                                     ) -> None:
    """A feed sent a byte every few seconds is reported failed after the listing deadline; the other lines
    are listed and the run goes on."""
    from pipeline.recipes.transcribe.sources import expand

    media_server.add_trickle("/slow/feed.xml", media_files["mp3"], every_s=3.0, content_type="application/rss+xml")
    t0 = time.monotonic()
    x = expand("\n".join([media_server.url("/slow/feed.xml"), media_server.url("/feed.xml")]),
               ydl_opts={"listing_timeout_s": 1.5})
    assert time.monotonic() - t0 < 10
    assert any("longer than 2 s" in why or "longer than 1 s" in why for _, why in x.failed), x.failed
    assert len(x.entries) >= 3


def test_ctrl_c_in_the_cli_stops_a_stalled_download(media_server: MediaServer, media_files: dict[str, Path],
                                                    home: Path, tmp_path: Path) -> None:
    """`tubemill run` on a trickling server: Ctrl-C ends the process within a few seconds, and no yt-dlp child
    is left talking to the server."""
    media_server.add_trickle("/drip.mp3", media_files["mp3"], every_s=10.0)
    src = tmp_path / "src.txt"
    src.write_text(media_server.url("/drip.mp3") + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(src),
                             "--captions", "never"], cwd=ROOT, env=cli_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        wait_for(lambda: media_server.hits("/drip.mp3") >= 2, timeout=60)
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 4.0, took
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    time.sleep(0.2)
    child = "pipeline.recipes.transcribe.ytdlp_child"
    left = [p for p in psutil.process_iter(["cmdline"]) if child in " ".join(p.info["cmdline"] or [])
            and any(c.raddr and c.raddr.port == media_server.port for c in _conns(p))]
    assert not left


def _conns(p: psutil.Process) -> list[Any]:
    try:
        return list(p.net_connections(kind="tcp"))
    except psutil.Error:
        return []


# ---------------------------------------------------------------------- messages
def test_redirect_loop_says_too_many_redirects(media_server: MediaServer, tmp_path: Path) -> None:
    """A redirect loop fails permanently with "too many redirects" (it used to say "HTTP 302: Found")."""
    err, _ = fail(media_server.url("/loop.mp3"), ctx_for(tmp_path))
    assert isinstance(err, errors.TooManyRedirects) and not err.retryable
    assert str(err).startswith("too many redirects") and "302" not in str(err)


def test_full_disk_says_disk_full(media_server: MediaServer, tmp_path: Path) -> None:
    """ENOSPC while writing (the .part file is /dev/full) says "disk full", not a network error, and waits
    before its retry instead of hammering the disk."""
    ctx = ctx_for(tmp_path)
    (ctx.tmpdir / "audio.mp3.part").symlink_to("/dev/full")
    err, _ = fail(media_server.media_url("mp3"), ctx)
    assert isinstance(err, errors.DiskFull) and not isinstance(err, errors.NetworkError)
    assert str(err).startswith("disk full") and "connection" not in str(err)
    assert err.retryable and err.retry_after >= 300


# ---------------------------------------------------------------------- outbound safety
@pytest.fixture
def second_loopback(media_files: dict[str, Path]) -> Iterator[MediaServer]:
    """A media server on 127.0.0.2: another loopback host."""
    srv = MediaServer(host="127.0.0.2").start()
    srv.add_file("/other.mp3", media_files["mp3"])
    try:
        yield srv
    finally:
        srv.stop()


def test_redirect_to_another_loopback_address_is_refused(media_server: MediaServer, second_loopback: MediaServer,
                                                         tmp_path: Path) -> None:
    """A source on 127.0.0.1 redirecting to 127.0.0.2 (another local host): refused before any request reaches
    it, saying why and which setting allows it."""
    media_server.add_redirect("/hop.mp3", second_loopback.url("/other.mp3"))
    err, _ = fail(media_server.url("/hop.mp3"), ctx_for(tmp_path))
    assert isinstance(err, errors.OutboundRefused) and not err.retryable
    assert "refused a redirect from 127.0.0.1 to 127.0.0.2, a loopback address" in str(err)
    assert "allow_private_redirects" in str(err)
    assert second_loopback.hits("/other.mp3", None) == 0


def test_allow_private_redirects_follows_it(media_server: MediaServer, second_loopback: MediaServer,
                                            tmp_path: Path) -> None:
    """With allow_private_redirects the same redirect is followed and the media downloaded."""
    media_server.add_redirect("/hop.mp3", second_loopback.url("/other.mp3"))
    out = download.run({"source": media_server.url("/hop.mp3"), "meta": {}},
                       ctx_for(tmp_path, {"allow_private_redirects": True}))
    assert Path(out.artifacts["audio"]).stat().st_size > 0 and second_loopback.hits("/other.mp3") >= 1


def test_same_host_redirect_is_still_followed(media_server: MediaServer, tmp_path: Path) -> None:
    """A local source redirecting within itself (the default /redirect.mp3) works as before."""
    out = download.run({"source": media_server.url("/redirect.mp3"), "meta": {}}, ctx_for(tmp_path))
    assert Path(out.artifacts["audio"]).stat().st_size > 0


@pytest.mark.parametrize("target", ["http://127.0.0.1:{port}/media/talk-bravo.mp3", "http://10.1.2.3/x.mp3",
                                    "http://169.254.169.254/latest/meta-data/", "http://[::1]:{port}/x.mp3",
                                    "http://192.168.1.1/x.mp3"])
def test_remote_source_redirecting_into_the_local_network_is_refused(media_server: MediaServer, tmp_path: Path,
                                                                     target: str) -> None:
    """A remote source (a name, reached through a proxy) redirecting to loopback, link-local or private addresses
    is refused, and nothing is sent there."""
    media_server.add_redirect("/bounce.mp3", target.format(port=media_server.port))
    ctx = ctx_for(tmp_path, {"proxy": media_server.base_url, "socket_timeout": 3})
    err, took = fail("http://media.tubemill.invalid/bounce.mp3", ctx)
    assert isinstance(err, errors.OutboundRefused), (type(err), err)
    assert "refused a redirect from media.tubemill.invalid" in str(err)
    assert "the source is not on a local address" in str(err)
    assert media_server.hits("/media/talk-bravo.mp3", None) == 0 and took < 8


def test_file_url_is_never_a_redirect_target(media_server: MediaServer, tmp_path: Path) -> None:
    """A redirect to file:///etc/passwd is refused, whatever allow_private_redirects says."""
    err, _ = fail(media_server.url("/to-file.mp3"), ctx_for(tmp_path, {"allow_private_redirects": True}))
    assert isinstance(err, errors.OutboundRefused) and "to a file: URL" in str(err)
    assert not any(b"root:" in p.read_bytes() for p in files_under(tmp_path))


def test_yt_dlp_child_writes_nothing_to_the_terminal(media_server: MediaServer, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    """Whatever yt-dlp prints stays in the child: a failing download leaves the test's own stdout/stderr empty."""
    fail(media_server.url("/missing.mp3"), ctx_for(tmp_path))
    out, err_text = capfd.readouterr()
    assert out == "" and err_text == ""

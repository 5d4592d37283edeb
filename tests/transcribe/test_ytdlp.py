"""pipeline/ytdlp.py: the JS runtime found without an activated venv, pass-through options, accounts' cookies and
proxies, and the classifier on YouTube's real wording — all through real yt-dlp, on loopback.

YouTube itself is out of reach here, so ``LoopTubeIE`` is a yt-dlp extractor named ``youtube`` (a subclass of
yt-dlp's own ``YoutubeBaseInfoExtractor``) that answers a loopback URL the way the real ``YoutubeIE`` answers a
video whose playability status carries ``reason``: ``raise_no_formats(reason, expected=True)``, with the same
login hint appended when the reason mentions signing in, ``raise_geo_restricted`` for a geo block, and only
storyboard formats when JS challenges were not solved. The reasons are YouTube's strings as yt-dlp reports them
(its issue tracker and ``extractor/youtube/_video.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yt_dlp
from yt_dlp.extractor.youtube._base import YoutubeBaseInfoExtractor
from yt_dlp.networking import Response
from yt_dlp.networking.exceptions import HTTPError
from yt_dlp.utils import remove_end

from pipeline import errors
from pipeline.engine.stage import StageContext
from pipeline.recipes.transcribe import ytdlp
from pipeline.recipes.transcribe.sources import Filters, expand
from pipeline.recipes.transcribe.stages import download
from tests.conftest import ROOT
from tests.media_server import MediaServer

BARE_PATH = "/usr/bin:/bin"  # no venv on PATH: what a desktop launcher, systemd or a Dask worker may see


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH=BARE_PATH, **extra)
    return env


def ctx_for(tmp_path: Path, options: dict[str, Any] | None = None, **kw: Any) -> StageContext:
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage="download", workdir=tmp_path,
                        options=options or {}, attempt=1, account=kw.pop("account", None),
                        _progress=lambda f: None, _cancelled=lambda: False, home=tmp_path, **kw)


# ---------------------------------------------------------------------- the JS runtime
def test_js_runtime_found_with_a_bare_path() -> None:
    """With PATH=/usr/bin:/bin and no activated venv, our lookup still finds the venv's deno."""
    code = "from pipeline.recipes.transcribe.ytdlp import js_runtime; print(js_runtime())"
    out = subprocess.run([sys.executable, "-c", code],
                         cwd=ROOT, env=bare_env(), capture_output=True, text=True, timeout=60, check=True)
    path = out.stdout.strip()
    assert path.endswith("/deno") and os.access(path, os.X_OK)
    assert Path(path).parent == Path(sys.executable).parent


def test_ytdlp_cli_reports_deno_with_a_bare_path() -> None:
    """`yt-dlp -v` from the venv with PATH=/usr/bin:/bin prints a JS runtime (its debug header comes before
    the connection to a closed port fails)."""
    exe = Path(sys.executable).parent / "yt-dlp"
    res = subprocess.run([str(exe), "-v", "--simulate", "http://127.0.0.1:1/x"], env=bare_env(),
                         capture_output=True, text=True, timeout=60)
    line = next(ln for ln in res.stderr.splitlines() if "JS runtimes:" in ln)
    assert "deno-" in line, line
    assert "yt_dlp_ejs-" in res.stderr  # the EJS scripts, among the optional libraries


def test_base_options_name_deno_and_ytdlp_uses_it(tmp_path: Path) -> None:
    """ydl_base_options passes js_runtimes with the path; a YoutubeDL built from them reports that deno."""
    opts = ytdlp.ydl_base_options(ctx_for(tmp_path))
    assert opts["js_runtimes"] == {"deno": {"path": ytdlp.js_runtime()}}
    lines: list[str] = []

    class Collect(ytdlp.YtdlpLogger):
        def debug(self, msg: str) -> None:
            lines.append(msg)

    with yt_dlp.YoutubeDL({**opts, "logger": Collect(), "verbose": True, "quiet": False}):
        pass
    header = next(ln for ln in lines if "JS runtimes:" in ln)
    assert "deno-" in header and "none" not in header


def test_dask_worker_process_finds_deno() -> None:
    """A Dask worker process (started by a LocalCluster from a bare-PATH parent) finds the same deno."""
    code = (
        "from distributed import Client, LocalCluster\n"
        "from pipeline.recipes.transcribe.ytdlp import js_runtime\n"
        "with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host='127.0.0.1',\n"
        "                  dashboard_address=None) as c, Client(c) as cl:\n"
        "    import os\n"
        "    print(cl.submit(js_runtime, pure=False).result(timeout=60))\n"
        "    print(cl.submit(os.getpid, pure=False).result(timeout=60), os.getpid())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=bare_env(), capture_output=True, text=True,
                         timeout=120, check=True)
    path, pids = out.stdout.strip().splitlines()[-2:]
    worker_pid, parent_pid = pids.split()
    assert worker_pid != parent_pid  # it really ran in another process
    assert path.endswith("/deno") and Path(path).parent == Path(sys.executable).parent


# ---------------------------------------------------------------------- pass-through options
@pytest.mark.parametrize(("text", "key", "value"), [
    ("socket_timeout=45", "socket_timeout", 45),
    ("geo_bypass=true", "geo_bypass", True),
    ("sleep_interval_requests=1.5", "sleep_interval_requests", 1.5),
    ("http_chunk_size=10485760", "http_chunk_size", 10485760),
    ("format_sort=[\"abr\", \"asr\"]", "format_sort", ["abr", "asr"]),
    ("source_address=0.0.0.0", "source_address", "0.0.0.0"),
    ("user_agent=Mozilla/5.0 (X11)", "user_agent", "Mozilla/5.0 (X11)"),
    ('extractor-args={"youtube": {"player_client": "default,web_safari"}}', "extractor_args",
     {"youtube": {"player_client": ["default", "web_safari"]}}),
    ('extractor_args={"YouTube": {"player_client": ["tv"], "skip": ["dash", "hls"]}}', "extractor_args",
     {"youtube": {"player_client": ["tv"], "skip": ["dash", "hls"]}}),
])
def test_parse_ytdlp_option(text: str, key: str, value: Any) -> None:
    """KEY=VALUE: JSON when it parses, else the string; extractor_args become yt-dlp's lists of strings."""
    assert ytdlp.parse_ytdlp_option(text) == (key, value)


@pytest.mark.parametrize(("text", "needle"), [
    ("cookiefile=/tmp/c.txt", "--cookies"),
    ("cookiesfrombrowser=[\"chrome\"]", "--cookies-from-browser"),
    ("proxy=socks5://h:1", "--proxy"),
    ("wait_for_video=[60, 600]", "--wait-for-live"),
    ("outtmpl=x", "names its own files"),
    ("no-equals-sign", "KEY=VALUE"),
    ("Bad Key=1", "parameter name"),
    ("extractor_args=[1]", "JSON object"),
])
def test_engine_owned_or_malformed_options_are_refused(text: str, needle: str) -> None:
    """Options the engine sets itself are refused with what to use instead."""
    with pytest.raises(errors.InvalidInput) as info:
        ytdlp.parse_ytdlp_option(text)
    assert needle in str(info.value)


def test_passthrough_layers_and_account_identity(tmp_path: Path) -> None:
    """[ytdlp] < batch options (objects merge); the account's cookies or browser and proxy are set last."""
    settings = {"extractor_args": {"youtube": {"player_client": ["tv"]}}, "http_headers": {"X-A": "1"},
                "socket_timeout": 45}
    batch = {"extractor_args": {"youtube": {"skip": ["dash"]}, "generic": {"impersonate": ["chrome"]}},
             "http_headers": {"X-B": "2"}, "socket_timeout": 50}
    alice = tmp_path / "alice.txt"
    alice.write_text("# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t0\tSID\tvalue-123456\n")
    ctx = ctx_for(tmp_path, {"ytdlp_options": batch, "proxy": "http://batch:8080"}, ytdlp=settings,
                  cookiefile=str(alice), proxy="socks5://u:p@10.0.0.2:1080", account="alice")
    opts = ytdlp.ydl_base_options(ctx)
    assert opts["extractor_args"] == {"youtube": {"player_client": ["tv"], "skip": ["dash"]},
                                      "generic": {"impersonate": ["chrome"]}}
    assert opts["http_headers"] == {"X-A": "1", "X-B": "2"} and opts["socket_timeout"] == 50
    copy = Path(opts["cookiefile"])  # a private copy under the home, never the user's file
    assert copy != alice and copy.parent == tmp_path / "secrets" / "cookie-copies" and "cookiesfrombrowser" not in opts
    assert copy.read_bytes() == alice.read_bytes() and copy.stat().st_mode & 0o777 == 0o600
    ytdlp.release_options(ctx, opts)
    assert not copy.exists()
    assert opts["proxy"] == "socks5://u:p@10.0.0.2:1080"  # the account's own proxy wins over the batch's

    browser = ytdlp.ydl_base_options(ctx_for(tmp_path, {"proxy": "http://batch:8080"},
                                             browser="firefox+gnomekeyring:default-release::Work"))
    assert browser["cookiesfrombrowser"] == ("firefox", "default-release", "GNOMEKEYRING", "Work")
    assert browser["proxy"] == "http://batch:8080" and "cookiefile" not in browser


def test_engine_owned_keys_in_settings_are_dropped(tmp_path: Path) -> None:
    """A cookiefile smuggled into the layers never replaces the account's."""
    opts = ytdlp.ydl_base_options(ctx_for(tmp_path, {"ytdlp_options": {"cookiefile": "/evil.txt"}},
                                          ytdlp={"proxy": "http://x:1"}))
    assert "cookiefile" not in opts and "proxy" not in opts


def test_redaction_hides_secrets() -> None:
    """Secret keys, secret headers and passwords in URLs never reach a log line."""
    shown = ytdlp.redact_ytdlp_options({
        "username": "userQ1", "password": "pwQ2", "videopassword": "vQ3", "ap_password": "apQ4",
        "proxy": "socks5://u:pQ5@h:1",
        "http_headers": {"Authorization": "Bearer abcQ6", "Cookie": "SID=Q7", "X-Api-Key": "keyQ8", "Accept": "*/*"},
        "extractor_args": {"youtube": {"po_token": ["web.gvs+SECRET"], "player_client": ["tv"]}},
        "referer": "https://user:hunter2@example.com/page",
    })
    text = json.dumps(shown)
    for secret in ("userQ1", "pwQ2", "vQ3", "apQ4", "pQ5", "abcQ6", "Q7", "keyQ8", "SECRET", "hunter2"):
        assert secret not in text, secret
    assert shown["http_headers"]["Accept"] == "*/*" and shown["extractor_args"]["youtube"]["player_client"] == ["tv"]
    assert ytdlp.redact_url("proxy socks5://u:pa55@10.0.0.2:1080 failed") == "proxy socks5://***@10.0.0.2:1080 failed"


@pytest.mark.parametrize(("spec", "tup", "name"), [
    ("firefox", ("firefox", None, None, None), "firefox"),
    ("Chrome:Profile 1", ("chrome", "Profile 1", None, None), "chrome-Profile-1"),
    ("chromium+basictext:Default", ("chromium", "Default", "BASICTEXT", None), "chromium-Default"),
    ("firefox::Work", ("firefox", None, None, "Work"), "firefox-Work"),
])
def test_browser_specs_parse_like_ytdlp(spec: str, tup: tuple[Any, ...], name: str) -> None:
    """--cookies-from-browser specs parse to yt-dlp's tuple, and name an account readably."""
    assert ytdlp.parse_browser_spec(spec) == tup
    assert ytdlp.browser_account_name(spec) == name


def test_browser_and_keyring_lists_match_ytdlp() -> None:
    """Our copy of yt-dlp's supported browsers and keyrings (kept to load settings without yt-dlp) is current."""
    from yt_dlp.cookies import SUPPORTED_BROWSERS, SUPPORTED_KEYRINGS

    assert set(SUPPORTED_BROWSERS) == ytdlp.BROWSERS and set(SUPPORTED_KEYRINGS) == ytdlp.KEYRINGS
    with pytest.raises(errors.InvalidInput, match="unsupported browser"):
        ytdlp.parse_browser_spec("netscape")
    with pytest.raises(errors.InvalidInput, match="proxy"):
        ytdlp.check_proxy("ftp://u:secretpw@host:21")
    try:
        ytdlp.check_proxy("ftp://u:secretpw@host:21")
    except errors.InvalidInput as exc:
        assert "secretpw" not in str(exc)


# ---------------------------------------------------------------------- options reach yt-dlp, on loopback
def test_stage_passthrough_and_proxy_reach_the_wire(media_server: MediaServer, tmp_path: Path) -> None:
    """The download stage sends [ytdlp] and --ytdlp-option headers, through the account's proxy (with its
    credentials), and logs nothing of the password."""
    media = media_server.media_url("mp3")
    path = urllib.parse.urlsplit(media).path
    unreachable = "http://media.tubemill.invalid" + path  # only the proxy can answer this
    ctx = ctx_for(tmp_path, {"ytdlp_options": {"http_headers": {"X-Batch": "b1"}}},
                  ytdlp={"http_headers": {"X-Settings": "s1"}},
                  proxy=f"http://alice:hunter2@127.0.0.1:{media_server.port}", account="alice")
    result = download.run({"source": unreachable, "meta": {}}, ctx)
    assert Path(result.artifacts["audio"]).stat().st_size > 0
    hits = [h for h in media_server.requests if h.path == path]
    assert hits and all(h.headers.get("X-Batch") == "b1" and h.headers.get("X-Settings") == "s1" for h in hits)
    assert hits[0].headers.get("Proxy-Authorization", "").startswith("Basic ")


def test_listing_uses_the_same_options(media_server: MediaServer) -> None:
    """sources.expand with listing_options sends the pass-through headers and goes through the batch proxy."""
    feed = "http://feeds.tubemill.invalid/feed.xml"
    x = expand(feed, Filters(), ydl_opts=ytdlp.listing_options({"http_headers": {"X-Settings": "s"}},
                                                               {"http_headers": {"X-Batch": "b"}},
                                                               proxy=media_server.base_url))
    assert not x.failed and len(x.entries) == 3
    hit = next(h for h in media_server.requests if h.path == "/feed.xml")
    assert hit.headers.get("X-Settings") == "s" and hit.headers.get("X-Batch") == "b"


# ---------------------------------------------------------------------- the classifier, YouTube's wording
LOGIN_HINT_REASONS = ("sign in",)


class LoopTubeIE(YoutubeBaseInfoExtractor):
    """Answers ``http://127.0.0.1:PORT/watch?v=ID&reason=…`` like YoutubeIE answers an unplayable video."""

    IE_NAME = "youtube"
    _VALID_URL = r"https?://127\.0\.0\.1:\d+/watch\?v=(?P<id>[\w-]+)&reason=(?P<reason>.*)"

    def _real_extract(self, url: str) -> dict[str, Any]:
        video_id, reason = self._match_valid_url(url).group("id", "reason")
        reason = urllib.parse.unquote(reason)
        self._download_webpage(url, video_id)  # a real request to the loopback server
        if reason == "geo":
            self.raise_geo_restricted("The uploader has not made this video available in your country",
                                      countries=["US"])
        if reason == "storyboards":  # what YouTube offers when the n/sig challenges were not solved
            return {"id": video_id, "title": "t", "formats": [
                {"format_id": "sb0", "url": "http://127.0.0.1:1/sb/M0.jpg", "ext": "mhtml", "protocol": "mhtml",
                 "vcodec": "none", "acodec": "none", "format_note": "storyboard"}]}
        if "sign in" in reason.lower():  # the same wording YoutubeIE._real_extract builds
            reason = f"{remove_end(reason.strip(), '.')}. {self._youtube_login_hint}"
        self.raise_no_formats(reason, expected=True)
        raise AssertionError("not reached")


def youtube_error(server: MediaServer, reason: str) -> yt_dlp.utils.DownloadError:
    server.add_text("/watch", "<html><body>player</body></html>", "text/html")
    ydl = yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": ytdlp.YtdlpLogger(),
                            "format": "bestaudio/best", **ytdlp.common_options()})
    ydl.add_info_extractor(LoopTubeIE(ydl))
    url = f"{server.base_url}/watch?v=dQw4w9WgXcQ&reason={urllib.parse.quote(reason)}"
    with pytest.raises(yt_dlp.utils.DownloadError) as info:
        ydl.extract_info(url, download=False, ie_key="LoopTube")
    assert "[youtube] dQw4w9WgXcQ:" in str(info.value)
    return info.value


NOW = 1_800_000_000.0


@pytest.mark.parametrize(("reason", "kind", "needles"), [
    ("Sign in to confirm you’re not a bot", errors.BotCheck, ("cookies", "PO-token")),
    ("Sign in to confirm you're not a bot. This helps protect our community. Learn more", errors.BotCheck,
     ("cookies", "PO-token")),
    ("Private video. Sign in if you've been granted access to this video", errors.PrivateVideo, ("--cookies",)),
    ("Video unavailable. This video is private", errors.PrivateVideo, ("--cookies",)),
    ("Join this channel to get access to members-only content like this video, and other exclusive perks.",
     errors.MembersOnly, ("member",)),
    ("Join this channel from your computer or Android app to get access to members-only content like this video.",
     errors.MembersOnly, ("member",)),
    ("This video is available to this channel's members on level: Tier 1 (or any higher level). Join this channel "
     "to get access to members-only content and other exclusive perks.", errors.MembersOnly, ("member",)),
    ("Sign in to confirm your age. This video may be inappropriate for some users.", errors.AgeRestricted,
     ("age-verified", "--cookies")),
    ("Video unavailable. This video has been removed by the uploader", errors.Unavailable, ("removed",)),
    ("Video unavailable. This video is no longer available because the YouTube account associated with this video "
     "has been terminated.", errors.Unavailable, ("terminated",)),
    ("Video unavailable. This video is no longer available due to a copyright claim by Some Label",
     errors.Unavailable, ("copyright",)),
    ("This content isn't available, try again later.", errors.RateLimited, ("up to an hour",)),
    ("geo", errors.GeoBlocked, ("--proxy", "available in United States")),
])
def test_youtube_outcomes_anonymous(media_server: MediaServer, reason: str, kind: type, needles: tuple[str, ...]
                                    ) -> None:
    """Each YouTube outcome maps to its class, with an actionable message and no yt-dlp boilerplate."""
    err = ytdlp.classify_ytdlp_error(youtube_error(media_server, reason), now=NOW)
    assert type(err) is kind, (type(err), err)
    for n in needles:
        assert n in str(err), str(err)
    assert "wiki/FAQ" not in str(err)
    permanent = kind in (errors.PrivateVideo, errors.MembersOnly, errors.AgeRestricted, errors.Unavailable,
                         errors.GeoBlocked)
    assert err.retryable is not permanent


def test_signed_in_outcomes_name_the_account(media_server: MediaServer) -> None:
    """With a signed-in account the message says what that account lacks; a bot check cools that account."""
    bot = ytdlp.classify_ytdlp_error(youtube_error(media_server, "Sign in to confirm you’re not a bot"), "alice")
    assert isinstance(bot, errors.BotCheck) and bot.account == "alice" and bot.retry_after == 900
    age = ytdlp.classify_ytdlp_error(youtube_error(
        media_server, "Sign in to confirm your age. This video may be inappropriate for some users."), "alice")
    assert isinstance(age, errors.AgeRestricted) and "alice" in str(age) and age.needs_account
    members = ytdlp.classify_ytdlp_error(youtube_error(
        media_server, "Join this channel to get access to members-only content like this video, and other exclusive "
                      "perks."), "alice")
    assert "alice is not a member" in str(members)


@pytest.mark.parametrize(("reason", "delta"), [
    ("This live event will begin in 3 hours.", 3 * 3600),
    ("This live event will begin in 2 days.", 2 * 86400),
    ("This live event will begin in 45 minutes.", 45 * 60),
    ("This live event will begin in a few moments.", 60),
    ("Premieres in 6 hours", 6 * 3600),
    ("Premieres in 1 day", 86400),
    ("Premiere will begin shortly", 60),
])
def test_upcoming_live_and_premieres(media_server: MediaServer, reason: str, delta: float) -> None:
    """Not-yet-live streams and premieres are NotYetLive with the time they start (as precise as the text)."""
    err = ytdlp.classify_ytdlp_error(youtube_error(media_server, reason), now=NOW)
    assert isinstance(err, errors.NotYetLive) and not err.retryable
    assert err.starts_at == pytest.approx(NOW + delta)
    assert err.retry_at(NOW) == pytest.approx(max(NOW + delta, NOW + 60))
    assert "not live yet" in str(err) and ("UTC" in str(err) or "in a moment" in str(err))


def test_upcoming_without_a_time_and_check_live() -> None:
    """No time in the text: starts_at None, rechecked later; info dicts: is_upcoming and is_live raise."""
    err = ytdlp.classify_ytdlp_error(yt_dlp.utils.DownloadError(
        "ERROR: [youtube] abcdefghijk: This live event will begin at some point"), now=NOW)
    assert isinstance(err, errors.NotYetLive)
    assert err.starts_at is None and err.retry_at(NOW) == NOW + errors.NotYetLive.recheck_s
    with pytest.raises(errors.NotYetLive) as info:
        ytdlp.check_live({"live_status": "is_upcoming", "release_timestamp": NOW + 7200}, now=NOW)
    assert info.value.starts_at == NOW + 7200
    with pytest.raises(errors.NotYetLive, match="live now"):
        ytdlp.check_live({"live_status": "is_live"}, now=NOW)
    ytdlp.check_live({"live_status": "was_live"}, now=NOW)
    ytdlp.check_live({"live_status": "not_live"}, now=NOW)


def test_no_formats_on_youtube_without_a_js_runtime(media_server: MediaServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Storyboards only: with no JS runtime the message says so; with deno it points at the challenge/PO token."""
    exc = youtube_error(media_server, "storyboards")
    assert "Requested format is not available" in str(exc)
    with_deno = ytdlp.classify_ytdlp_error(exc)
    assert isinstance(with_deno, errors.NoAudio) and "PO token" in str(with_deno)
    monkeypatch.setattr(ytdlp, "js_runtime", lambda: None)
    missing = ytdlp.classify_ytdlp_error(exc)
    assert isinstance(missing, errors.MissingJsRuntime) and not missing.retryable
    assert str(missing).startswith("no JavaScript runtime found:") and "pip install deno" in str(missing)


def test_no_formats_elsewhere_stays_no_audio(media_server: MediaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-YouTube "Requested format is not available" never blames the JS runtime."""
    monkeypatch.setattr(ytdlp, "js_runtime", lambda: None)
    with pytest.raises(yt_dlp.utils.DownloadError) as info, yt_dlp.YoutubeDL(
            {"quiet": True, "logger": ytdlp.YtdlpLogger(), "format": "bestvideo"}) as ydl:
        ydl.extract_info(media_server.media_url("mp3"), download=False)
    err = ytdlp.classify_ytdlp_error(info.value)
    assert type(err) is errors.NoAudio and "JavaScript" not in str(err)


def test_googlevideo_403_does_not_disable_the_account() -> None:
    """A 403 from YouTube's media servers is the JS challenge or PO token, not the account's cookies."""
    resp = Response(fp=None, url="https://rr3---sn-4g5e6nsz.googlevideo.com/videoplayback?expire=1", headers={},
                    status=403, reason="Forbidden")
    err = ytdlp.classify_ytdlp_error(yt_dlp.utils.DownloadError("ERROR: unable to download video data: HTTP Error "
                                                                "403: Forbidden", (HTTPError, HTTPError(resp), None)),
                                     "alice")
    assert type(err) is errors.RetryableError and "PO token" in str(err)
    other = Response(fp=None, url="https://example.com/v.mp3", headers={}, status=403, reason="Forbidden")
    refused = ytdlp.classify_ytdlp_error(yt_dlp.utils.DownloadError("ERROR: HTTP Error 403: Forbidden",
                                                                    (HTTPError, HTTPError(other), None)), "alice")
    assert isinstance(refused, errors.AuthFailed) and refused.account == "alice"


def test_loopback_errors_keep_their_classes(media_server: MediaServer) -> None:
    """The generic paths still classify as before: 404, 429 with Retry-After, unsupported URL, refused port."""
    def fail(url: str) -> errors.TubemillError:
        with pytest.raises(yt_dlp.utils.DownloadError) as info, yt_dlp.YoutubeDL(
                {"quiet": True, "logger": ytdlp.YtdlpLogger(), "retries": 0, "extractor_retries": 0}) as ydl:
            ydl.extract_info(url, download=False)
        return ytdlp.classify_ytdlp_error(info.value, "alice")

    assert isinstance(fail(media_server.url("/missing.mp3")), errors.NotFound)
    limited = fail(media_server.url("/flaky429.mp3"))
    assert isinstance(limited, errors.RateLimited) and limited.retry_after == 1.0 and limited.account == "alice"
    assert isinstance(fail(media_server.url("/notmedia.html")), errors.Unsupported)
    assert isinstance(fail("http://127.0.0.1:1/x.mp3"), errors.NetworkError)


# ---------------------------------------------------------------------- settings and hints
def test_settings_ytdlp_and_accounts_tables_round_trip(tmp_path: Path) -> None:
    """[ytdlp] (nested values as inline tables) and [accounts.NAME] load, validate and save back unchanged."""
    from pipeline.config.settings import load_settings, save_settings

    (tmp_path / "settings.toml").write_text(
        '[ytdlp]\nextractor_args = { youtube = { player_client = "default,web_safari" } }\nsocket_timeout = 45\n'
        'http_headers = { "Accept-Language" = "en-US" }\n\n'
        '[accounts.alice]\nproxy = "socks5://u:p@10.0.0.2:1080"\n\n'
        '[accounts."ff.main"]\ncookies_from_browser = "firefox:default-release"\n')
    s = load_settings(tmp_path)
    assert s.ytdlp == {"extractor_args": {"youtube": {"player_client": ["default", "web_safari"]}},
                       "socket_timeout": 45, "http_headers": {"Accept-Language": "en-US"}}
    assert s.accounts == {"alice": {"proxy": "socks5://u:p@10.0.0.2:1080"},
                          "ff.main": {"cookies_from_browser": "firefox:default-release"}}
    again = tmp_path / "again"
    save_settings(again, s)
    assert load_settings(again) == s
    assert (again / "settings.toml").stat().st_mode & 0o077 == 0  # it may hold a proxy password


@pytest.mark.parametrize(("toml", "needle"), [
    ('[ytdlp]\ncookiefile = "/tmp/c.txt"\n', "cookiefile"),
    ('[ytdlp]\nextractor_args = [1]\n', "extractor_args"),
    ('[accounts.alice]\nproxy = "ftp://h:21"\n', "proxy"),
    ('[accounts.alice]\ncookies_from_browser = "netscape"\n', "unsupported browser"),
    ('[accounts.alice]\npassword = "x"\n', "unknown setting"),
    ('[accounts."bad name"]\nproxy = "http://h:1"\n', "account name"),
])
def test_bad_ytdlp_or_accounts_settings_name_the_file(tmp_path: Path, toml: str, needle: str) -> None:
    """A bad [ytdlp] or [accounts.NAME] entry is one error naming settings.toml."""
    from pipeline.config.settings import load_settings

    (tmp_path / "settings.toml").write_text(toml)
    with pytest.raises(ValueError, match="settings.toml") as info:
        load_settings(tmp_path)
    assert needle in str(info.value)


def test_every_youtube_outcome_has_a_hint() -> None:
    """errors.md tells the user what to do for each new outcome (and the bot check names cookies and PO tokens)."""
    from pipeline.engine.outputs import DEFAULT_HINT, hint_for

    for cls in (errors.PrivateVideo, errors.MembersOnly, errors.AgeRestricted, errors.GeoBlocked, errors.NotYetLive,
                errors.MissingJsRuntime):
        assert hint_for(cls.__name__, "b1") != DEFAULT_HINT, cls
    assert "PO-token" in hint_for("BotCheck") and "--cookies-from-browser" in hint_for("BotCheck")
    assert "--wait-for-live" in hint_for("NotYetLive") and "deno" in hint_for("MissingJsRuntime")


# ---------------------------------------------------------------------- issue 12: redaction, limits, classes
def test_redactor_hides_what_ytdlp_would_print() -> None:
    """Cookie values (known or in headers, reprs and cookie-file lines), Authorization, secret query values and
    proxy passwords become ***; ordinary text stays readable."""
    lines = [
        "[debug] Request headers: {'Cookie': 'SID=sidQ1; HSID=hsidQ2', 'Accept': '*/*'}",
        "Set-Cookie: injected=EVIL-SET-COOKIE-777; Path=/",
        "authorization: Bearer abcdefQ3token",
        "GET https://rr1.googlevideo.com/videoplayback?expire=1&sig=AOqQ4sig&lsig=lsQ5&pot=potQ6&itag=140",
        "https://api.example.com/v1?key=AIzaQ7key&part=snippet&access_token=tokQ8",
        "proxy socks5://user:pwQ9@10.0.0.2:1080 failed",
        "Cookie(version=0, name='SID', value='cookieQ10', port=None)",
        "WARNING: skipping cookie file entry due to invalid length 5: '.x.com\\tTRUE\\t/\\tFALSE\\tcookieQ11\\n'",
        ".example.com\tTRUE\t/\tFALSE\t0\tSID\tcookieQ12",
        "the value knownQ13secret came back",
    ]
    text = "\n".join(ytdlp.redact_text(ln, {"knownQ13secret"}) for ln in lines)
    for q in range(1, 14):
        assert f"Q{q}" not in text.replace("Q13secret", "X") or q == 13, (q, text)
    assert "knownQ13secret" not in text and "EVIL-SET-COOKIE-777" not in text
    assert "itag=140" in text and "part=snippet" in text and "'Accept': '*/*'" in text and "10.0.0.2:1080" in text


def test_real_cookie_loader_warning_is_redacted(tmp_path: Path) -> None:
    """yt-dlp's own cookie loader prints a bad line, value included, straight to stderr (it bypasses the
    logger): we never give it such a line, and if one came through the redactor hides it."""
    bad = tmp_path / "raw.txt"
    bad.write_text("# Netscape HTTP Cookie File\n.x.com\tTRUE\t/\tFALSE\tsoon\tSID\tLEAKED-VALUE-1234\n"
                   ".x.com\tTRUE\t/\tFALSE\t0\tOK\tfine-value-5678\n")
    code = ("import sys; from yt_dlp.cookies import YoutubeDLCookieJar; j = YoutubeDLCookieJar(sys.argv[1]); "
            "j.load(); print(len(j))")
    res = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, timeout=60)
    assert "LEAKED-VALUE-1234" in res.stderr  # what yt-dlp does with the user's file as is
    assert "LEAKED-VALUE-1234" not in ytdlp.redact_text(res.stderr)
    from pipeline.config import secrets

    ctx = ctx_for(tmp_path, cookiefile=str(bad), account="raw")
    opts = ytdlp.ydl_base_options(ctx)  # what we give it instead: the good line only, nothing to complain about
    res = subprocess.run([sys.executable, "-c", code, opts["cookiefile"]], capture_output=True, text=True,
                         timeout=60)
    assert res.stderr == "" and res.stdout.strip() == "1"
    ytdlp.release_options(ctx, opts)
    assert secrets.cookie_problems(bad.read_bytes()) == ["line 2: the expiry (field 5) is not a number of seconds"]
    only_bad = tmp_path / "only-bad.txt"
    only_bad.write_text("# Netscape HTTP Cookie File\n.x.com\tTRUE\t/\tFALSE\tsoon\tSID\tLEAKED-VALUE-1234\n")
    with pytest.raises(errors.AuthFailed) as info:  # nothing usable: the account is refused, by line number
        ytdlp.ydl_base_options(ctx_for(tmp_path, cookiefile=str(only_bad), account="raw"))
    assert "line 2: the expiry" in str(info.value) and "LEAKED" not in str(info.value)


def test_known_secrets_of_a_call(tmp_path: Path) -> None:
    """The values the logger must never print: cookie values of the copy, proxy credentials, secret headers,
    logins and PO tokens."""
    jar = tmp_path / "c.txt"
    jar.write_text("# Netscape HTTP Cookie File\n.x.com\tTRUE\t/\tFALSE\t0\tSID\tcookie-value-1\n")
    found = ytdlp.known_secrets({"cookiefile": str(jar), "proxy": "http://alice:pa%24%24word@h:1",
                                 "http_headers": {"Authorization": "Bearer tok-123456", "Accept": "*/*"},
                                 "password": "hunter22", "extractor_args": {"youtube": {"po_token": ["web+POTOKEN1"]}}})
    assert {"cookie-value-1", "pa$$word", "Bearer tok-123456", "hunter22", "POTOKEN1"} <= found
    assert "*/*" not in found


def test_call_limits_from_options(tmp_path: Path) -> None:
    """Options set the caps (0 turns one off); the cap is never more than free disk minus the floor."""
    lim = ytdlp.call_limits(ctx_for(tmp_path, {"max_download_mb": "2", "stall_rate_kbps": 4, "stall_seconds": 10,
                                               "min_free_disk_mb": 0}), tmp_path)
    assert lim.cap_bytes == 2 * 2**20 and not lim.cap_is_disk and "max_download_mb" in lim.cap_reason
    assert lim.stall_bytes_per_s == 4096 and lim.stall_s == 10 and lim.block_size == 5120
    assert ytdlp.call_limits(ctx_for(tmp_path)).cap_bytes == 4096 * 2**20  # the default, 4 GB
    assert ytdlp.call_limits(ctx_for(tmp_path, {"max_download_mb": 0})).cap_bytes > 2**60  # off
    import shutil

    free = shutil.disk_usage(tmp_path).free
    disk = ytdlp.call_limits(ctx_for(tmp_path, {"min_free_disk_mb": free / 2**20 - 3}), tmp_path)
    assert disk.cap_is_disk and 0 < disk.cap_bytes < 4 * 2**20
    assert isinstance(disk.cap_error(), errors.DiskFull) and isinstance(lim.cap_error(), errors.TooLarge)
    with pytest.raises(errors.ConfigError, match="max_download_mb"):
        ytdlp.call_limits(ctx_for(tmp_path, {"max_download_mb": "lots"}))


def test_redirect_loop_and_full_disk_classes_in_process(media_server: MediaServer, tmp_path: Path) -> None:
    """The classifier on yt-dlp's real failures: a redirect loop is TooManyRedirects, ENOSPC is DiskFull."""
    with pytest.raises(yt_dlp.utils.DownloadError) as info, yt_dlp.YoutubeDL(
            {"quiet": True, "logger": ytdlp.YtdlpLogger(), "retries": 0}) as ydl:
        ydl.extract_info(media_server.url("/loop.mp3"), download=False)
    loop = ytdlp.classify_ytdlp_error(info.value)
    assert type(loop) is errors.TooManyRedirects and str(loop).startswith("too many redirects")
    (tmp_path / "talk-bravo.mp3.part").symlink_to("/dev/full")
    with pytest.raises(yt_dlp.utils.YoutubeDLError) as info, yt_dlp.YoutubeDL(
            {"quiet": True, "logger": ytdlp.YtdlpLogger(), "retries": 0,
             "outtmpl": str(tmp_path / "%(id)s.%(ext)s")}) as ydl:
        ydl.extract_info(media_server.media_url("mp3"), download=True)
    full = ytdlp.classify_ytdlp_error(info.value)
    assert type(full) is errors.DiskFull and full.retryable and full.retry_after == errors.DiskFull.default_retry_after
    assert ytdlp.disk_full(OSError(28, "No space left on device")) is not None
    assert ytdlp.disk_full(OSError(2, "No such file")) is None


@pytest.mark.parametrize(("err", "attrs"), [
    (errors.RateLimited("slow", account="a", retry_after=3.0), {"account": "a", "retry_after": 3.0}),
    (errors.NotYetLive("soon", starts_at=5.0), {"starts_at": 5.0}),
    (errors.DiskFull("full"), {"retry_after": errors.DiskFull.default_retry_after}),
    (errors.AuthFailed("no", account="b"), {"account": "b"}),
    (errors.NotMedia("not media (text/html)"), {}),
    (errors.TubemillError("odd", retryable=True), {}),
])
def test_errors_cross_the_process_boundary(err: errors.TubemillError, attrs: dict[str, Any]) -> None:
    """A child's error record rebuilds the same class, message, retryable flag and attributes."""
    back = errors.error_from_record(errors.error_record(err))
    assert type(back) is type(err) and str(back) == str(err) and back.retryable == err.retryable
    assert {k: getattr(back, k) for k in attrs} == attrs
    assert type(errors.error_from_record({"type": "NoSuchError", "message": "m"})) is errors.RetryableError


def test_media_sniffing_and_the_outbound_rule() -> None:
    """First bytes tell media from pages and archives; private hosts are refused unless the source is that host."""
    from pipeline.recipes.transcribe.ytdlp_outbound import OutboundRule
    from pipeline.recipes.transcribe.ytdlp_sniff import sniff

    assert sniff(b"ID3\x04\x00")[0] == sniff(b"\x00\x00\x00\x20ftypM4A ")[0] == sniff(b"\x1a\x45\xdf\xa3")[0] \
        == sniff(b"\xff\xfb\x90\x64")[0] == sniff(b"OggS\x00")[0] == sniff(b"#EXTM3U\n")[0] == "media"
    assert sniff(b"  <!DOCTYPE html><html>") == ("nonmedia", "an HTML page")
    assert sniff(b"PK\x03\x04\x14\x00") == ("nonmedia", "a ZIP archive") and sniff(b"%PDF-1.7")[0] == "nonmedia"
    assert sniff(b"\x13\x37\x00\x01")[0] == "unknown"
    public = OutboundRule("http://media.tubemill.invalid/x")
    assert public.refusal("http://127.0.0.1:80/x", redirect_from="http://media.tubemill.invalid/x")
    assert public.refusal("http://[::ffff:10.0.0.1]/x") and public.refusal("http://localhost/x")
    assert public.refusal("http://93.184.216.34/x") is None
    local = OutboundRule("http://127.0.0.1:8000/a")
    assert local.refusal("http://127.0.0.1:9000/b", redirect_from="http://127.0.0.1:8000/a") is None
    assert "127.0.0.2, a loopback address" in (local.refusal("http://127.0.0.2/b", "http://127.0.0.1:8000/a") or "")
    assert "file: URL" in (local.refusal("file:///etc/passwd", "http://127.0.0.1:8000/a") or "")
    assert OutboundRule("http://1.2.3.4/", allow_private=True).refusal("http://10.0.0.1/") is None
    assert "file: URL" in (OutboundRule("http://1.2.3.4/", allow_private=True).refusal("file:///x", "http://1.2.3.4/")
                           or "")

"""What every yt-dlp call of ours shares, named in one place, and the error classifier.

Every yt-dlp call (listing in ``sources``, captions, download) takes its options from
here, so the things that make real YouTube work are decided in one place; each part
lives in a module of its own and is named here too, for every caller:

- the programs yt-dlp runs (:mod:`.ytdlp_tools`): ffmpeg, and the JavaScript runtime
  (Deno, by path) and ``yt-dlp-ejs`` scripts that solve YouTube's JS challenges;
- the params of a call (:mod:`.ytdlp_params`): the account's cookies (a fresh 0600
  copy per call, released by :func:`release_options`) and proxy, and the pass-through
  options for power users (``[ytdlp]`` in settings.toml, ``--ytdlp-option``), minus
  the few the engine owns;
- the limits of one call (:mod:`.ytdlp_limits`: byte cap, stall rule, page size,
  private redirects), which :mod:`pipeline.recipes.transcribe.ytdlp_run` enforces
  around a yt-dlp child process;
- the redactor every yt-dlp log line passes through (:mod:`.ytdlp_redact`: cookie
  values, ``Authorization``, ``key=``/``token=``/``sig=`` query values, proxy passwords);
- live streams and premieres (:mod:`.ytdlp_live`), which wait instead of downloading;
- here, the classifier, which turns yt-dlp's messages (YouTube's own wording included)
  into our error tree with a message that says what to do. It looks the JS runtime up
  through this module's ``js_runtime``, so "no formats" can say that Deno is missing.
"""

from __future__ import annotations

import errno
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from pipeline import errors
from pipeline.config.ytdlp_options import (
    BROWSERS,
    ENGINE_OWNED,
    KEYRINGS,
    PROXY_SCHEMES,
    SECRET_HEADER,
    SECRET_OPTION,
    check_account_settings,
    check_proxy,
    check_ytdlp_options,
    parse_browser_spec,
    redact_url,
    redact_ytdlp_options,
)
from pipeline.recipes.transcribe.ytdlp_limits import CallLimits, call_limits, disk_floor_mb
from pipeline.recipes.transcribe.ytdlp_live import UPCOMING, check_live, start_text, upcoming_start
from pipeline.recipes.transcribe.ytdlp_params import (
    account_options,
    browser_account_name,
    call_options,
    keep_refreshed_cookies,
    listing_options,
    parse_ytdlp_option,
    passthrough_options,
    release_options,
    ydl_base_options,
)
from pipeline.recipes.transcribe.ytdlp_redact import MIN_SECRET_LEN, YtdlpLogger, known_secrets, redact_text
from pipeline.recipes.transcribe.ytdlp_tools import (
    common_options,
    ejs_version,
    ffmpeg_binary,
    js_runtime,
    js_runtimes_option,
)

# The checks of proxies, browser specs and pass-through options, and which keys are secret, are settings
# validation (pipeline.config.ytdlp_options); they are named here too, for every yt-dlp caller of ours.
__all__ = [
    "BROWSERS", "ENGINE_OWNED", "KEYRINGS", "MIN_SECRET_LEN", "PROXY_SCHEMES", "SECRET_HEADER", "SECRET_OPTION",
    "CallLimits", "YtdlpLogger", "account_options", "browser_account_name", "call_limits", "call_options",
    "check_account_settings", "check_live", "check_proxy", "check_ytdlp_options", "classify_ytdlp_error",
    "common_options", "disk_floor_mb", "disk_full", "ejs_version", "ffmpeg_binary", "js_runtime",
    "js_runtimes_option", "keep_refreshed_cookies", "known_secrets", "listing_options", "parse_browser_spec",
    "parse_ytdlp_option", "passthrough_options", "redact_text", "redact_url", "redact_ytdlp_options",
    "release_options", "upcoming_start", "ydl_base_options",
]


# ---------------------------------------------------------------------- classifier
_BOT = ("confirm you're not a bot", "confirm you’re not a bot", "confirm that you're not a bot",
        "confirm that you’re not a bot")
_MEMBERS = ("members-only", "members only", "available to this channel's members", "join this channel")
_PRIVATE = ("private video", "this video is private")
_AGE = ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users",
        "age verification", "age-verification")
_GEO = ("not made this video available in your country", "not available from your location",
        "not available in your country", "geo restriction", "geo-restricted")
_UNAVAILABLE = ("private video", "video unavailable", "has been removed", "members-only", "this video is not available",
                "account associated with this video has been terminated", "copyright", "no longer available")
_NO_FORMATS = ("requested format is not available", "no video formats found", "only images are available")
_LOGIN_HINT = re.compile(r"\s*\.?\s*(?:Use --cookies-from-browser or --cookies|Use --cookies, --cookies-from-browser"
                         r"|Also see\s+https?://).*$", re.I | re.S)
_COOKIE_FIX = "use an account with cookies (--cookies FILE or --cookies-from-browser BROWSER)"


def classify_ytdlp_error(exc: BaseException, account: str | None = None, *,
                         now: float | None = None) -> errors.TubemillError:
    """Map a yt-dlp failure onto our error tree (see NOTES: classify by ``exc_info[1]``).

    ``account`` is the signed-in account that made the request (None when anonymous): only then
    does a 401/403 mean its cookies were refused. YouTube's own outcomes (bot check, members-only,
    private, age gate, geo block, upcoming live, no formats without a JS runtime) come as
    ``ExtractorError`` text and are matched on their wording.
    """
    import yt_dlp
    from yt_dlp.networking import exceptions as net

    now = time.time() if now is None else now
    cause = getattr(exc, "exc_info", None)
    inner = cause[1] if cause and len(cause) > 1 and cause[1] is not None else exc
    msg = redact_text(str(exc))
    low = msg.lower()
    full = disk_full(exc)
    if full is not None:
        return full
    loop = next((e for e in _chain(exc) if getattr(e, "redirect_loop", False)), None)
    if loop is not None or "redirect loop detected" in low or "exceeded 30 redirects" in low:
        where = _host(loop) if loop is not None else "the server"
        return errors.TooManyRedirects(f"too many redirects: a redirect loop at {where}")
    if "[download] got error:" in low:
        # Timeouts and resets during the transfer itself come with no exception attached, only this text.
        return errors.NetworkError(f"download interrupted: {_clean(msg.split('Got error:', 1)[-1])}")
    if isinstance(inner, net.HTTPError):
        return _http_error(inner, account)
    youtube = _youtube_outcome(msg, low, inner, account, now)
    if youtube is not None:
        return youtube
    if isinstance(inner, yt_dlp.utils.UnsupportedError) or "unsupported url" in low:
        return errors.Unsupported("no media found at this URL (unsupported URL)")
    if any(u in low for u in _UNAVAILABLE):
        return errors.Unavailable(_reason(msg))
    if isinstance(inner, net.TransportError | TimeoutError | ConnectionError | OSError):
        return errors.NetworkError(f"network error: {_clean(str(inner))}")
    if any(f in low for f in _NO_FORMATS):
        return errors.NoAudio("no downloadable audio or video format")
    if "timed out" in low or "connection" in low or "incompleteread" in low:
        return errors.NetworkError(_clean(msg))
    if isinstance(inner, yt_dlp.utils.ExtractorError) and getattr(inner, "expected", False):
        return errors.PermanentError(_clean(msg))
    return errors.RetryableError(_clean(msg))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it wraps: yt-dlp's ``exc_info`` and ``cause``, Python's ``__cause__``/``__context__``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        info = getattr(e, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1:
            todo.append(info[1])
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(exc: BaseException) -> errors.DiskFull | None:
    """A full disk (ENOSPC, or a quota), anywhere in ``exc``'s chain or in yt-dlp's text for it
    ("unable to write data: [Errno 28] No space left on device"); None otherwise.

    Not a network error: retrying at once cannot help, so :class:`~pipeline.errors.DiskFull` waits
    before its retry.
    """
    hit = any(isinstance(e, OSError) and e.errno in _NO_SPACE for e in _chain(exc))
    low = str(exc).lower()
    if hit or "no space left on device" in low or "disk quota exceeded" in low:
        return errors.DiskFull("disk full: no space left on the output disk while writing the download; free "
                               f"some space (the item is retried in {errors.DiskFull.default_retry_after / 60:.0f} "
                               "min, or run retry-failed)")
    return None


def _http_error(inner: Any, account: str | None) -> errors.TubemillError:
    status = inner.status
    host = _host(inner)
    if status == 429:
        return errors.RateLimited(f"HTTP 429 Too Many Requests from {host}", account=account,
                                  retry_after=_retry_after(inner))
    if status in (404, 410):
        return errors.NotFound(f"HTTP {status}: not found")
    if status == 403 and (urllib.parse.urlsplit("//" + host).hostname or "").endswith("googlevideo.com"):
        # YouTube's media servers refuse a URL whose JS challenge was not solved or that lacks a PO token:
        # not the account's cookies, so the account stays enabled.
        return errors.RetryableError("HTTP 403 from YouTube's media server: the JS challenge failed or a PO token "
                                     "is needed (see `tubemill doctor`)")
    if status in (401, 403) and account:
        return errors.AuthFailed(f"HTTP {status}: access refused for this account", account=account)
    if status == 403:
        return errors.RetryableError("HTTP 403: access refused (often temporary)")
    if status >= 500:
        return errors.NetworkError(f"HTTP {status}: server error")
    return errors.PermanentError(f"HTTP {status}: {inner.reason or 'error'}")


def _youtube_outcome(msg: str, low: str, inner: BaseException, account: str | None,
                     now: float) -> errors.TubemillError | None:
    """YouTube's outcomes, from its wording (yt-dlp passes YouTube's playability reason through)."""
    import yt_dlp

    reason = _reason(msg)
    if any(b in low for b in _BOT):
        return errors.BotCheck(f"YouTube asks to sign in to confirm you're not a bot: {_COOKIE_FIX}, add a PO-token "
                               "provider (see `tubemill doctor`) and slow down; this account cools down",
                               account=account, retry_after=900)
    if "this content isn't available, try again later" in low or "this content isn’t available, try again" in low:
        return errors.RateLimited("YouTube rate-limited this session for up to an hour ('This content isn't "
                                  "available, try again later'): slow down or add accounts", account=account,
                                  retry_after=3600)
    if UPCOMING.search(low) and not any(f in low for f in _NO_FORMATS):
        starts = upcoming_start(msg, now)
        return errors.NotYetLive(f"not live yet: {reason} ({start_text(starts, now)})", starts_at=starts)
    if any(m in low for m in _MEMBERS):
        who = f"account {account} is not a member of this channel" if account else _COOKIE_FIX.replace(
            "an account", "the account of a channel member")
        return errors.MembersOnly(f"members-only video: {who} ({reason})")
    if any(p in low for p in _PRIVATE):
        who = (f"account {account} has no access to it" if account
               else "only an account it was shared with can fetch it: " + _COOKIE_FIX)
        return errors.PrivateVideo(f"private video: {who}")
    if any(a in low for a in _AGE):
        who = (f"account {account} did not pass YouTube's age check (use an age-verified account)" if account
               else "needs a signed-in, age-verified account: " + _COOKIE_FIX)
        return errors.AgeRestricted(f"age-restricted video: {who}")
    if isinstance(inner, yt_dlp.utils.GeoRestrictedError) or any(g in low for g in _GEO):
        return errors.GeoBlocked(f"not available from this country: use a proxy in an allowed country (--proxy) "
                                 f"({reason})")
    if any(f in low for f in _NO_FORMATS) and "[youtube" in low:
        if js_runtime() is None:
            return errors.MissingJsRuntime("no JavaScript runtime found: YouTube's formats need Deno to solve its "
                                           "JS challenges; install it with `pip install deno` (or `make`), then "
                                           "retry the failed items")
        if ejs_version() is None:
            return errors.MissingJsRuntime("yt-dlp-ejs is not installed: YouTube's formats need its challenge-solver "
                                           "scripts; install `yt-dlp[default]`, then retry the failed items")
        return errors.NoAudio("YouTube offered no downloadable format: its JS challenge was not solved or it wants "
                              "a PO token (see `tubemill doctor`)")
    return None


def _retry_after(err: Any) -> float | None:
    try:
        value = err.response.get_header("Retry-After")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _host(err: Any) -> str:
    try:
        return urllib.parse.urlparse(err.response.url).netloc or "the server"
    except AttributeError:
        return "the server"


def _clean(msg: str) -> str:
    return re.sub(r"^ERROR:\s*(\[[^\]]+\]\s*)?", "", msg.replace("\r", "")).strip()[:500]


def _reason(msg: str) -> str:
    """The site's own words: no ``ERROR: [youtube] <id>:`` prefix and no yt-dlp login boilerplate."""
    text = " ".join(_clean(msg).split())
    text = re.sub(r"^[\w-]{6,}:\s+", "", text)  # the video id yt-dlp puts first
    text = re.sub(r"\s*You might want to use a VPN.*$", "", text)
    return _LOGIN_HINT.sub("", text).strip().rstrip(".") or text

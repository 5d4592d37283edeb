"""What every yt-dlp call of ours shares: options, a quiet logger, and the error classifier."""

from __future__ import annotations

import logging
import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from pipeline import errors

if TYPE_CHECKING:
    from pipeline.stages.base import StageContext


def ffmpeg_binary() -> str | None:
    """Full path of an ffmpeg yt-dlp accepts (a directory fails without ffprobe, see NOTES)."""
    import shutil

    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


class YtdlpLogger:
    """yt-dlp prints ERROR lines to stderr even when quiet; ours become typed errors, so log them at debug."""

    def __init__(self, name: str = "tubemill.ytdlp") -> None:
        self.log = logging.getLogger(name)

    def debug(self, msg: str) -> None:
        self.log.debug("%s", msg)

    def info(self, msg: str) -> None:
        self.log.debug("%s", msg)

    def warning(self, msg: str) -> None:
        self.log.info("%s", msg)

    def error(self, msg: str) -> None:
        self.log.info("%s", msg)


def ydl_base_options(ctx: StageContext) -> dict[str, Any]:
    """Options every yt-dlp call of a stage shares: quiet, bounded timeouts, our retries not theirs."""
    opts: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "socket_timeout": float(ctx.options.get("socket_timeout", 30)),
        "retries": 1,  # the engine retries with backoff; yt-dlp's own loop would hold a worker
        "fragment_retries": 3,
        "extractor_retries": 0,
        "continuedl": True,
        "cachedir": False,
        "logger": YtdlpLogger(),
    }
    ffmpeg = ffmpeg_binary()
    if ffmpeg:
        opts["ffmpeg_location"] = ffmpeg
    # The account's cookie file (a path only; its content never enters the store, logs or exports).
    cookies = ctx.cookiefile or ctx.options.get("cookies")
    if cookies:
        opts["cookiefile"] = cookies
    return opts



_BOT = ("confirm you're not a bot", "confirm you’re not a bot", "sign in to confirm")
_UNAVAILABLE = ("private video", "video unavailable", "has been removed", "members-only", "this video is not available",
                "account associated with this video has been terminated", "copyright")


def classify_ytdlp_error(exc: BaseException, account: str | None = None) -> errors.TubemillError:
    """Map a yt-dlp failure onto our error tree (see NOTES: classify by ``exc_info[1]``)."""
    import yt_dlp
    from yt_dlp.networking import exceptions as net

    cause = getattr(exc, "exc_info", None)
    inner = cause[1] if cause and len(cause) > 1 and cause[1] is not None else exc
    msg = str(exc)
    low = msg.lower()
    if "[download] got error:" in low:
        # Timeouts and resets during the transfer itself come with no exception attached, only this text.
        return errors.NetworkError(f"download interrupted: {_clean(msg.split('Got error:', 1)[-1])}")
    if isinstance(inner, net.HTTPError):
        status = inner.status
        if status == 429:
            retry_after = _retry_after(inner)
            return errors.RateLimited(f"HTTP 429 Too Many Requests from {_host(inner)}", account=account,
                                      retry_after=retry_after)
        if status in (404, 410):
            return errors.NotFound(f"HTTP {status}: not found")
        if status in (401, 403) and account:
            return errors.AuthFailed(f"HTTP {status}: access refused for this account", account=account)
        if status == 403:
            return errors.RetryableError("HTTP 403: access refused (often temporary)")
        if status >= 500:
            return errors.NetworkError(f"HTTP {status}: server error")
        return errors.PermanentError(f"HTTP {status}: {inner.reason or 'error'}")
    if any(b in low for b in _BOT):
        return errors.BotCheck("the site asks to sign in to confirm you're not a bot", account=account,
                               retry_after=900)
    if isinstance(inner, yt_dlp.utils.UnsupportedError) or "unsupported url" in low:
        return errors.Unsupported("no media found at this URL (unsupported URL)")
    if any(u in low for u in _UNAVAILABLE):
        return errors.Unavailable(_clean(msg))
    if isinstance(inner, net.TransportError | TimeoutError | ConnectionError | OSError):
        return errors.NetworkError(f"network error: {_clean(str(inner))}")
    if "requested format is not available" in low or "no video formats found" in low:
        return errors.NoAudio("no downloadable audio or video format")
    if "timed out" in low or "connection" in low or "incompleteread" in low:
        return errors.NetworkError(_clean(msg))
    if isinstance(inner, yt_dlp.utils.ExtractorError) and getattr(inner, "expected", False):
        return errors.PermanentError(_clean(msg))
    return errors.RetryableError(_clean(msg))


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



"""One error tree. Every error says whether retrying can help (``retryable``) and
whether it is the world saying no rather than a bug (``expected``, as in yt-dlp's
``ExtractorError``): expected errors are shown to users as one plain line.

Stages wrap third-party exceptions into these at their boundary, with ``from``;
only the runner catches broad exceptions.
"""

from __future__ import annotations

import os
from pathlib import Path


class TubemillError(Exception):
    retryable: bool = False
    expected: bool = True

    def __init__(self, message: str = "", *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class PermanentError(TubemillError):
    """Retrying cannot help: the item fails at once."""


class RetryableError(TubemillError):
    """A transient failure: retried with backoff, spending an attempt."""

    retryable = True


class InvalidInput(PermanentError):
    """A source line or option we cannot use."""


class NotFound(PermanentError):
    """404/410: the thing is not there."""


class Unsupported(PermanentError):
    """No extractor or tool handles this source."""


class Unavailable(PermanentError):
    """Private, removed, region-locked or otherwise refused for good."""


class NoAudio(PermanentError):
    """The media has no audio stream to transcribe."""


class PrivateVideo(Unavailable):
    """A private video: only an account the uploader shared it with (its cookies) can fetch it.

    ``needs_account``: a request made without the batch's accounts (the captions stage is not
    account-bound) may succeed with them, so such a stage can leave the item to the download.
    """

    needs_account = True


class MembersOnly(Unavailable):
    """Members-only content: needs the cookies of an account that is a member of the channel."""

    needs_account = True


class AgeRestricted(Unavailable):
    """Age-restricted: needs the cookies of a signed-in, age-verified account."""

    needs_account = True


class GeoBlocked(Unavailable):
    """Not available from this country: only a proxy in an allowed country helps."""


class NotYetLive(PermanentError):
    """A live stream or premiere that has not started (or is still live): nothing to transcribe yet.

    Permanent for this attempt, but not a failure of the item: the runner skips it, or with
    ``--wait-for-live`` schedules it again at ``starts_at`` (epoch seconds; None when the site
    gives no time) — scheduling, never a worker sleeping until the stream begins.
    """

    recheck_s = 1800.0  # no start time known (or live now): look again after this long

    def __init__(self, message: str = "not live yet", *, starts_at: float | None = None) -> None:
        super().__init__(message)
        self.starts_at = starts_at

    def retry_at(self, now: float) -> float:
        """When ``--wait-for-live`` should try again: the start (a minute from now at the earliest), else later."""
        if self.starts_at is None:
            return now + self.recheck_s
        return max(self.starts_at, now + 60.0)


class MissingJsRuntime(PermanentError):
    """YouTube gave no usable format because yt-dlp found no JavaScript runtime (or no EJS scripts):
    a setup problem, fixed once for every item (``tubemill doctor`` says how)."""


class NetworkError(RetryableError):
    """Connection refused or reset, DNS failure, 5xx."""


class RateLimited(RetryableError):
    """HTTP 429 or a bot check: cool the account down and requeue without spending an attempt."""

    def __init__(self, message: str = "rate limited", *, account: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.account = account
        self.retry_after = retry_after


class BotCheck(RateLimited):
    """"Sign in to confirm you're not a bot": a rate limit with a longer cooldown."""


class AuthFailed(TubemillError):
    """The account's cookies or token were refused: disable the account."""

    def __init__(self, message: str = "authentication failed", *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


class TooManyRedirects(PermanentError):
    """A redirect loop (or a chain longer than the HTTP client follows): the site is misconfigured, or it
    bounces a visitor without the right cookies between two pages."""


class NotMedia(Unsupported):
    """The server answered with something that is not audio or video (an HTML page, a ZIP archive, a PDF),
    found from its content type and first bytes before the rest is downloaded."""


class TooLarge(PermanentError):
    """The download passed the per-download byte cap (``max_download_mb``): an endless stream or a huge file.
    Never accepted as done; raising the cap for the batch and retrying is the way on."""


class OutboundRefused(PermanentError):
    """A request Tubemill will not send: a redirect from a remote source to a loopback, link-local or
    private-network address (``allow_private_redirects`` allows it), or to a ``file:`` URL."""


class Stalled(NetworkError):
    """The transfer stayed under the minimum rate for the stall window (or the page never arrived): the
    attempt fails and is retried later, so one slow host does not hold a worker for hours."""


class DiskFull(RetryableError):
    """No space left on the output disk (ENOSPC/EDQUOT), or not enough free space above the governor's floor
    for this download. Retrying at once cannot help and would hammer the disk: the retry waits
    ``retry_after`` seconds (the runner never retries sooner than a server-given or error-given wait)."""

    default_retry_after = 600.0

    def __init__(self, message: str = "disk full", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = self.default_retry_after if retry_after is None else retry_after


class Cancelled(TubemillError):
    """The user cancelled; raised by a stage that saw ``ctx.cancelled()``."""


class Park(TubemillError):
    """Not a failure: the item waits, without a worker or a timer, until the named service releases it
    (the Batch API service once the item's summary is in). Its status is ``parked`` with this reason."""

    retryable = True

    def __init__(self, reason: str, service: str) -> None:
        super().__init__(reason)
        self.service = service


class ConfigError(TubemillError):
    """A setting, recipe or stage name that does not exist."""


# ---- the state files' own errors (raised by ``state``; here so there is one tree to catch from)
class CorruptStateFile(Exception):
    """A state file exists but is not a JSON object we can read."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class UnknownBatch(KeyError):
    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref

    def __str__(self) -> str:
        return f"no batch named {self.ref!r}"


class BatchExists(ValueError):
    pass


def describe(exc: BaseException) -> tuple[str, str, bool]:
    """(type name, message, retryable) for the item record; unknown exceptions count as retryable bugs."""
    if isinstance(exc, TubemillError):
        return type(exc).__name__, str(exc) or type(exc).__name__, exc.retryable
    return type(exc).__name__, str(exc) or repr(exc), True


def error_from_record(record: dict[str, object]) -> TubemillError:
    """Rebuild an error that another process described as ``{"type", "message", "retryable", "attrs"}``
    (the yt-dlp child process classifies its own failures; the stage raises the same class here).

    Only classes of this tree are rebuilt; an unknown name becomes a :class:`RetryableError` with the
    message, so a newer child never crashes an older parent. Attributes (``account``, ``retry_after``,
    ``starts_at``) are set directly: every class keeps its own constructor signature.
    """
    name = str(record.get("type") or "")
    cls = globals().get(name)
    if not (isinstance(cls, type) and issubclass(cls, TubemillError)):
        cls = RetryableError
    err = cls.__new__(cls)
    Exception.__init__(err, str(record.get("message") or name or "yt-dlp failed"))
    defaults: dict[str, object] = {}
    if issubclass(cls, RateLimited):
        defaults = {"account": None, "retry_after": None}
    elif issubclass(cls, AuthFailed):
        defaults = {"account": None}
    elif issubclass(cls, NotYetLive):
        defaults = {"starts_at": None}
    elif issubclass(cls, DiskFull):
        defaults = {"retry_after": DiskFull.default_retry_after}
    attrs = record.get("attrs")
    given = attrs if isinstance(attrs, dict) else {}
    for key, default in defaults.items():
        setattr(err, key, given.get(key, default))
    retryable = record.get("retryable")
    if isinstance(retryable, bool) and retryable != cls.retryable:
        err.retryable = retryable
    return err


def error_record(err: TubemillError) -> dict[str, object]:
    """The inverse of :func:`error_from_record`: what a child process sends for ``err``."""
    attrs = {k: getattr(err, k) for k in ("account", "retry_after", "starts_at") if hasattr(err, k)}
    return {"type": type(err).__name__, "message": str(err), "retryable": err.retryable, "attrs": attrs}

"""One error tree. Every error says whether retrying can help (``retryable``) and
whether it is the world saying no rather than a bug (``expected``, as in yt-dlp's
``ExtractorError``): expected errors are shown to users as one plain line.

Stages wrap third-party exceptions into these at their boundary, with ``from``;
only the runner catches broad exceptions.
"""

from __future__ import annotations


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


class Cancelled(TubemillError):
    """The user cancelled; raised by a stage that saw ``ctx.cancelled()``."""


class ConfigError(TubemillError):
    """A setting, recipe or stage name that does not exist."""


def describe(exc: BaseException) -> tuple[str, str, bool]:
    """(type name, message, retryable) for the item record; unknown exceptions count as retryable bugs."""
    if isinstance(exc, TubemillError):
        return type(exc).__name__, str(exc) or type(exc).__name__, exc.retryable
    return type(exc).__name__, str(exc) or repr(exc), True

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

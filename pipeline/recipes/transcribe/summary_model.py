"""The summary contract every summary engine fills in: :class:`Summary`, its chapters, and how one came to be.

Kept apart from the engines that make summaries (the LLM path in :mod:`.summary`, the offline
one in :mod:`.extractive`, the Batch API service) so each of them imports these models and none
imports another to get them: no circle between the extractive summary and the LLM's fallback.
``WIRE_SCHEMA`` is the same contract as the model is asked to send it; :func:`timestamp` is
the time notation of the transcript lines a model reads and of the chapters it writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def timestamp(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from one hour on."""
    s = max(0, int(seconds))
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


class Chapter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0, description="seconds from the start of the video")
    title: str = Field(min_length=1)


class Summary(BaseModel):
    """What every summary engine produces and ``summary.md``/``meta.json`` are written from.

    Bounds: at most 7 key points and 10 tags. What the LLM is *asked* for (3–7 points,
    3–10 tags, chapters within the video) is a soft rule checked by
    :func:`.summary_repair.as_summary`: a miss is repaired and said, never a reason to lose
    the item's summary. An offline summary of a very short transcript may have fewer; an
    empty transcript gives an empty summary rather than an error.
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


class ChunkNotes(BaseModel):
    """A map step's output: the same shape as a summary, with looser counts (a chunk may be thin)."""

    model_config = ConfigDict(extra="ignore")

    tldr: str
    key_points: list[str] = Field(max_length=12)
    chapters: list[Chapter]
    tags: list[str] = Field(max_length=15)


# What the model is asked to send, with the real constraints where servers take them (strict mode accepts
# minItems/maxItems); pydantic and summary_repair.as_summary check them again, since lower rungs only read them in
# the prompt.
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

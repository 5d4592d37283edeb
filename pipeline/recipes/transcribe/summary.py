"""Summaries from any OpenAI-compatible server, checked against the summary contract.

One contract for both engines: :class:`~.summary_model.Summary`. The LLM path asks for
JSON through the server's best request format (the capability ladder of
``pipeline.common.llmcall``: strict ``json_schema``, else ``json_object``, else plain text
with the JSON extracted), validates it, re-asks with the error when the answer is unusable
(at most ``max_retries`` times), and repairs soft-rule misses (a count of key points, a
chapter past the end) instead of failing (:mod:`.summary_repair`): the result says what
was adjusted. :func:`summarize_offline` is the extractive summary in the same result type,
the LLM's fallback. :func:`write_summary` writes either one as ``summary.json`` and
``summary.md``, for the summarize stage and the Batch API ingest alike.

Long transcripts are cut into token-bounded chunks of ``[MM:SS] text`` lines, so the
model can cite times; each chunk is summarized (map) and the notes merged (reduce).
The client, token counts, prices and error mapping are the recipe-agnostic part, in
:mod:`pipeline.common.llm`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common.formats import summary_markdown
from pipeline.common.llm import DEFAULT_MODEL, LLMConfig, cost_usd, count_tokens, make_client
from pipeline.common.llmcall import JSONCaller
from pipeline.recipes.transcribe import extractive
from pipeline.recipes.transcribe.summary_model import WIRE_SCHEMA, ChunkNotes, SummaryResult, timestamp
from pipeline.recipes.transcribe.summary_repair import Backup, as_notes, as_summary
from state.storage import atomic_write_bytes

if TYPE_CHECKING:
    import openai

log = logging.getLogger("tubemill.llm")

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"

# -- transcript lines and chunks ---------------------------------------------------------------------------------


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
    end = transcript_end(transcript)
    chunks = chunk_transcript(transcript, config.chunk_tokens, config.model)
    if not chunks:
        summary = extractive.summarize(transcript, title)
        return SummaryResult(summary, {"input_tokens": 0, "output_tokens": 0}, 0.0, None, 0,
                             ["empty transcript: summarized offline, no LLM call"], outcome="offline")
    backup = Backup(transcript, title)
    call = JSONCaller(config, client or make_client(config), schema=WIRE_SCHEMA, name="summary",
                      system=SYSTEM_PROMPT, home=home, max_tokens=config.max_output_tokens)
    log.info("summarizing %r: %d chunk(s), model %s", title, len(chunks), config.model)
    if len(chunks) == 1:
        prompt = single_prompt(title, end, chunks[0])
        answer = call.ask(prompt, lambda d: as_summary(d, end, config.model, backup))
    else:
        notes = []
        for i, ch in enumerate(chunks, 1):
            prompt = _map_prompt(title, i, len(chunks), ch)
            notes.append(call.ask(prompt, lambda d: as_notes(d, end)).value)
        answer = call.ask(_reduce_prompt(title, end, chunks, notes), lambda d: as_summary(d, end, config.model,
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
    return SummaryResult(extractive.summarize(transcript, title),
                         dict(usage or {"input_tokens": 0, "output_tokens": 0}), cost, None, 0, [],
                         outcome="fallback" if reason else "offline", reason=reason)


def write_summary(workdir: Path, title: str, result: Any, mode: str, source_url: str | None = None) -> None:
    """summary.json (with usage, cost and the outcome) and summary.md; shared by realtime and Batch API ingest."""
    summary = result.summary.model_dump()
    doc = {**summary, "usage": result.usage, "cost_usd": result.cost_usd, "mode": mode, "notes": result.notes,
           "outcome": getattr(result, "outcome", "llm" if summary.get("engine") == "llm" else "offline"),
           "reason": getattr(result, "reason", None), "adjustments": list(getattr(result, "adjustments", []) or []),
           "rung": getattr(result, "rung", None)}
    atomic_write_bytes(workdir / SUMMARY_JSON, json.dumps(doc, ensure_ascii=False, indent=1).encode())
    atomic_write_bytes(workdir / SUMMARY_MD, summary_markdown(title, summary, source_url=source_url).encode())


def write_fallback(workdir: Path, title: str, transcript: dict[str, Any], reason: str, mode: str = "realtime",
                   usage: dict[str, int] | None = None, cost: float = 0.0, source_url: str | None = None) -> None:
    """The offline summary standing in for an LLM one that could not be had, with the reason."""
    log.warning("summary of %r falls back to the offline summarizer: %s", title, reason)
    write_summary(workdir, title, summarize_offline(transcript, title, reason=reason, usage=usage, cost=cost),
                  mode=mode, source_url=source_url)


def source_url(item: dict[str, Any]) -> str | None:
    """The item's own URL (the one place model-written links may point), or None for a local file."""
    src = str(item.get("source") or "")
    return src if "://" in src else None


def single_prompt(title: str, end: float, chunk: Chunk) -> str:
    """The one request of a transcript that fits in one chunk (the Batch API sends the same words)."""
    return (f"Video title: {title}\nLength: {timestamp(end)} ({end:.0f} s)\n\n"
            "Summarize this transcript: a tl;dr, 3 to 7 key points, chapters (start in seconds, within "
            f"0 to {end:.0f}, the first at 0) and 3 to 10 lowercase tags.\n\nTranscript:\n{chunk.text}")


def _map_prompt(title: str, i: int, n: int, chunk: Chunk) -> str:
    return (f"Video title: {title}\nThis is part {i} of {n} of the transcript, from {timestamp(chunk.start)} "
            f"to {timestamp(chunk.end)}.\n\nWrite notes on this part only: a one-sentence tl;dr, its key points, "
            "its chapters (start in seconds, from the [MM:SS] marks) and its tags.\n\n"
            f"Transcript part:\n{chunk.text}")


def _reduce_prompt(title: str, end: float, chunks: Sequence[Chunk], notes: Sequence[ChunkNotes]) -> str:
    parts = [{"part": i, "from_s": round(c.start, 1), "to_s": round(c.end, 1), **n.model_dump()}
             for i, (c, n) in enumerate(zip(chunks, notes, strict=True), 1)]
    return (f"Video title: {title}\nLength: {timestamp(end)} ({end:.0f} s)\n\n"
            f"Below are notes on {len(parts)} consecutive parts of one video's transcript. Merge them into one "
            "summary of the whole video: a tl;dr, 3 to 7 key points, chapters (start in seconds, within "
            f"0 to {end:.0f}, the first at 0; merge small ones) and 3 to 10 lowercase tags.\n\n"
            f"Notes:\n{json.dumps(parts, ensure_ascii=False)}")

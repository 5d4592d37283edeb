"""``--translate-to LANG``: a transcript's segments translated by the LLM, with the original timing.

Subtitles must keep their timing, so the model never sees a free text it could re-flow: the
segments go out in chunks (consecutive segments up to a token budget), each one request whose
answer is strict JSON ``{"segments": [{"id", "text"}]}``, and every answer must map back 1:1 to
the ids it was given. Models do drop segments and merge two into one (the lost one's text
ends up in its neighbour), so a short answer is re-asked once with the missing ids named (the
JSON caller's soft re-ask), and what is still missing is asked again in a smaller request
together with its neighbours (whose text a merge may have swallowed), then alone. A segment
the model never gives back keeps its original text and the outcome says ``partial``.

Each translated segment is kept in ``translation.<lang>.cache.json`` as soon as its chunk is
in, with a hash of its source text: a crash, a transient failure retried by the runner or a
``retry_translations`` pays only for what is missing. Timing is never touched: a translated
segment is the original segment with its text replaced (and its word times, which belong
to the source words, left out). Pure of the engine: the stage
(:mod:`.stages.translate`) decides what a failure costs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.common import formats
from pipeline.common.llm import LLMConfig, cost_usd, count_tokens, make_client
from pipeline.common.llmcall import InvalidAnswer, JSONCaller, SoftMiss
from state.storage import atomic_write_bytes

if TYPE_CHECKING:
    import openai

log = logging.getLogger("tubemill.translate")

CHUNK_TOKENS = 1200  # source tokens per request: small enough that weak models keep every id, few requests
CHUNK_SEGMENTS = 60  # and at most this many ids per request
GIVE_UP_AFTER = 2  # chunks in a row with no usable answer at all: the model cannot do this, stop paying
FLAGS = {"failed": "translation-failed", "repaired": "translation-repaired"}
# The item meta a translation writes (the translate stage); meta.json records them.
META_KEYS = ("translation_lang", "translation_outcome", "translation_reason", "translation_adjustments",
             "translation_usage", "translation_cost_usd", "translation_model", "translation_missing")
NEEDS_LLM = "translation needs an LLM: set an API key or server (OPENAI_API_KEY, OPENAI_BASE_URL or the Settings page)"

WIRE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["segments"],
    "properties": {"segments": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["id", "text"],
        "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}}}},
}

LANG_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "nl": "Dutch", "no": "Norwegian", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "th": "Thai", "tr": "Turkish",
    "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}

SYSTEM_PROMPT = (
    "You translate video transcript segments. Each segment has an integer id. Translate every segment on its own "
    "and give back exactly one entry per id you were given, with the same id, in the same order: never merge, "
    "split, drop or add segments, even when a sentence runs across segments. Keep names, numbers and the "
    "speaker's tone; do not explain. Reply with one JSON object only."
)


def language_name(lang: str) -> str:
    """``"de"`` → ``"German (de)"`` for the prompt; anything else (``"German"``, ``"pt-BR"``) as given."""
    code = lang.strip()
    name = LANG_NAMES.get(code.lower().split("-")[0].split("_")[0]) if len(code) <= 6 else None
    return f"{name} ({code})" if name else code


def lang_slug(lang: str) -> str:
    """The file-name part for ``lang``: ``transcript.<slug>.srt`` (lower case, letters, digits and ``-``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", lang.strip().lower()).strip("-")[:24].strip("-")
    return slug or "xx"


def file_names(lang: str) -> dict[str, str]:
    """Artifact kind → file name of a translation into ``lang`` (``translation_<lang>_srt`` → ``transcript.de.srt``)."""
    slug = lang_slug(lang)
    return {"json": f"transcript.{slug}.json", "txt": f"transcript.{slug}.txt", "srt": f"transcript.{slug}.srt",
            "vtt": f"transcript.{slug}.vtt"}


def cache_name(lang: str) -> str:
    return f"translation.{lang_slug(lang)}.cache.json"


def same_language(transcript: Mapping[str, Any], lang: str) -> bool:
    """The transcript is already in ``lang`` (by its code): nothing to translate."""
    have = str(transcript.get("language") or "").strip().lower().split("-")[0]
    want = lang.strip().lower().split("-")[0].split("_")[0]
    return bool(have) and have == want


# -- chunks ------------------------------------------------------------------------------------------------------


def _src(seg: Mapping[str, Any]) -> str:
    return " ".join(str(seg.get("text") or "").split())


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _line(i: int, text: str) -> str:
    return json.dumps({"id": i, "text": text}, ensure_ascii=False)


def chunk_ids(segments: list[Mapping[str, Any]], ids: list[int], max_tokens: int = CHUNK_TOKENS,
              model: str = "gpt-4o-mini", max_segments: int = CHUNK_SEGMENTS) -> list[list[int]]:
    """``ids`` (segment indexes, ascending) packed into chunks of consecutive segments within the budget.

    A chunk never spans a segment left out of ``ids`` that has text (one already translated), so each
    request is a run of neighbours the model can read as connected speech; empty segments are skipped.
    A single segment over the budget is a chunk of its own: its timing cannot be split.
    """
    chunks: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i in ids:
        n = count_tokens(_line(i, _src(segments[i])), model) + 1
        gap = bool(cur) and any(_src(segments[j]) for j in range(cur[-1] + 1, i))
        if cur and (gap or used + n > max_tokens or len(cur) >= max_segments):
            chunks.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        chunks.append(cur)
    return chunks


def prompt(segments: list[Mapping[str, Any]], ids: list[int], lang: str) -> str:
    """One chunk's request: the ids it must give back, then one JSON line per segment."""
    want = f"the ids {ids[0]} to {ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) and len(ids) > 1 else \
        "the id" + ("s " if len(ids) > 1 else " ") + ", ".join(map(str, ids))
    return (f"Translate these {len(ids)} transcript segment(s) into {language_name(lang)}. Answer with "
            '{"segments": [{"id": ..., "text": ...}]}' f" holding exactly {want}, one entry each.\n\nSegments:\n"
            + "\n".join(_line(i, _src(segments[i])) for i in ids))


def validate(data: Mapping[str, Any], ids: list[int]) -> dict[int, str]:
    """id → translated text, one for each of ``ids``; :class:`SoftMiss` (with what came back) when some are
    missing, merged away or unknown; ``ValueError`` when nothing usable came back."""
    segs = data.get("segments")
    if not isinstance(segs, list):
        raise ValueError("the answer has no 'segments' list of {id, text} objects")
    wanted = set(ids)
    got: dict[int, str] = {}
    unknown: list[str] = []
    for s in segs:
        if not isinstance(s, Mapping):
            continue
        try:
            sid = int(s.get("id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        text = " ".join(str(s.get("text") or "").split()) if isinstance(s.get("text"), str) else ""
        if sid not in wanted:
            unknown.append(str(sid))
        elif text and sid not in got:
            got[sid] = text
    if not got:
        raise ValueError(f"no segment of {len(ids)} came back translated (expected ids {ids[0]}..{ids[-1]})")
    missing = [i for i in ids if i not in got]
    if missing or unknown:
        said = []
        if missing:
            said.append(f"ids {', '.join(map(str, missing))} missing: give one entry per id, never merge or drop "
                        "segments")
        if unknown:
            said.append(f"ids {', '.join(unknown[:10])} were not asked for")
        raise SoftMiss("; ".join(said), got, [f"{len(missing)} segment(s) missing from an answer"] if missing else [])
    return got


# -- translating -------------------------------------------------------------------------------------------------


@dataclass
class Translation:
    """What a translation produced: the translated transcript and how it came to be."""

    transcript: dict[str, Any]
    outcome: str  # llm | repaired (some chunk needed re-asking) | partial (some segments kept their original text)
    usage: dict[str, int]
    cost_usd: float
    model: str
    chunks: int  # requests made for chunks this run (re-asks and repairs not counted)
    missing: list[int] = field(default_factory=list)  # segment indexes left untranslated
    adjustments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Cache:
    """Translated segments by index with their source hash, and the usage spent so far, in one JSON file."""

    def __init__(self, path: Path, lang: str) -> None:
        self.path = path
        self.lang = lang
        self.segments: dict[str, dict[str, str]] = {}
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.cost = 0.0
        # The Batch API's part (``llm_batch_translate``): jobs, tries, answers' adjustments, a final reason.
        self.batch: dict[str, Any] = {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(doc, dict) and doc.get("lang") == lang:
            self.segments = {k: v for k, v in (doc.get("segments") or {}).items() if isinstance(v, dict)}
            self.usage = {k: int((doc.get("usage") or {}).get(k) or 0) for k in self.usage}
            self.cost = float(doc.get("cost_usd") or 0.0)
            self.batch = dict(doc.get("batch") or {})

    def get(self, i: int, src: str) -> str | None:
        hit = self.segments.get(str(i))
        return hit["text"] if hit and hit.get("src") == _hash(src) and hit.get("text") else None

    def put(self, segments: list[Mapping[str, Any]], got: Mapping[int, str]) -> None:
        for i, text in got.items():
            self.segments[str(i)] = {"src": _hash(_src(segments[i])), "text": text}

    def spend(self, usage: Mapping[str, int], cost: float) -> None:
        for k in self.usage:
            self.usage[k] += int(usage.get(k) or 0)
        self.cost = round(self.cost + cost, 8)

    def save(self) -> None:
        doc = {"lang": self.lang, "segments": self.segments, "usage": self.usage, "cost_usd": self.cost,
               "batch": self.batch}
        atomic_write_bytes(self.path, json.dumps(doc, ensure_ascii=False).encode(), durable=False)


def pending(transcript: Mapping[str, Any], cache: Cache, chunk_tokens: int | None = None,
            model: str = "gpt-4o-mini") -> tuple[list[Mapping[str, Any]], dict[int, str], list[list[int]]]:
    """The segments, those the cache already holds (index → text) and the chunks still to ask for: the
    realtime loop and the Batch API (:mod:`.llm_batch_translate`) ask for exactly the same chunks."""
    segments: list[Mapping[str, Any]] = list(transcript.get("segments") or [])
    done: dict[int, str] = {}
    for i, seg in enumerate(segments):
        hit = cache.get(i, _src(seg)) if _src(seg) else None
        if hit is not None:
            done[i] = hit
    todo = [i for i, seg in enumerate(segments) if _src(seg) and i not in done]
    return segments, done, chunk_ids(segments, todo, chunk_tokens or CHUNK_TOKENS, model)


def translate(transcript: Mapping[str, Any], lang: str, config: LLMConfig, *, cache: Cache,
              client: openai.OpenAI | None = None, home: Path | None = None, chunk_tokens: int | None = None,
              progress: Callable[[float], None] | None = None,
              cancelled: Callable[[], bool] | None = None, ask_llm: bool = True) -> Translation:
    """Translate every segment not in ``cache`` yet, chunk by chunk, saving the cache after each chunk.

    Raises the transport errors of :func:`pipeline.common.llm.map_error` (the cache keeps what
    was done; the usage of answered calls is in it) and :class:`InvalidAnswer` when the model
    gives nothing usable for ``GIVE_UP_AFTER`` chunks in a row. ``cancelled`` is asked between chunks.
    ``ask_llm=False`` asks nothing: the translation is what the cache holds (the Batch API's answers, when
    realtime is off), the rest kept in the original language.
    """
    from pipeline import errors

    segments, done, chunks = pending(transcript, cache, chunk_tokens, config.model)
    if not ask_llm:
        chunks = []
    if chunks and client is None:
        client = make_client(config)
    call = JSONCaller(config, client, schema=WIRE_SCHEMA, name="translation",  # type: ignore[arg-type]
                      system=SYSTEM_PROMPT, home=home)
    spent = {"input_tokens": 0, "output_tokens": 0}
    adjustments: list[str] = list(cache.batch.get("adjustments") or [])  # what batch answers needed
    invalid_run = 0

    def ask(ids: list[int]) -> dict[int, str]:
        """One request; what came back (maybe short). Its usage is booked into the cache at once."""
        src_tokens = sum(count_tokens(_src(segments[i]), config.model) for i in ids)
        call.max_tokens = min(16000, 3 * src_tokens + 12 * len(ids) + 200)  # German runs ~1.3x, CJK more
        before = (call.input_tokens, call.output_tokens)
        try:
            answer = call.ask(prompt(segments, ids, lang), lambda d: validate(d, ids))
            got: dict[int, str] = answer.value
            cache.put(segments, got)
        finally:  # failed tries are billed too: their tokens are booked and kept whatever happens
            used = {"input_tokens": call.input_tokens - before[0], "output_tokens": call.output_tokens - before[1]}
            for k in spent:
                spent[k] += used[k]
            cache.spend(used, cost_usd(used, config)[0])
            cache.save()
        if answer.adjustments:
            adjustments.extend(a for a in answer.adjustments if a not in adjustments)
        done.update(got)
        return got

    log.info("translating %d chunk(s) into %s, model %s", len(chunks), lang, config.model)
    for n, ids in enumerate(chunks):
        if cancelled is not None and cancelled():
            raise errors.Cancelled("cancelled while translating")
        try:
            ask(ids)
            invalid_run = 0
        except InvalidAnswer:
            invalid_run += 1
            if invalid_run >= GIVE_UP_AFTER or len(chunks) == 1:
                raise InvalidAnswer(f"the model gave no usable translation for {invalid_run} chunk(s) in a row",
                                    dict(cache.usage)) from None
            continue
        missing = [i for i in ids if i not in done]
        if missing:  # re-ask the lost ones with the neighbours a merge may have swallowed them into
            _repair(missing, ids, ask, done, adjustments)
        if progress is not None:
            progress((n + 1) / len(chunks))
    missing = [i for i, seg in enumerate(segments) if _src(seg) and i not in done]
    outcome = "partial" if missing else ("repaired" if adjustments else "llm")
    out_segments = []
    for i, seg in enumerate(segments):
        new = {k: v for k, v in seg.items() if k != "words"}  # word times belong to the source words
        new["text"] = done.get(i, _src(seg))
        if i in missing:
            new["untranslated"] = True
        out_segments.append(new)
    translated = {**{k: v for k, v in transcript.items() if k != "segments"}, "language": lang,
                  "translated_from": transcript.get("language"), "segments": out_segments}
    notes = list(call.notes) + [f"Batch API {j}" for j in cache.batch.get("jobs") or []]
    note = cost_usd(spent, config)[1]
    if note:
        notes.append(note)
    if missing:
        adjustments.append(f"{len(missing)} segment(s) kept their original text: ids "
                           + ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else ""))
    return Translation(translated, outcome, dict(cache.usage), cache.cost, config.model, len(chunks), missing,
                       adjustments, notes)


def _repair(missing: list[int], ids: list[int], ask: Callable[[list[int]], dict[int, str]], done: dict[int, str],
            adjustments: list[str]) -> None:
    """A chunk came back short even after the re-ask: the missing segments and their neighbours in one
    smaller request (a merge puts the lost text into a neighbour, whose answer is then replaced), then
    each one still missing alone. What is still missing after that stays missing."""
    chunk = set(ids)
    around = sorted({j for i in missing for j in (i - 1, i, i + 1) if j in chunk})
    log.info("translation: %d segment(s) missing from a chunk; asking %d again", len(missing), len(around))
    try:
        ask(around)
    except InvalidAnswer:
        pass
    for i in [i for i in missing if i not in done]:
        try:
            ask([i])
        except InvalidAnswer:
            continue
    fixed = [i for i in missing if i in done]
    if fixed:
        adjustments.append(f"{len(fixed)} segment(s) dropped or merged by the model were asked again")


def write_files(workdir: Path, lang: str, result: Translation, *, mode: str = "realtime") -> dict[str, str]:
    """``transcript.<lang>.json`` (with how it came to be) and its txt/srt/vtt; artifact kind → path."""
    names = file_names(lang)
    doc = {**result.transcript, "translation": {
        "lang": lang, "outcome": result.outcome, "model": result.model, "usage": result.usage,
        "cost_usd": result.cost_usd, "missing": result.missing, "adjustments": result.adjustments,
        "notes": result.notes, "mode": mode}}
    out: dict[str, str] = {}
    for kind, render in (("txt", formats.to_txt), ("srt", formats.to_srt), ("vtt", formats.to_vtt),
                         ("json", formats.to_json)):
        path = workdir / names[kind]
        atomic_write_bytes(path, render(doc).encode("utf-8"), durable=kind == "json")
        out[f"translation_{kind}"] = str(path)
    return out

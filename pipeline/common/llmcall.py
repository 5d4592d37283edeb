"""One JSON caller for every OpenAI-compatible server: the capability ladder, re-asks, salvage.

Servers differ in what they accept (measured, see NOTES): OpenAI takes strict
``json_schema``; llama.cpp's server answers ``json_schema`` with HTTP 500 and takes only
``text`` and ``json_object``; others answer 400 or 422. Small models ignore "reply in
JSON", wrap it in prose or fences, or run into ``max_tokens`` mid-object. So a call
climbs down a ladder, once per (base_url, model), and the rung that worked is
remembered in ``<home>/llm-capabilities.json``:

    json_schema (strict, with the schema's real constraints)  →  json_object_schema
    (``{"type": "json_object", "schema": …}``: llama.cpp's grammar-constrained JSON)  →
    json_object (schema in the prompt)  →  text (no response_format; the JSON is
    extracted from the reply)

A 400/422/500 whose body names ``response_format``/``json_schema``/a validation error
counts as "this rung is unsupported", never as the item's failure. Optional request
parameters a server refuses by name (``temperature``, ``max_tokens``) are dropped or
renamed and remembered the same way.

The answer is then parsed leniently (fences, prose around the object, an object cut at
``max_tokens`` closed where it broke) and validated by the caller's function, which
raises :class:`SoftMiss` for rule misses it can repair (one re-ask, then the repaired
value) or ``ValueError`` for answers it cannot use (re-asked up to ``max_retries``).
Which outcome the caller got is recorded on the result, so a summary can say what was
adjusted. Transport errors are mapped onto ``pipeline.errors`` by :func:`pipeline.common.llm.map_error`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pipeline.errors import PermanentError

if TYPE_CHECKING:
    import openai

    from pipeline.common.llm import LLMConfig

log = logging.getLogger("tubemill.llm")

RUNGS = ("json_schema", "json_object_schema", "json_object", "text")
CAPS_FILE = "llm-capabilities.json"
DEFAULT_BASE = "https://api.openai.com/v1"
_FORMAT_WORDS = ("response_format", "json_schema", "json schema", "literal_error", "json_object", "grammar",
                 "structured output", "guided_json", "schema")

T = TypeVar("T")


class InvalidAnswer(PermanentError):
    """The model's answer stayed unusable after every re-ask (the caller decides what that costs).

    ``usage`` is what the failed tries spent: they are billed too.
    """

    def __init__(self, message: str, usage: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.usage = usage or {"input_tokens": 0, "output_tokens": 0}


class SoftMiss(ValueError):
    """A usable answer that misses a soft rule: ``repaired`` is what we keep if a re-ask does not fix it."""

    def __init__(self, message: str, repaired: Any, adjustments: list[str]) -> None:
        super().__init__(message)
        self.repaired = repaired
        self.adjustments = adjustments


# -- the remembered ladder ---------------------------------------------------------------------------------------


@dataclass
class Capability:
    """What one (server, model) accepts; learned from its answers."""

    rung: str = RUNGS[0]
    drop_params: list[str] = field(default_factory=list)  # optional parameters the server refused by name
    tokens_param: str = "max_tokens"
    why: str = ""
    learned_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "drop_params": list(self.drop_params), "tokens_param": self.tokens_param,
                "why": self.why, "learned_at": self.learned_at}


_CACHE: dict[tuple[str, str], Capability] = {}  # (home or "", key) -> capability, this process
_CACHE_LOCK = threading.Lock()


def server_key(base_url: str | None, model: str) -> str:
    return f"{(base_url or DEFAULT_BASE).rstrip('/')}|{model}"


def _caps_path(home: Path | None) -> Path | None:
    return Path(home) / CAPS_FILE if home else None


def _read_caps(home: Path | None) -> dict[str, Any]:
    path = _caps_path(home)
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def capability(home: Path | None, base_url: str | None, model: str) -> Capability:
    """The known capability of this server and model (memory, then the home's file, else the top rung)."""
    key = server_key(base_url, model)
    ck = (str(home or ""), key)
    with _CACHE_LOCK:
        if ck in _CACHE:
            return _CACHE[ck]
    raw = _read_caps(home).get(key)
    cap = Capability()
    if isinstance(raw, dict):
        rung = raw.get("rung")
        cap = Capability(rung=rung if rung in RUNGS else RUNGS[0],
                         drop_params=[p for p in raw.get("drop_params") or [] if p in ("temperature", "max_tokens")],
                         tokens_param=raw.get("tokens_param") if raw.get("tokens_param") in (
                             "max_tokens", "max_completion_tokens") else "max_tokens",
                         why=str(raw.get("why") or "")[:300], learned_at=float(raw.get("learned_at") or 0.0))
    with _CACHE_LOCK:
        return _CACHE.setdefault(ck, cap)


def remember(home: Path | None, base_url: str | None, model: str, cap: Capability) -> None:
    """Keep what was learned, in memory and (with a home) on disk, so the next item skips the failed rungs."""
    key = server_key(base_url, model)
    cap.learned_at = time.time()
    with _CACHE_LOCK:
        _CACHE[(str(home or ""), key)] = cap
        path = _caps_path(home)
        if path is None:
            return
        data = _read_caps(home)
        data[key] = cap.to_dict()
        try:
            from state.storage import atomic_write_bytes

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())
        except OSError as exc:
            log.warning("cannot save LLM capabilities to %s: %s", path, exc)


def forget(home: Path | None = None) -> None:
    """Drop what this process learned (tests; ``retry-summaries`` after the user changed the server)."""
    with _CACHE_LOCK:
        for k in [k for k in _CACHE if home is None or k[0] == str(home)]:
            del _CACHE[k]


def known_capabilities(home: Path) -> dict[str, Any]:
    """Every (server|model) → learned capability in the home, for ``tubemill doctor`` and the System page."""
    return _read_caps(home)


# -- endpoint health -----------------------------------------------------------------------------------------------
# When an endpoint refuses connections or the key, every item would spend its own retries finding out. The first
# failure marks it for a short while; summaries meanwhile fall back at once and say why (retry-summaries later).

_DOWN: dict[str, tuple[float, str]] = {}
_DOWN_LOCK = threading.Lock()
DOWN_FOR_S = 30.0
AUTH_DOWN_FOR_S = 300.0


def mark_down(base_url: str | None, reason: str, seconds: float = DOWN_FOR_S) -> None:
    with _DOWN_LOCK:
        _DOWN[(base_url or DEFAULT_BASE).rstrip("/")] = (time.monotonic() + seconds, reason)


def down_reason(base_url: str | None) -> str | None:
    """Why this endpoint is known not to answer right now, or None."""
    key = (base_url or DEFAULT_BASE).rstrip("/")
    with _DOWN_LOCK:
        entry = _DOWN.get(key)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del _DOWN[key]
            return None
        return entry[1]


def clear_down() -> None:
    with _DOWN_LOCK:
        _DOWN.clear()
        _INVALID.clear()


# The last rung of the ladder is "offline": a model whose answers stay unusable item after item (a 135M model
# that writes prose or junk whatever it is asked) is not asked again for a while; each item still says why.
_INVALID: dict[str, int] = {}
UNUSABLE_AFTER = 3
UNUSABLE_FOR_S = 600.0


def note_answer(base_url: str | None, model: str, usable: bool) -> None:
    """Count consecutive unusable answers of a model; at ``UNUSABLE_AFTER`` it is marked down for a while."""
    key = server_key(base_url, model)
    with _DOWN_LOCK:
        n = 0 if usable else _INVALID.get(key, 0) + 1
        _INVALID[key] = n
    if n >= UNUSABLE_AFTER:
        mark_down(key, f"model {model!r} gave unusable answers for {n} items in a row; not asked again for "
                       f"{UNUSABLE_FOR_S / 60:.0f} min (a larger model, or retry-summaries later)", UNUSABLE_FOR_S)


# -- lenient JSON ------------------------------------------------------------------------------------------------

_FENCED = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)


def extract_json(content: str | None) -> tuple[dict[str, Any], str | None]:
    """The reply's JSON object and a note on how it was found (None: the reply was clean JSON).

    Accepts a Markdown fence, prose around the object, and an object cut off mid-way
    (closed at the last complete value). Raises ``ValueError`` when there is no object.
    """
    if not content or not content.strip():
        raise ValueError("the reply was empty")
    text = content.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        first_error = f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    else:
        if isinstance(data, dict):
            return data, None
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    candidates = [m.group(1) for m in _FENCED.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for m in re.finditer(r"\{", cand):
            try:
                obj, _ = decoder.raw_decode(cand, m.start())
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and obj:
                return obj, "JSON taken from a reply with text around it"
    start = text.find("{")
    if start >= 0:
        closed = close_truncated(text[start:])
        if closed is not None:
            return closed, "the reply was cut off; kept the complete part"
    raise ValueError(first_error)


def close_truncated(text: str) -> dict[str, Any] | None:
    """An object cut off mid-way, closed after its last complete value; None when nothing is salvageable."""
    stack: list[str] = []
    in_str = esc = False
    cuts: list[tuple[int, str]] = []  # (end index, closers) where the text so far is a valid prefix
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack:
                break
            stack.pop()
            cuts.append((i + 1, "".join(reversed(stack))))
            if not stack:
                break
        elif ch == "," and stack:
            cuts.append((i, "".join(reversed(stack))))
    for end, closers in reversed(cuts[-50:]):
        try:
            obj = json.loads(text[:end] + closers)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj:
            return obj
    return None


# -- the caller --------------------------------------------------------------------------------------------------


@dataclass
class Answer(Generic[T]):
    value: T
    rung: str
    adjustments: list[str] = field(default_factory=list)  # soft rules the kept answer missed, repaired by us
    notes: list[str] = field(default_factory=list)  # how we got it (rungs stepped down, salvage)


def _status_body(exc: Any) -> str:
    parts = [str(getattr(exc, "message", "") or ""), str(getattr(exc, "body", "") or "")]
    try:
        parts.append(exc.response.text)
    except Exception:  # noqa: BLE001 - any response object shape: we only want its text if there is one
        pass
    return " ".join(parts).lower()


def refuses_format(exc: Any) -> bool:
    """A 400/422/500 that names response_format/json_schema/validation: the rung is unsupported, not the item bad."""
    status = getattr(exc, "status_code", None)
    if status not in (400, 422, 500):
        return False
    body = _status_body(exc)
    return any(w in body for w in _FORMAT_WORDS) or (status in (422, 500) and "validation" in body)


def refused_param(exc: Any, params: tuple[str, ...]) -> str | None:
    """The optional parameter a 400/422 names as unsupported (o-series models refuse temperature/max_tokens)."""
    if getattr(exc, "status_code", None) not in (400, 422):
        return None
    body = _status_body(exc)
    if "unsupported" not in body and "not support" not in body and "unrecognized" not in body \
            and "extra" not in body and "invalid" not in body:
        return None
    for p in params:
        if f"'{p}'" in body or f'"{p}"' in body or f" {p} " in f" {body} ":
            return p
    return None


def system_prompt(rung: str, system: str, schema: dict[str, Any]) -> str:
    """The system message for ``rung``: below strict json_schema the schema is only in the prompt."""
    if rung == "json_schema":
        return system
    return (system + "\nThe JSON object must match this JSON Schema:\n" + json.dumps(schema)
            + "\nReply with the JSON object only: no prose, no Markdown.")


def response_format(rung: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` a request on ``rung`` sends (None on the text rung)."""
    if rung == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if rung == "json_object_schema":
        return {"type": "json_object", "schema": schema}
    if rung == "json_object":
        return {"type": "json_object"}
    return None


class JSONCaller:
    """One conversation with one server for one JSON answer; usage totals across calls.

    ``schema`` is sent as strict json_schema on the top rung and written into the
    system prompt on the lower ones. ``max_tokens`` bounds each reply (local servers
    have small defaults that cut JSON).
    """

    def __init__(self, config: LLMConfig, client: openai.OpenAI, *, schema: dict[str, Any], name: str,
                 system: str, home: Path | None = None, max_tokens: int = 2000, soft_reasks: int = 1) -> None:
        self.config = config
        self.client = client
        self.schema = schema
        self.name = name
        self.system = system
        self.home = home
        self.max_tokens = max_tokens
        self.soft_reasks = soft_reasks
        self.cap = capability(home, config.base_url, config.model)
        self.input_tokens = 0
        self.output_tokens = 0
        self.notes: list[str] = []
        self.calls = 0

    @property
    def rung(self) -> str:
        return self.cap.rung

    def _system(self) -> str:
        return system_prompt(self.cap.rung, self.system, self.schema)

    def ask(self, prompt: str, validate: Callable[[dict[str, Any]], T]) -> Answer[T]:
        """Ask, parse, validate; re-ask with the error on an unusable answer; repair soft misses."""
        messages: list[dict[str, str]] = [{"role": "system", "content": self._system()},
                                          {"role": "user", "content": prompt}]
        error = ""
        kept: SoftMiss | None = None
        soft_left = self.soft_reasks
        tries = self.config.max_retries + 1
        for attempt in range(tries):
            content, finish = self._complete(messages)
            messages[0] = {"role": "system", "content": self._system()}  # the rung may have moved
            salvage = None
            try:
                data, salvage = extract_json(content)
                value = validate(data)
                self._note(salvage)
                return Answer(value, self.cap.rung, [], list(self.notes))
            except SoftMiss as miss:
                kept = miss
                error = str(miss)
                self._note(salvage)
                if soft_left <= 0 or attempt == tries - 1:
                    break
                soft_left -= 1
            except ValueError as e:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
                error = short_error(e)
                if finish == "length":
                    error += " (the reply hit the length limit: answer more briefly)"
                if kept is not None:
                    break  # an earlier answer is usable once repaired: no more tokens on this one
            log.info("%s answer not accepted (try %d of %d): %s", self.name, attempt + 1, tries, error[:300])
            messages = [*messages, {"role": "assistant", "content": content or ""},
                        {"role": "user", "content": "That reply was not valid: " + error
                         + "\nReply again with only the corrected JSON object, matching the schema."}]
        if kept is not None:
            return Answer(kept.repaired, self.cap.rung, list(kept.adjustments), list(self.notes))
        raise InvalidAnswer(f"the model's {self.name} stayed invalid after {tries} tries: {error}",
                            {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens})

    def _note(self, note: str | None) -> None:
        if note and note not in self.notes:
            self.notes.append(note)

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if self.config.temperature is not None and "temperature" not in self.cap.drop_params:
            kw["temperature"] = self.config.temperature
        if self.max_tokens and "max_tokens" not in self.cap.drop_params:
            kw[self.cap.tokens_param] = self.max_tokens
        fmt = response_format(self.cap.rung, self.name, self.schema)
        if fmt is not None:
            kw["response_format"] = fmt
        return kw

    def _complete(self, messages: list[dict[str, str]]) -> tuple[str | None, str | None]:
        import openai

        from pipeline.common.llm import count_tokens, map_error

        for _ in range(8):  # at most every rung and parameter once
            kw = self._request(messages)
            self.calls += 1
            try:
                resp = self.client.chat.completions.create(**kw)
            except openai.APIStatusError as e:
                if self._learn(e, kw):
                    messages[0] = {"role": "system", "content": self._system()}
                    continue
                raise map_error(e, self.config) from e
            except openai.OpenAIError as e:
                raise map_error(e, self.config) from e
            break
        else:  # pragma: no cover - the ladder has fewer steps than the loop
            raise PermanentError("the server refused every request format")
        choice = resp.choices[0] if resp.choices else None
        content = choice.message.content if choice is not None and choice.message is not None else None
        if resp.usage is not None:
            self.input_tokens += resp.usage.prompt_tokens or 0
            self.output_tokens += resp.usage.completion_tokens or 0
        else:
            self.input_tokens += sum(count_tokens(m["content"], self.config.model) for m in messages)
            self.output_tokens += count_tokens(content or "", self.config.model)
            if "usage estimated (server sent none)" not in self.notes:
                self.notes.append("usage estimated (server sent none)")
        return content, getattr(choice, "finish_reason", None)

    def _learn(self, exc: Any, kw: dict[str, Any]) -> bool:
        """Step down the ladder (or drop a refused parameter) and remember it; False: not a capability problem."""
        param = refused_param(exc, tuple(p for p in ("temperature", "max_tokens", "max_completion_tokens")
                                         if p in kw))
        if param in ("max_tokens",) and self.cap.tokens_param == "max_tokens":
            self.cap.tokens_param = "max_completion_tokens"
            note = "server refused max_tokens; using max_completion_tokens"
        elif param in ("temperature", "max_completion_tokens"):
            self.cap.drop_params.append("temperature" if param == "temperature" else "max_tokens")
            note = f"server refused {param}; not sent"
        elif "response_format" in kw and refuses_format(exc):
            old = self.cap.rung
            self.cap.rung = RUNGS[RUNGS.index(old) + 1]
            note = f"server rejected response_format {old} (HTTP {getattr(exc, 'status_code', '?')}); " \
                   f"used {self.cap.rung}"
        else:
            return False
        self.cap.why = note
        log.info("%s %s: %s", self.config.base_url or DEFAULT_BASE, self.config.model, note)
        remember(self.home, self.config.base_url, self.config.model, self.cap)
        if note not in self.notes:
            self.notes.append(note)
        return True


def short_error(e: Exception) -> str:
    """A validation error in a few lines the model (and a user) can act on."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
                         for err in e.errors(include_url=False))[:1500]
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    return str(e)[:1500]


# -- probing (tubemill doctor) -----------------------------------------------------------------------------------

PROBE_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["ok"],
                                "properties": {"ok": {"type": "boolean"}}}


def probe(config: LLMConfig, home: Path | None = None, *, timeout: float = 10.0,
          client: Any | None = None) -> dict[str, Any]:
    """Is the endpoint reachable, is the model listed, which rung does it take, does it have the Batch API?

    Sends one tiny chat request (a few tokens) only when the rung is not known yet. Never
    raises and never puts the key in ``detail``.
    """
    from dataclasses import replace

    import openai

    from pipeline.common.llm import make_client, map_error

    out: dict[str, Any] = {"reachable": False, "model": config.model, "model_listed": None, "rung": None,
                           "batch_api": None, "detail": ""}
    try:
        cfg = replace(config, timeout=timeout, max_retries=0)
        cl = client or make_client(cfg)
        try:
            models = [m.id for m in cl.models.list().data]
            out["reachable"] = True
            out["model_listed"] = config.model in models if models else None
        except openai.NotFoundError:
            out["reachable"] = True  # some servers have no /models
        except openai.APIStatusError as e:
            out["reachable"] = e.status_code not in (401, 403)
            if e.status_code in (401, 403):
                out["detail"] = f"the endpoint refused the API key (HTTP {e.status_code})"
                return out
        except openai.APIConnectionError as e:
            out["detail"] = str(map_error(e, cfg))
            return out
        known = capability(home, config.base_url, config.model)
        if known.learned_at:
            out["rung"] = known.rung
        else:
            caller = JSONCaller(cfg, cl, schema=PROBE_SCHEMA, name="probe", home=home, max_tokens=20, soft_reasks=0,
                                system="Reply with the JSON object {\"ok\": true}.")
            try:
                caller.ask("Reply with {\"ok\": true}.", lambda d: d)
                out["rung"] = caller.rung
                if not caller.cap.learned_at:
                    remember(home, config.base_url, config.model, caller.cap)
            except Exception as e:  # noqa: BLE001 - a probe reports, it never fails the doctor
                out["rung"] = caller.rung
                out["detail"] = f"test request: {type(e).__name__}: {e}"[:300]
        try:
            cl.batches.list(limit=1)
            out["batch_api"] = True
        except openai.APIStatusError as e:
            out["batch_api"] = False if e.status_code in (404, 405, 501) else None
        except openai.OpenAIError:
            out["batch_api"] = None
    except Exception as e:  # noqa: BLE001 - never crash the doctor
        out["detail"] = f"{type(e).__name__}: {e}"[:300]
    from pipeline.common.llm import _scrub

    out["detail"] = _scrub(out["detail"], config)
    return out

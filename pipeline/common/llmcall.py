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

The parts live beside this module: the remembered ladder and what each rung sends in
:mod:`pipeline.common.llm_ladder`, endpoint health in :mod:`pipeline.common.llm_health`, the
lenient parser in :mod:`pipeline.common.llm_json`; their names are importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pipeline.common.llm_health import (
    AUTH_DOWN_FOR_S,
    DOWN_FOR_S,
    UNUSABLE_AFTER,
    UNUSABLE_FOR_S,
    clear_down,
    down_reason,
    mark_down,
    note_answer,
)
from pipeline.common.llm_json import close_truncated, extract_json, short_error
from pipeline.common.llm_ladder import (
    CAPS_FILE,
    DEFAULT_BASE,
    RUNGS,
    Capability,
    capability,
    forget,
    known_capabilities,
    refused_param,
    refuses_format,
    remember,
    response_format,
    server_key,
    system_prompt,
)
from pipeline.errors import PermanentError

if TYPE_CHECKING:
    import openai

    from pipeline.common.llm import LLMConfig

__all__ = [
    "AUTH_DOWN_FOR_S", "CAPS_FILE", "DEFAULT_BASE", "DOWN_FOR_S", "PROBE_SCHEMA", "RUNGS", "UNUSABLE_AFTER",
    "UNUSABLE_FOR_S", "Answer", "Capability", "InvalidAnswer", "JSONCaller", "SoftMiss", "capability", "clear_down",
    "close_truncated", "down_reason", "extract_json", "forget", "known_capabilities", "mark_down", "note_answer",
    "probe", "refused_param", "refuses_format", "remember", "response_format", "server_key", "short_error",
    "system_prompt",
]

log = logging.getLogger("tubemill.llm")

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


# -- the caller --------------------------------------------------------------------------------------------------


@dataclass
class Answer(Generic[T]):
    value: T
    rung: str
    adjustments: list[str] = field(default_factory=list)  # soft rules the kept answer missed, repaired by us
    notes: list[str] = field(default_factory=list)  # how we got it (rungs stepped down, salvage)


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

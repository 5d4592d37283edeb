"""Lenient JSON: the object in a model's reply, found through fences, prose and a cut-off end.

Small models wrap their JSON in Markdown or prose, or run into ``max_tokens`` mid-object; the
caller would re-ask (and pay) for what is salvageable. Also the few-line form of a validation
error that a re-ask sends back to the model. Pure: no network, no state.
"""

from __future__ import annotations

import json
import re
from typing import Any

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


def short_error(e: Exception) -> str:
    """A validation error in a few lines the model (and a user) can act on."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}"
                         for err in e.errors(include_url=False))[:1500]
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
    return str(e)[:1500]

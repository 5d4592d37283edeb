"""The shared JSON caller: the capability ladder against servers that refuse formats the way real ones do,
what is learned kept in the home, lenient parsing of what weak models send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.common import llm, llmcall
from pipeline.common.llm_json import close_truncated, extract_json
from pipeline.common.llmcall import JSONCaller
from pipeline.recipes.transcribe import summary
from tests.llm_server import Cut, FakeLLMServer, error, field_responder, valid_summary

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["answer"],
          "properties": {"answer": {"type": "string"}}}


@pytest.fixture(autouse=True)
def _fresh() -> None:
    llmcall.forget()
    llmcall.clear_down()


def caller(server: FakeLLMServer, home: Path | None = None, **kw: Any) -> JSONCaller:
    cfg = llm.LLMConfig(base_url=server.base_url, model="local-model")
    return JSONCaller(cfg, llm.make_client(cfg), schema=SCHEMA, name="answer", system="Answer in JSON.", home=home,
                      **kw)


def need_answer(d: dict[str, Any]) -> str:
    if not isinstance(d.get("answer"), str) or not d["answer"]:
        raise ValueError("answer: must be a non-empty string")
    return d["answer"]


def test_extract_json_tolerates_fences_prose_and_cut_offs() -> None:
    """Clean JSON, a fenced block inside chatter, JSON after prose and an object cut mid-way are all read."""
    assert extract_json('{"a": 1}') == ({"a": 1}, None)
    assert extract_json('Sure!\n```json\n{"a": [1, 2]}\n```\nBye')[0] == {"a": [1, 2]}
    assert extract_json('The answer is {"a": "x"} as you asked.')[0] == {"a": "x"}
    data, note = extract_json('{"tldr": "ok", "points": ["one", "two", "thr')
    assert data == {"tldr": "ok", "points": ["one", "two"]} and "cut off" in (note or "")
    assert close_truncated('{"a": {"b": 1, "c": [1, 2') == {"a": {"b": 1, "c": [1]}}
    for bad in ("", "   ", "no json here", "[1, 2]", '{"tldr": "cut off'):
        with pytest.raises(ValueError):
            extract_json(bad)
    with pytest.raises(ValueError, match="not valid JSON"):
        extract_json("{nope")


def test_llama_cpp_500_steps_down_once_and_is_remembered_in_the_home(llm_server: FakeLLMServer,
                                                                      tmp_path: Path) -> None:
    """llama.cpp answers json_schema with HTTP 500 (literal_error): grammar-constrained json_object (with the
    schema) is used and written to the home; a later caller (another process: the cache cleared) starts there."""
    llm_server.responder = field_responder("llama_cpp", good={"answer": "42"})
    c = caller(llm_server, tmp_path)
    ans = c.ask("What is it?", need_answer)
    assert ans.value == "42" and ans.rung == "json_object_schema" and any("HTTP 500" in n for n in ans.notes)
    assert llm_server.chat_requests()[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    caps = json.loads((tmp_path / llmcall.CAPS_FILE).read_text())
    assert list(caps.values())[0]["rung"] == "json_object_schema"
    llmcall.forget()
    before = len(llm_server.chat_requests())
    assert caller(llm_server, tmp_path).ask("Again?", need_answer).value == "42"
    assert [r["response_format"]["type"] for r in llm_server.chat_requests()[before:]] == ["json_object"]


def test_a_server_refusing_every_format_gets_plain_text(llm_server: FakeLLMServer) -> None:
    """400 for json_schema and for json_object (422 validation): the text rung, JSON pulled out of the prose."""
    def respond(req: dict[str, Any]) -> Any:
        fmt = (req.get("response_format") or {}).get("type")
        if fmt == "json_schema":
            return error(400, "Unknown response_format type 'json_schema'")
        if fmt == "json_object":
            return 422, {"detail": [{"type": "value_error", "loc": ["body", "response_format"],
                                     "msg": "validation error"}]}, {}
        assert json.dumps(SCHEMA) in req["messages"][0]["content"], "the schema is in the prompt on lower rungs"
        return 'Here you go: {"answer": "plain"} — anything else?'

    llm_server.responder = respond
    ans = caller(llm_server).ask("?", need_answer)
    assert ans.value == "plain" and ans.rung == "text"
    assert [(r.get("response_format") or {}).get("type") for r in llm_server.chat_requests()] == [
        "json_schema", "json_object", "json_object", None]


def test_a_plain_500_is_an_error_not_a_format_problem(llm_server: FakeLLMServer) -> None:
    """A 500 that names no format (a crash) is a NetworkError for the runner to retry; the rung stays."""
    from pipeline.errors import NetworkError

    llm_server.responder = field_responder("server_error")
    c = caller(llm_server)
    with pytest.raises(NetworkError):
        c.ask("?", need_answer)
    assert c.rung == "json_schema" and len(llm_server.chat_requests()) == 1


def test_refused_optional_parameters_are_dropped(llm_server: FakeLLMServer) -> None:
    """o-series style 400s for temperature and max_tokens: dropped/renamed once, remembered, the call succeeds."""
    def respond(req: dict[str, Any]) -> Any:
        if "temperature" in req:
            return error(400, "Unsupported value: 'temperature' does not support 0.2 with this model.",
                         param="temperature", code="unsupported_value")
        if "max_tokens" in req:
            return error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                              "'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
        return json.dumps({"answer": "ok"})

    llm_server.responder = respond
    assert caller(llm_server).ask("?", need_answer).value == "ok"
    last = llm_server.chat_requests()[-1]
    assert "temperature" not in last and last.get("max_completion_tokens") == 2000


def test_cut_reply_is_salvaged_or_reasked(llm_server: FakeLLMServer) -> None:
    """finish_reason=length: a salvageable object is used; one that is not is re-asked with a note to be brief."""
    whole = json.dumps({"answer": "a long answer", "extra": "x" * 50})
    llm_server.responder = lambda req: Cut(whole[: whole.index('"extra"') + 12])
    assert caller(llm_server).ask("?", need_answer).value == "a long answer"
    replies = iter([Cut('{"answer": "never clo'), json.dumps({"answer": "short"})])
    llm_server.responder = lambda req: next(replies)
    assert caller(llm_server).ask("?", need_answer).value == "short"
    assert "length limit" in llm_server.chat_requests()[-1]["messages"][-1]["content"]


def test_summary_soft_misses_are_repaired_not_fatal(llm_server: FakeLLMServer) -> None:
    """One key point, 12 tags, a chapter past the end, a first chapter late: re-asked once, then kept repaired,
    with each adjustment said."""
    bad = valid_summary(key_points=["Only this."], tags=[f"t{i}" for i in range(12)],
                        chapters=[{"start": "00:30", "title": "Late start"}, {"start": 9999, "title": "Past"}])
    llm_server.responder = lambda req: json.dumps(bad)
    tr = {"duration": 120.0, "segments": [{"start": 0.0, "end": 120.0, "text": "Bread. Starter. Oven."}]}
    r = summary.summarize(tr, "Bread", llm.LLMConfig(base_url=llm_server.base_url))
    assert r.outcome == "repaired" and len(llm_server.chat_requests()) == 2
    assert r.summary.key_points == ["Only this."] and len(r.summary.tags) == 10
    assert [(c.start, c.title) for c in r.summary.chapters] == [(0.0, "Late start")]
    said = " ".join(r.adjustments)
    for words in ("1 key point", "first 10 of 12 tags", "past the end", "moved from 00:30"):
        assert words in said, said


def test_probe_reports_rung_and_batch_api(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    """The doctor's probe: reachable, model listing, the rung it takes, and whether /v1/batches exists."""
    llm_server.responder = field_responder("llama_cpp", good={"ok": True})
    llm_server.no_batch_api = True
    out = llmcall.probe(llm.LLMConfig(base_url=llm_server.base_url, model="m", api_key="sk-secret-123456789"),
                        tmp_path)
    assert out["reachable"] and out["rung"] == "json_object_schema" and out["batch_api"] is False
    assert "sk-secret" not in json.dumps(out)
    down = llmcall.probe(llm.LLMConfig(base_url="http://127.0.0.1:9/v1", model="m"), tmp_path, timeout=2)
    assert not down["reachable"] and down["detail"]

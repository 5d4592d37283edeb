"""The LLM summarizer against a local OpenAI-compatible server: the real SDK over real HTTP, never the network."""


from __future__ import annotations

import json
import logging
from typing import Any

import openai
import pytest

from pipeline.common import llm, llmcall
from pipeline.errors import AuthFailed, NetworkError, PermanentError, RateLimited
from pipeline.recipes.transcribe import summary, summary_model
from tests.llm_server import FakeLLMServer, error, valid_summary
from tests.transcribe.test_extractive import multi_topic_transcript

SECRET = "sk-test-DO-NOT-LEAK-0123456789"


@pytest.fixture(autouse=True)
def _no_real_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a developer's real key or server, nor a server quirk remembered by an earlier test."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    llmcall.forget()  # a reused loopback port must not inherit a fallback
    llmcall.clear_down()
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def config(server: FakeLLMServer, **kw: Any) -> llm.LLMConfig:
    return llm.LLMConfig(base_url=server.base_url, **kw)


def short_transcript() -> dict[str, Any]:
    return {"language": "en", "duration": 120.0, "segments": [
        {"start": 0.0, "end": 50.0, "text": "Today we bake sourdough bread."},
        {"start": 50.0, "end": 120.0, "text": "Feed the starter, then bake it in a Dutch oven."}]}


def scripted(*replies: Any) -> Any:
    """A responder that answers with ``replies`` in turn, then repeats the last."""
    queue = list(replies)

    def respond(req: dict[str, Any]) -> Any:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return respond


def test_schema_valid_reply_is_accepted(llm_server: FakeLLMServer) -> None:
    """A valid reply becomes a Summary in one call that asked for strict json_schema output, with timestamps."""
    r = summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert r.summary.engine == "llm" and r.summary.model == "gpt-4o-mini"
    assert r.summary.tags == ["sourdough", "baking", "bread"] and len(r.summary.key_points) == 3
    assert r.chunks == 1 and r.usage == llm_server.usage_sent() and r.usage["input_tokens"] > 0
    (req,) = llm_server.chat_requests()
    fmt = req["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == summary_model.WIRE_SCHEMA
    assert "[00:50] Feed the starter" in req["messages"][-1]["content"]


def test_invalid_json_then_valid_is_retried_with_the_error_fed_back(llm_server: FakeLLMServer) -> None:
    """Broken JSON, then a schema violation, then a valid reply: each retry shows the model what was wrong."""
    too_few = json.dumps(valid_summary(key_points=["only one"]))
    llm_server.responder = scripted('{"tldr": "cut off', too_few, json.dumps(valid_summary()))
    r = summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert r.summary.tldr.startswith("A talk about")
    first, second, third = llm_server.chat_requests()
    assert len(second["messages"]) == len(first["messages"]) + 2
    assert second["messages"][-2] == {"role": "assistant", "content": '{"tldr": "cut off'}
    assert second["messages"][-1]["role"] == "user" and "not valid JSON" in second["messages"][-1]["content"]
    assert "key_points needs 3 to 7" in third["messages"][-1]["content"]
    assert r.usage == llm_server.usage_sent(), "failed attempts are billed too"


def test_chapter_past_the_end_is_fed_back(llm_server: FakeLLMServer) -> None:
    """A chapter starting after the video ends is an error the model is asked to fix."""
    bad = json.dumps(valid_summary(chapters=[{"start": 0, "title": "a"}, {"start": 5000, "title": "b"}]))
    llm_server.responder = scripted(bad, json.dumps(valid_summary()))
    r = summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert [c.start for c in r.summary.chapters] == [0.0, 60.0]
    assert "past the end" in llm_server.chat_requests()[1]["messages"][-1]["content"]


def test_output_still_invalid_after_retries_is_permanent(llm_server: FakeLLMServer) -> None:
    """Three invalid replies (one try plus max_retries=2) fail the item instead of billing forever."""
    llm_server.responder = scripted("[1, 2, 3]")
    with pytest.raises(PermanentError, match="stayed invalid"):
        summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert len(llm_server.chat_requests()) == 3


def test_json_schema_rejected_falls_back_to_json_object(llm_server: FakeLLMServer) -> None:
    """A 400 for json_schema retries with json_object and the schema in the prompt; the server is remembered."""
    def respond(req: dict[str, Any]) -> Any:
        if req["response_format"]["type"] == "json_schema":
            return error(400, "response_format type json_schema is not supported")
        return "```json\n" + json.dumps(valid_summary()) + "\n```"  # local models like fences

    llm_server.responder = respond
    r = summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert r.summary.key_points[0] == "Feed the starter daily."
    assert any("json_object" in n for n in r.notes)
    first, second = llm_server.chat_requests()
    assert first["response_format"]["type"] == "json_schema"
    schema = summary_model.WIRE_SCHEMA
    assert second["response_format"] == {"type": "json_object", "schema": schema}  # grammar where taken
    assert json.dumps(summary_model.WIRE_SCHEMA) in second["messages"][0]["content"]

    summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert [q["response_format"]["type"] for q in llm_server.chat_requests()[2:]] == ["json_object"]


def test_long_transcript_is_mapped_then_reduced(llm_server: FakeLLMServer) -> None:
    """Chunks of timestamped lines go out one per call, then one reduce call; usage is summed and priced."""
    def respond(req: dict[str, Any]) -> str:
        prompt = req["messages"][-1]["content"]
        if prompt.startswith("Video title") and "Notes:" in prompt:
            return json.dumps(valid_summary(tldr="The whole video.",
                                            chapters=[{"start": 0, "title": "Bread"}, {"start": 360, "title": "Bike"},
                                                      {"start": 720, "title": "Budget"}]))
        return json.dumps(valid_summary(tldr="One part.", key_points=["a point"], tags=["part"]))

    llm_server.responder = respond
    tr = multi_topic_transcript()
    r = summary.summarize(tr, "Three skills", config(llm_server, chunk_tokens=200))
    reqs = llm_server.chat_requests()
    assert r.chunks >= 3 and len(reqs) == r.chunks + 1
    maps, reduce = reqs[:-1], reqs[-1]
    assert all(f"This is part {i} of {r.chunks}" in q["messages"][-1]["content"] for i, q in enumerate(maps, 1))
    assert "[06:00] Now let's switch gears" in "".join(q["messages"][-1]["content"] for q in maps)
    notes = json.loads(reduce["messages"][-1]["content"].split("Notes:\n", 1)[1])
    assert len(notes) == r.chunks and notes[-1]["to_s"] == tr["duration"]
    assert r.summary.tldr == "The whole video." and [c.start for c in r.summary.chapters] == [0, 360, 720]
    assert r.usage == llm_server.usage_sent()
    expected = r.usage["input_tokens"] * 0.15 / 1e6 + r.usage["output_tokens"] * 0.60 / 1e6
    assert r.cost_usd == pytest.approx(expected) and r.cost_usd > 0


def test_chunks_respect_the_token_budget_and_keep_every_line() -> None:
    """Chunking never exceeds the budget, keeps order and times, and splits one overlong segment by words."""
    tr = multi_topic_transcript()
    tr["segments"].append({"start": 1080.0, "end": 1090.0, "text": "zebra " * 2000})
    tr["duration"] = 1090.0
    chunks = summary.chunk_transcript(tr, 300)
    assert all(c.tokens <= 300 for c in chunks)
    lines = [ln for c in chunks for ln in c.text.splitlines()]
    assert lines[0].startswith("[00:00] ") and sum(ln.startswith("[18:00] ") for ln in lines) > 1
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert " ".join(ln.split("] ", 1)[1] for ln in lines).count("zebra") == 2000


@pytest.mark.parametrize(("reply", "expected"), [
    (error(401, "Incorrect API key provided", type_="invalid_request_error"), AuthFailed),
    (error(403, "Project does not have access"), PermanentError),
    (error(404, "The model does not exist"), PermanentError),
    (error(500, "The server had an error", type_="server_error"), NetworkError),
    (error(503, "Overloaded", type_="server_error"), NetworkError),
])
def test_http_errors_map_to_the_error_tree(llm_server: FakeLLMServer, reply: Any, expected: type) -> None:
    """401 disables the account, 5xx is retryable, other 4xx fail at once; each raised from the SDK error."""
    llm_server.responder = lambda req: reply
    with pytest.raises(expected) as info:
        summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert type(info.value) is expected and isinstance(info.value.__cause__, openai.APIStatusError)
    assert len(llm_server.chat_requests()) == 1, "the SDK does not retry; the runner schedules retries"


def test_rate_limit_carries_retry_after(llm_server: FakeLLMServer) -> None:
    """429 becomes RateLimited with the server's Retry-After, raised from openai.RateLimitError."""
    llm_server.responder = lambda req: error(429, "Rate limit reached", {"Retry-After": "7"}, type_="requests")
    with pytest.raises(RateLimited) as info:
        summary.summarize(short_transcript(), "Bread", config(llm_server))
    assert info.value.retry_after == 7.0 and info.value.retryable
    assert isinstance(info.value.__cause__, openai.RateLimitError)
    assert llm.retry_after({"retry-after-ms": "1500"}) == 1.5
    assert llm.retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert llm.retry_after({}) is None


def test_connection_refused_is_a_network_error() -> None:
    """A server that is not there is retryable, not a crash."""
    with FakeLLMServer() as srv:
        url = srv.base_url
    with pytest.raises(NetworkError) as info:
        summary.summarize(short_transcript(), "Bread", llm.LLMConfig(base_url=url, timeout=5))
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


def test_api_key_never_in_repr_logs_or_errors(llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """The key reaches the server as a bearer token but never a repr, a log record or an error message."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    cfg = llm.LLMConfig.from_env(base_url=llm_server.base_url)
    explicit = llm.LLMConfig(api_key=SECRET + "-explicit")
    assert SECRET not in repr(cfg) and SECRET not in repr(explicit) and SECRET not in str(explicit)
    assert cfg.configured() and explicit.configured()

    llm_server.responder = scripted("not json", json.dumps(valid_summary()))
    summary.summarize(short_transcript(), "Bread", cfg)
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"

    llm_server.responder = lambda req: error(401, f"Incorrect API key provided: {SECRET}")
    with pytest.raises(AuthFailed) as info:
        summary.summarize(short_transcript(), "Bread", cfg)
    assert SECRET not in str(info.value) and "***" in str(info.value)
    assert caplog.records, "the run did log"
    assert SECRET not in caplog.text


def test_empty_transcript_makes_no_call(llm_server: FakeLLMServer) -> None:
    """Nothing to summarize costs nothing: the offline engine answers and the server is never asked."""
    r = summary.summarize({"language": "en", "duration": 0.0, "segments": []}, "Empty", config(llm_server))
    assert r.summary.engine == "offline" and r.cost_usd == 0 and r.chunks == 0
    assert llm_server.requests == []


def test_config_from_env_and_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL is honoured, dated model names find their price, unknown models cost 0 with a note."""
    assert not llm.LLMConfig().configured()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    cfg = llm.LLMConfig.from_env(model="llama3.1:8b")
    assert cfg.base_url == "http://127.0.0.1:9/v1" and cfg.configured()
    assert llm.cost_usd({"input_tokens": 10**6, "output_tokens": 10**6}, cfg) == (
        0.0, "no price known for model 'llama3.1:8b': cost reported as 0")
    dated = llm.LLMConfig(model="gpt-4o-mini-2024-07-18")
    assert dated.prices() == (0.15, 0.60)
    assert llm.LLMConfig(model="gpt-4o-2024-08-06").prices() == (2.50, 10.00)
    assert llm.cost_usd({"input_tokens": 10**6, "output_tokens": 2 * 10**6}, dated) == (pytest.approx(1.35), None)
    assert llm.LLMConfig(price_in_per_m=1.0, price_out_per_m=2.0).prices() == (1.0, 2.0)


def test_count_tokens_works_offline() -> None:
    """Token counts are positive and grow with text whether or not tiktoken's BPE file is reachable."""
    assert 0 < llm.count_tokens("hello world") < llm.count_tokens("hello world " * 50)
    assert llm.estimate_tokens("abcd" * 100) == 100
    assert llm.estimate_tokens("今日は") == 3
    assert summary_model.timestamp(75) == "01:15" and summary_model.timestamp(3725) == "1:02:05"

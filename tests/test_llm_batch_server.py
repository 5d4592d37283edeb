"""The fake server's Files and Batch APIs, driven by the real openai SDK over loopback HTTP with a fake clock."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.llm_server import BatchSchedule, FakeClock, FakeLLMServer, batch_line, error, from_jsonl, to_jsonl

S = BatchSchedule()  # the defaults: validating 0.2 s, in_progress 0.5 s, finalizing 0.2 s, cancelling 0.2 s


@pytest.fixture
def clock(llm_server: FakeLLMServer) -> FakeClock:
    c = FakeClock()
    llm_server.clock = c
    return c


@pytest.fixture
def client(llm_server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=llm_server.base_url, api_key="x", max_retries=0, timeout=10) as c:
        yield c


def chat(text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def echo(req: dict[str, Any]) -> Any:
    """Answers ``reply to <prompt>``; a prompt starting with ``bad`` gets a 400."""
    prompt = req["messages"][-1]["content"]
    return error(400, "context too long") if prompt.startswith("bad") else f"reply to {prompt}"


def submit(client: openai.OpenAI, lines: list[Any], **kw: Any) -> Any:
    f = client.files.create(file=("requests.jsonl", to_jsonl(lines)), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", **kw)


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    return [] if file_id is None else from_jsonl(client.files.content(file_id).read())


def test_happy_path_advances_with_the_clock(llm_server: FakeLLMServer, clock: FakeClock,
                                            client: openai.OpenAI) -> None:
    """validating -> in_progress (counts grow) -> finalizing -> completed; output complete, shuffled, with usage."""
    llm_server.responder = echo
    ids = [f"item-{i}" for i in range(8)]
    b = submit(client, [batch_line(i, chat(f"prompt {i}")) for i in ids], metadata={"run": "r1"})
    assert llm_server.uploads[0][2:] == ("batch", len(to_jsonl([batch_line(i, chat(f"prompt {i}")) for i in ids])), 8)
    assert b.status == "validating" and b.metadata == {"run": "r1"} and b.request_counts.total == 0
    assert llm_server.batches_created == 1 and llm_server.batch_bodies == []

    clock.advance(S.validating)
    b = client.batches.retrieve(b.id)
    assert b.status == "in_progress" and b.in_progress_at is not None
    assert (b.request_counts.total, b.request_counts.completed) == (8, 0)
    clock.advance(S.in_progress / 2)
    b = client.batches.retrieve(b.id)
    assert b.status == "in_progress" and b.request_counts.completed == 4 and len(llm_server.batch_bodies) == 4
    clock.advance(S.in_progress / 2)
    b = client.batches.retrieve(b.id)
    assert b.status == "finalizing" and b.request_counts.completed == 8 and b.output_file_id is None
    clock.advance(S.finalizing)
    b = client.batches.retrieve(b.id)
    assert b.status == "completed" and b.completed_at is not None and b.error_file_id is None
    assert b.request_counts.model_dump() == {"total": 8, "completed": 8, "failed": 0}

    out = lines_of(client, b.output_file_id)
    assert [ln["custom_id"] for ln in out] != ids and sorted(ln["custom_id"] for ln in out) == ids
    for ln in out:
        body = ln["response"]["body"]
        assert ln["error"] is None and ln["response"]["status_code"] == 200 and ln["id"].startswith("batch_req_")
        assert body["object"] == "chat.completion" and body["usage"]["total_tokens"] > 0
        assert body["choices"][0]["message"]["content"] == f"reply to prompt {ln['custom_id']}"
    assert b.usage is not None and b.usage.input_tokens == llm_server.batch_usage_sent()["input_tokens"]
    meta = client.files.retrieve(b.output_file_id)
    assert meta.purpose == "batch_output" and meta.filename == f"{b.id}_output.jsonl"
    assert llm_server.chat_requests() == [], "batch lines never show up as realtime requests"
    assert llm_server.hits["GET /v1/batches/{batch_id}"] == 4 and llm_server.hits["POST /v1/files"] == 1


def test_responder_errors_go_to_the_error_file(llm_server: FakeLLMServer, clock: FakeClock,
                                               client: openai.OpenAI) -> None:
    """A line the responder answers with an error tuple is counted failed and lands in the error file."""
    llm_server.responder = echo
    b = submit(client, [batch_line("a", chat("fine")), batch_line("b", chat("bad one")), batch_line("c", chat("ok"))])
    clock.advance(S.validating + S.in_progress + S.finalizing)
    b = client.batches.retrieve(b.id)
    assert b.status == "completed" and b.request_counts.model_dump() == {"total": 3, "completed": 2, "failed": 1}
    assert sorted(ln["custom_id"] for ln in lines_of(client, b.output_file_id)) == ["a", "c"]
    (err,) = lines_of(client, b.error_file_id)
    assert err["custom_id"] == "b" and err["error"] is None
    assert err["response"]["status_code"] == 400 and err["response"]["body"]["error"]["message"] == "context too long"


def test_invalid_lines_fail_the_batch(llm_server: FakeLLMServer, clock: FakeClock, client: openai.OpenAI) -> None:
    """Bad JSON, a duplicate custom_id, a wrong url and a wrong method: failed, each line in errors.data."""
    b = submit(client, [batch_line("a", chat("x")), "{not json", batch_line("a", chat("y")),
                        batch_line("d", chat("z"), url="/v1/embeddings"), batch_line("e", chat("w"), method="GET")])
    assert b.status == "validating" and b.errors is None
    clock.advance(S.validating)
    b = client.batches.retrieve(b.id)
    assert b.status == "failed" and b.failed_at is not None and b.in_progress_at is None
    assert [(e.code, e.line) for e in b.errors.data] == [
        ("invalid_json_line", 2), ("duplicate_custom_id", 3), ("invalid_url", 4), ("invalid_method", 5)]
    assert b.output_file_id is None and b.error_file_id is None and llm_server.batch_bodies == []


def test_create_rejects_unknown_file_and_endpoint(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    """An unknown input file, another endpoint or a non-batch file is a 400 at creation, no batch made."""
    with pytest.raises(openai.BadRequestError, match="input_file_id"):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    f = client.files.create(file=("r.jsonl", to_jsonl([batch_line("a", chat("x"))])), purpose="batch")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    other = client.files.create(file=("r.jsonl", b"{}"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert llm_server.batches_created == 0


def test_fail_after_creation_reports_the_token_limit(llm_server: FakeLLMServer, clock: FakeClock,
                                                     client: openai.OpenAI) -> None:
    """fail_after_creation: accepted as validating, then failed with the enqueued-token-limit error."""
    llm_server.fail_after_creation = True
    b = submit(client, [batch_line("a", chat("x"))])
    assert b.status == "validating"
    clock.advance(S.validating)
    b = client.batches.retrieve(b.id)
    (e,) = b.errors.data
    assert b.status == "failed" and e.code == "token_limit_exceeded"
    assert e.message.startswith("Enqueued token limit reached for gpt-4o-mini")
    assert b.output_file_id is None and llm_server.batch_bodies == []


def test_expiry_leaves_a_partial_output(llm_server: FakeLLMServer, clock: FakeClock, client: openai.OpenAI) -> None:
    """expire: expired halfway through in_progress; done lines in the output, the rest batch_expired errors."""
    llm_server.expire = True
    b = submit(client, [batch_line(f"r{i}", chat(f"p{i}")) for i in range(6)])
    clock.advance(S.expiry() - 0.01)
    assert client.batches.retrieve(b.id).status == "in_progress"
    clock.advance(1.0)
    b = client.batches.retrieve(b.id)
    assert b.status == "expired" and b.expired_at is not None and b.finalizing_at is None
    assert b.request_counts.model_dump() == {"total": 6, "completed": 3, "failed": 0}
    out, errs = lines_of(client, b.output_file_id), lines_of(client, b.error_file_id)
    assert len(out) == 3 and len(errs) == 3
    assert sorted(ln["custom_id"] for ln in out + errs) == [f"r{i}" for i in range(6)]
    assert all(e["response"] is None and e["error"]["code"] == "batch_expired" for e in errs)


def test_cancel_goes_through_cancelling(llm_server: FakeLLMServer, clock: FakeClock, client: openai.OpenAI) -> None:
    """cancel mid-run: cancelling, then cancelled with what was done; the rest are batch_cancelled errors."""
    b = submit(client, [batch_line(f"r{i}", chat(f"p{i}")) for i in range(4)])
    clock.advance(S.validating + S.in_progress / 4)
    b = client.batches.cancel(b.id)
    assert b.status == "cancelling" and b.cancelling_at is not None and b.request_counts.completed == 1
    clock.advance(S.cancelling / 2)
    assert client.batches.retrieve(b.id).status == "cancelling"
    clock.advance(S.cancelling)
    b = client.batches.retrieve(b.id)
    assert b.status == "cancelled" and b.cancelled_at is not None and b.request_counts.completed == 1
    assert len(lines_of(client, b.output_file_id)) == 1
    errs = lines_of(client, b.error_file_id)
    assert len(errs) == 3 and {e["error"]["code"] for e in errs} == {"batch_cancelled"}
    assert len(llm_server.batch_bodies) == 1, "cancelled requests never reach the responder"


def test_cancel_of_an_ended_batch_is_refused(llm_server: FakeLLMServer, clock: FakeClock,
                                             client: openai.OpenAI) -> None:
    """A completed batch cannot be cancelled (400); a batch cancelled while validating has no output at all."""
    done = submit(client, [batch_line("a", chat("x"))])
    early = submit(client, [batch_line("a", chat("x"))])
    client.batches.cancel(early.id)
    clock.advance(S.validating + S.in_progress + S.finalizing)
    with pytest.raises(openai.BadRequestError, match="completed"):
        client.batches.cancel(done.id)
    early = client.batches.retrieve(early.id)
    assert early.status == "cancelled" and early.in_progress_at is None and early.output_file_id is None
    assert [e["error"]["code"] for e in lines_of(client, early.error_file_id)] == ["batch_cancelled"]


def test_queued_knobs_apply_to_the_next_batch_only(llm_server: FakeLLMServer, clock: FakeClock,
                                                   client: openai.OpenAI) -> None:
    """queue_batch(fail_after_creation=True) fails one batch; the next one completes."""
    llm_server.queue_batch(fail_after_creation=True)
    first, second = submit(client, [batch_line("a", chat("x"))]), submit(client, [batch_line("a", chat("x"))])
    clock.advance(S.validating + S.in_progress + S.finalizing)
    assert client.batches.retrieve(first.id).status == "failed"
    assert client.batches.retrieve(second.id).status == "completed"


def test_list_pages_newest_first(llm_server: FakeLLMServer, clock: FakeClock, client: openai.OpenAI) -> None:
    """batches.list: limit and after give pages newest first with has_more; auto-paging sees every batch."""
    made = [submit(client, [batch_line("a", chat("x"))]).id for _ in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more is True
    assert [b.id for b in client.batches.list(limit=2, after=page.data[-1].id).data] == made[:1]
    assert [b.id for b in client.batches.list(limit=2)] == made[::-1]


def test_files_api_round_trip(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    """Upload keeps name, purpose and exact bytes; retrieve, content and delete work; unknown ids are 404."""
    data = b'{"a": 1}\r\n{"b": "\xc3\xa9"}\n\n'
    f = client.files.create(file=("in put.jsonl", data), purpose="batch")
    assert (f.object, f.bytes, f.filename, f.purpose) == ("file", len(data), "in put.jsonl", "batch")
    assert llm_server.uploads == [(f.id, "in put.jsonl", "batch", len(data), 2)]
    assert client.files.retrieve(f.id).id == f.id and client.files.content(f.id).read() == data
    assert client.files.delete(f.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_no_batch_api_is_404(llm_server: FakeLLMServer, client: openai.OpenAI) -> None:
    """no_batch_api: files and batches answer 404 like a local server, while chat still works."""
    llm_server.no_batch_api = True
    with pytest.raises(openai.NotFoundError):
        client.files.create(file=("r.jsonl", b"{}\n"), purpose="batch")
    with pytest.raises(openai.NotFoundError):
        client.batches.list()
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_000001")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert json.loads(reply.choices[0].message.content)["tags"] == ["sourdough", "baking", "bread"]
    assert llm_server.uploads == [] and llm_server.batches_created == 0


def test_real_clock_by_default() -> None:
    """With the default monotonic clock and a short schedule, a polled batch completes on its own."""
    fast = BatchSchedule(validating=0.02, in_progress=0.05, finalizing=0.02)
    with FakeLLMServer(schedule=fast) as srv, openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0) as c:
        b = submit(c, [batch_line(f"r{i}", chat(f"p{i}")) for i in range(3)])
        seen = [b.status]
        deadline = time.monotonic() + 3
        while b.status != "completed" and time.monotonic() < deadline:
            time.sleep(0.01)
            b = c.batches.retrieve(b.id)
            seen.append(b.status)
        assert b.status == "completed" and len(lines_of(c, b.output_file_id)) == 3
        assert seen[0] == "validating" and "in_progress" in seen

"""Summaries through the Batch API: prepare/split/validate, then the whole lifecycle through the engine
against the local OpenAI-compatible server (real SDK over HTTP): happy path, error lines, failure after
creation, expiry with partial output, restart while in progress, no Batch API, splitting, cancel."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.common.llm import LLMConfig, cost_usd
from pipeline.engine.core import Engine
from pipeline.recipes.transcribe.llm_batch import resolve_mode
from pipeline.recipes.transcribe.llm_batch_lines import (
    BatchLimits,
    build_body,
    custom_id,
    request_line,
    split_lines,
    validate_line,
)
from pipeline.recipes.transcribe.llm_batch_results import parse_results
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings
from tests.llm_server import FakeClock, FakeLLMServer, error, valid_summary

GOOD = json.dumps(valid_summary(chapters=[{"start": 0, "title": "Opening"}]))
TRANSCRIPT = {"language": "en", "duration": 8.0, "segments": [{"start": 0.0, "end": 8.0, "text": "Hello there."}]}


# ---------------------------------------------------------------- prepare
def lines(n: int, words: int = 5) -> list[dict[str, Any]]:
    cfg = LLMConfig(model="gpt-4o-mini")
    out = []
    for i in range(n):
        tr = {**TRANSCRIPT, "segments": [{"start": 0.0, "end": 8.0, "text": f"item {i} " + "word " * words}]}
        body = build_body(tr, f"t{i}", cfg)
        assert body is not None
        out.append(request_line(custom_id("b1", i + 1, "summarize", body), body))
    return out


def test_custom_ids_are_stable_and_unique() -> None:
    """The same request gets the same id; different items and contents differ."""
    a, b = lines(2)
    assert a["custom_id"] == lines(1)[0]["custom_id"] and a["custom_id"] != b["custom_id"]
    assert a["custom_id"].startswith("tm-b1-1-summarize-")


def test_split_by_requests_bytes_and_tokens() -> None:
    """Files split at the request limit, the byte limit and a configured enqueued-token limit."""
    ls = lines(5, words=50)
    assert [len(f) for f in split_lines(ls, BatchLimits(max_requests=2))] == [2, 2, 1]
    size = len(json.dumps(ls[0]).encode()) + 1
    assert [len(f) for f in split_lines(ls, BatchLimits(max_bytes=size * 3 + 10))] == [3, 2]
    one = sum(len(m["content"]) for m in ls[0]["body"]["messages"]) // 4
    assert len(split_lines(ls, BatchLimits(max_enqueued_tokens=int(one * 2.5)))) >= 2


def test_lines_are_validated_before_upload() -> None:
    """A malformed line or a duplicate custom_id is refused before anything is sent."""
    good = lines(1)[0]
    with pytest.raises(ValueError, match="url"):
        validate_line({**good, "url": "/v1/embeddings"})
    with pytest.raises(ValueError, match="keys"):
        validate_line({**good, "extra": 1})
    with pytest.raises(ValueError, match="duplicate"):
        split_lines([good, dict(good)], BatchLimits())


def test_results_match_by_custom_id_whatever_the_order() -> None:
    """Output lines in any order, error-file lines and schema-invalid bodies are told apart per custom_id."""
    def ok(cid: str, content: str) -> str:
        return json.dumps({"id": "r", "custom_id": cid, "error": None, "response": {"status_code": 200, "body": {
            "choices": [{"message": {"content": content}}], "usage": {"prompt_tokens": 100, "completion_tokens": 20}}}})
    out = "\n".join([ok("c3", GOOD), ok("c1", GOOD), ok("c2", json.dumps({"tldr": 5}))])
    err = json.dumps({"id": "r", "custom_id": "c4", "response": None,
                      "error": {"code": "batch_expired", "message": "expired"}})
    res = parse_results(out, err, {"c1": 8.0, "c2": 8.0, "c3": 8.0}, "gpt-4o-mini")
    assert res["c1"].ok and res["c3"].ok and res["c1"].usage == {"input_tokens": 100, "output_tokens": 20}
    assert not res["c2"].ok and "invalid summary" in res["c2"].error
    assert not res["c4"].ok and "batch_expired" in res["c4"].error


def test_auto_mode_picks_batch_for_big_batches_without_deadline() -> None:
    """auto: Batch API above the threshold, realtime below it or with a deadline."""
    assert resolve_mode("auto", 500, 100) == "batch"
    assert resolve_mode("auto", 50, 100) == "realtime"
    assert resolve_mode("auto", 500, 100, deadline="2026-12-01") == "realtime"


# ---------------------------------------------------------------- lifecycle through the engine
@pytest.fixture
def talks(tmp_path: Path, media_files: dict[str, Path]) -> Path:
    folder = tmp_path / "talks"
    folder.mkdir()
    for name in ("mp3", "m4a", "webm"):
        shutil.copy(media_files[name], folder / media_files[name].name)
    return folder


@pytest.fixture
def llm_env(llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch) -> FakeLLMServer:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-0123456789abcdef")
    llm_server.responder = lambda req: GOOD
    return llm_server


def start(make_engine: Callable[..., Engine], talks: Path, name: str = "talks",
          limits: BatchLimits | None = None, **kw: Any) -> Engine:
    e = make_engine(settings=fast_settings(llm_batch_poll_s=0.05), **kw)
    if limits and e.services.get("llm_batch"):
        e.services["llm_batch"].limits = limits
    items = [x.to_item() for x in expand(str(talks)).entries]
    e.submit(name, items, recipe="transcribe",
             options={"summarizer": "llm", "llm_mode": "batch", "llm_mode_effective": "batch"})
    return e


def jobs(e: Engine, name: str = "talks") -> list[dict[str, Any]]:
    return e.store.header(e.store.resolve(name)).get("llm_jobs") or []  # type: ignore[union-attr]


def wait_until(cond: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_happy_path_one_job_half_price(make_engine: Callable[..., Engine], talks: Path,
                                       llm_env: FakeLLMServer) -> None:
    """Three items wait for one Batch API job, ingest its results, and cost half the realtime price."""
    e = start(make_engine, talks)
    s = e.wait("talks", timeout=120)
    assert s.counts["done"] == 3, [it["error"] for it in e.items("talks")]
    assert len(llm_env.uploads) == 1 and llm_env.batches_created == 1 and not llm_env.chat_requests()
    for it in e.items("talks"):
        m = it["meta"]
        assert m["llm_mode"] == "batch" and m["summary_engine"] == "llm"
        full, _ = cost_usd(m["llm_usage"], LLMConfig(model="gpt-4o-mini"))
        assert m["llm_cost_usd"] == pytest.approx(full / 2, abs=1e-6) and full > 0
        assert (Path(it["workdir"]) / "summary.md").read_text().startswith("# ")
    assert jobs(e)[0]["status"] == "completed" and jobs(e)[0]["ingested"]
    folder = Path(e.summary("talks").output_dir)
    ledger = json.loads((folder / "stats.json").read_text())["llm"]
    assert ledger["by_mode"]["batch"]["items"] == 3 and ledger["cost_usd"] > 0
    rows = json.loads((folder / "manifest.json").read_text())["items"]
    assert {r["llm"]["mode"] for r in rows} == {"batch"}


def test_error_lines_are_retried_in_a_new_job(make_engine: Callable[..., Engine], talks: Path,
                                              llm_env: FakeLLMServer) -> None:
    """A request that fails inside the batch is submitted again in a new job; the others are kept."""
    seen: dict[str, int] = {}

    def responder(req: dict[str, Any]) -> Any:
        text = json.dumps(req["messages"])
        if "talk-bravo" in text:
            seen["bravo"] = seen.get("bravo", 0) + 1
            if seen["bravo"] == 1:
                return error(500, "internal error", type_="server_error")
        return GOOD

    llm_env.responder = responder
    e = start(make_engine, talks)
    assert e.wait("talks", timeout=120).counts["done"] == 3
    assert len(llm_env.uploads) == 2 and [j["request_counts"]["total"] for j in jobs(e)] == [3, 1]
    assert not llm_env.chat_requests()


def test_failure_after_creation_is_reported_and_retried(make_engine: Callable[..., Engine], talks: Path,
                                                        llm_env: FakeLLMServer) -> None:
    """Creation succeeds, then the job fails (enqueued-token limit): the failure is recorded, the work resubmitted."""
    llm_env.queue_batch(fail_after_creation=True)
    e = start(make_engine, talks)
    assert e.wait("talks", timeout=120).counts["done"] == 3
    first = jobs(e)[0]
    assert first["status"] == "failed" and "Enqueued token limit" in first["failure"]
    assert llm_env.batches_created == 2


def test_expiry_keeps_partial_results(make_engine: Callable[..., Engine], talks: Path,
                                      llm_env: FakeLLMServer) -> None:
    """An expired job's finished lines are ingested; only the rest go into a new job."""
    llm_env.queue_batch(expire=True)
    e = start(make_engine, talks)
    assert e.wait("talks", timeout=120).counts["done"] == 3
    first, second = jobs(e)
    assert first["status"] == "expired"
    assert 0 < second["request_counts"]["total"] < 3


def test_restart_while_in_progress_resumes_without_resubmitting(make_engine: Callable[..., Engine], talks: Path,
                                                                 llm_env: FakeLLMServer, home: Path) -> None:
    """The engine stops while the job runs; a new engine on the same home polls it to the end, no second upload."""
    clock = FakeClock()
    llm_env.clock = clock
    a = start(make_engine, talks)
    wait_until(lambda: bool(jobs(a)) and jobs(a)[0].get("batch_id") is not None)
    clock.advance(llm_env.schedule.validating + 0.05)
    wait_until(lambda: jobs(a)[0]["status"] == "in_progress")
    a.shutdown(interrupt=True)
    b = make_engine(settings=fast_settings(llm_batch_poll_s=0.05))
    assert b.owner and b.summary("talks").counts["parked"] == 3
    clock.advance(10)
    assert b.wait("talks", timeout=120).counts["done"] == 3
    assert len(llm_env.uploads) == 1 and llm_env.batches_created == 1


def test_endpoint_without_batch_api_falls_back_to_realtime(make_engine: Callable[..., Engine], talks: Path,
                                                           llm_env: FakeLLMServer) -> None:
    """A local server with no /v1/batches: summaries run realtime, and the batch says why."""
    llm_env.no_batch_api = True
    e = start(make_engine, talks)
    assert e.wait("talks", timeout=120).counts["done"] == 3
    assert len(llm_env.chat_requests()) == 3
    assert "no Batch API" in e.store.header(e.store.resolve("talks"))["llm_note"]  # type: ignore[union-attr]
    assert {it["meta"]["llm_mode"] for it in e.items("talks")} == {"realtime"}


def test_split_at_the_request_limit(make_engine: Callable[..., Engine], talks: Path,
                                    llm_env: FakeLLMServer) -> None:
    """With a limit of 2 requests a file, three items go out in two files."""
    e = start(make_engine, talks, limits=BatchLimits(max_requests=2))
    assert e.wait("talks", timeout=120).counts["done"] == 3
    assert sorted(u.n_lines for u in llm_env.uploads) == [1, 2]


def test_cancel_cancels_the_batch_api_job(make_engine: Callable[..., Engine], talks: Path,
                                          llm_env: FakeLLMServer) -> None:
    """Cancelling the Tubemill batch cancels its Batch API job."""
    clock = FakeClock()
    llm_env.clock = clock
    e = start(make_engine, talks)
    wait_until(lambda: bool(jobs(e)) and jobs(e)[0].get("batch_id") is not None)
    e.cancel("talks")
    assert llm_env.batch_status(jobs(e)[0]["batch_id"]) in ("cancelling", "cancelled")
    assert e.wait("talks", timeout=30).counts["cancelled"] == 3


def test_four_step_commands_over_finished_items(make_engine: Callable[..., Engine], talks: Path,
                                                llm_env: FakeLLMServer, home: Path) -> None:
    """prepare → submit → status → ingest over an already finished batch; each step is safe to run twice."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    e = make_engine()
    e.submit("old", [x.to_item() for x in expand(str(talks)).entries], recipe="transcribe",
             options={"summarizer": "offline"})
    assert e.wait("old", timeout=120).counts["done"] == 3
    e.shutdown()

    def tm(*args: str) -> str:
        env = {**cli_env(home), "OPENAI_BASE_URL": llm_env.base_url, "OPENAI_API_KEY": "sk-test-0123456789abcdef"}
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), "llm-batch", *args],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "prepared 3 request(s) in 1 file(s)" in tm("prepare", "--all")
    tm("submit")
    tm("submit")
    assert len(llm_env.uploads) == 1 and llm_env.batches_created == 1
    deadline = time.monotonic() + 30
    while "completed" not in tm("status"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "ingested 3 summary(ies), 0 failed" in tm("ingest")
    assert "ingested 0 summary(ies)" in tm("ingest")
    for it in e.items("old"):
        doc = json.loads((Path(it["workdir"]) / "summary.json").read_text())
        assert doc["engine"] == "llm" and doc["mode"] == "batch"
    assert "prepared 0 request(s)" in tm("prepare", "old")

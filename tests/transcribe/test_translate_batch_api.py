"""``--translate-to`` under ``--llm-mode batch``: the translation's chunks go through the Batch API of the local
OpenAI-compatible server (real SDK over HTTP), one line per chunk; the item parks, the answers fill the
translation cache at the Batch price and the same files as realtime are written; a job that fails or expires
ends in a new job for what is missing, then realtime, and the item is done either way."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.common import formats, llmcall
from pipeline.common.llm import LLMConfig, cost_usd
from pipeline.engine.core import Engine
from pipeline.recipes.transcribe import translate as tr
from pipeline.recipes.transcribe.llm_batch_lines import BatchLimits
from pipeline.recipes.transcribe.llm_batch_results import parse_results
from pipeline.recipes.transcribe.llm_batch_translate import custom_id, is_translation_id
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings
from tests.llm_server import BatchSchedule, FakeClock, FakeLLMServer, from_jsonl
from tests.media_server import MediaServer
from tests.transcribe.test_summary_outcomes import QUICK_RETRY, assert_core_files, point_at
from tests.transcribe.test_translate import asked, is_translation, translator

MODEL = LLMConfig(model="gpt-4o-mini")


@pytest.fixture(autouse=True)
def _fresh_ladder() -> None:
    llmcall.forget()
    llmcall.clear_down()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunk budget small enough that the captioned talk's segments go out as several chunks."""
    monkeypatch.setattr(tr, "CHUNK_TOKENS", 40)


def run_batch(make_engine: Callable[..., Engine], media_server: MediaServer, name: str,
              limits: BatchLimits | None = None, **options: Any) -> tuple[Engine, dict[str, Any]]:
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY, llm_batch_poll_s=0.05))
    if limits is not None:
        e.services["llm_batch"].limits = limits
    e.submit(name, [x.to_item() for x in expand(media_server.url("/captioned.html")).entries], recipe="transcribe",
             options={"translate_to": "de", "llm_mode": "batch", "llm_mode_effective": "batch", **options})
    s = e.wait(name, timeout=120)
    assert s.state == "done", s
    (it,) = e.items(name)
    assert_core_files(it)
    return e, it


def uploaded_lines(server: FakeLLMServer) -> list[list[dict[str, Any]]]:
    """Each uploaded input file's request lines, in upload order."""
    return [from_jsonl(server.files[u.file_id].data) for u in server.uploads]


def translation_lines(server: FakeLLMServer) -> list[list[dict[str, Any]]]:
    return [[ln for ln in f if is_translation_id(ln["custom_id"])] for f in uploaded_lines(server)]


def realtime_usage(server: FakeLLMServer) -> dict[str, int]:
    """Tokens the chat route reported (``usage_sent`` would also count the batch objects' own usage)."""
    bodies = [b for _, b in server.responses if isinstance(b, dict) and b.get("object") == "chat.completion"]
    return {"input_tokens": sum(b["usage"]["prompt_tokens"] for b in bodies),
            "output_tokens": sum(b["usage"]["completion_tokens"] for b in bodies)}


def assert_translated_files(wd: Path) -> dict[str, Any]:
    """transcript.de.* exist, every text segment translated, with the English segments' timing exactly."""
    en = json.loads((wd / "transcript.json").read_text())
    de = json.loads((wd / "transcript.de.json").read_text())
    assert [(s["start"], s["end"]) for s in de["segments"]] == [(s["start"], s["end"]) for s in en["segments"]]
    assert all(s["text"].startswith("[de] ") for s in de["segments"] if s["text"]), de["segments"]
    for ext in ("txt", "srt", "vtt"):
        assert "[de] " in (wd / f"transcript.de.{ext}").read_text(), ext
    starts_en = {c["start"] for c in formats.parse_srt((wd / "transcript.srt").read_text())}
    assert starts_en <= {c["start"] for c in formats.parse_srt((wd / "transcript.de.srt").read_text())}
    return de


def test_custom_ids_name_the_stage_and_chunk_and_answers_stay_raw() -> None:
    """A chunk's id names batch, item, stage and chunk; its result line is kept raw (not read as a summary)."""
    cid = custom_id("b1", 3, 2, {"model": "m", "messages": []})
    assert cid.startswith("tm-b1-3-translate-2-") and is_translation_id(cid)
    assert cid == custom_id("b1", 3, 2, {"model": "m", "messages": []})
    assert not is_translation_id("tm-b1-3-summarize-0123456789ab")
    line = {"custom_id": cid, "response": {"status_code": 200, "body": {
        "choices": [{"message": {"content": '{"segments": [{"id": 0, "text": "Hallo"}]}'}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5}}}}
    (res,) = parse_results(json.dumps(line), "", {}, "gpt-4o-mini").values()
    assert res.ok and res.content and res.summary is None and res.usage == {"input_tokens": 10, "output_tokens": 5}


def test_batch_mode_sends_every_chunk_through_the_batch_api(make_engine: Callable[..., Engine],
                                                            media_server: MediaServer, llm_server: FakeLLMServer,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            small_chunks: None) -> None:
    """Summary and translation both through the Batch API, no realtime request at all: one line per chunk,
    each id asked once, the same timing, and the translation billed at half the realtime price."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    e, it = run_batch(make_engine, media_server, "bde", summarizer="llm")
    assert llm_server.chat_requests() == [], "nothing went realtime"
    chunks = [ln for f in translation_lines(llm_server) for ln in f]
    assert len(chunks) >= 2, "the small budget splits the talk into several chunks"
    bid = e.store.resolve("bde")  # type: ignore[union-attr]
    assert all(ln["custom_id"].startswith(f"tm-{bid}-{it['n']}-translate-") for ln in chunks)
    asked_ids = [s["id"] for ln in chunks for s in asked(ln["body"])]
    assert len(asked_ids) == len(set(asked_ids)), "each segment in exactly one line"
    wd = Path(it["workdir"])
    de = assert_translated_files(wd)
    assert de["translation"]["mode"] == "batch" and de["translation"]["outcome"] == "llm"
    meta = it["meta"]
    assert meta["translation_outcome"] == "llm" and not any(f.startswith("translation-") for f in it["flags"])
    usage = meta["translation_usage"]
    assert usage["input_tokens"] > 0
    assert meta["translation_cost_usd"] == pytest.approx(cost_usd(usage, MODEL)[0] / 2, abs=1e-6)
    assert meta["llm_usage"] == llm_server.batch_usage_sent()  # summary + translation, each counted once
    ledger = json.loads((Path(e.summary("bde").output_dir) / "stats.json").read_text())["llm"]
    assert ledger["by_mode"]["batch"]["cost_usd"] == pytest.approx(cost_usd(meta["llm_usage"], MODEL)[0] / 2,
                                                                   abs=1e-6)
    assert not list(wd.glob(".llm_realtime"))


def test_failed_jobs_fall_back_to_realtime_and_the_item_is_done(make_engine: Callable[..., Engine],
                                                                media_server: MediaServer,
                                                                llm_server: FakeLLMServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Batch API jobs fail after creation (the enqueued-token limit): the work goes out once more, then the
    translation is asked realtime; the item is done with the translated files."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    llm_server.queue_batch(fail_after_creation=True)
    llm_server.queue_batch(fail_after_creation=True)
    e, it = run_batch(make_engine, media_server, "bfail", summarizer="offline")
    assert llm_server.batches_created == 2 and llm_server.batch_bodies == []
    first, second = e.batch_header("bfail")["llm_jobs"]
    assert first["status"] == second["status"] == "failed" and "Enqueued token limit" in first["failure"]
    reqs = llm_server.chat_requests()
    assert reqs and all(is_translation(r) for r in reqs)
    de = assert_translated_files(Path(it["workdir"]))
    assert it["meta"]["translation_outcome"] == "llm" and de["translation"]["mode"] == "realtime"
    spent = realtime_usage(llm_server)
    assert it["meta"]["translation_usage"] == spent and spent["input_tokens"] > 0  # nothing came by batch
    assert it["meta"]["translation_cost_usd"] == pytest.approx(cost_usd(spent, MODEL)[0], abs=1e-6)


def test_expired_job_keeps_its_answers_and_only_the_rest_go_again(make_engine: Callable[..., Engine],
                                                                  media_server: MediaServer,
                                                                  llm_server: FakeLLMServer,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  small_chunks: None) -> None:
    """The first job expires halfway: its finished chunks are kept in the cache, the second job asks only for
    the others, nothing goes realtime, and the cost is every batch answer at half price."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    llm_server.queue_batch(expire=True)
    e, it = run_batch(make_engine, media_server, "bexp", summarizer="offline")
    first, second = translation_lines(llm_server)
    assert 0 < len(second) < len(first)
    ids_first = {s["id"] for ln in first for s in asked(ln["body"])}
    ids_second = {s["id"] for ln in second for s in asked(ln["body"])}
    assert ids_second < ids_first
    assert llm_server.chat_requests() == []
    jobs = e.batch_header("bexp")["llm_jobs"]
    assert [j["status"] for j in jobs] == ["expired", "completed"]
    de = assert_translated_files(Path(it["workdir"]))
    assert de["translation"]["mode"] == "batch"
    usage = it["meta"]["translation_usage"]
    assert usage == llm_server.batch_usage_sent()
    assert it["meta"]["translation_cost_usd"] == pytest.approx(cost_usd(usage, MODEL)[0] / 2, abs=1e-6)
    ledger = json.loads((Path(e.summary("bexp").output_dir) / "stats.json").read_text())["llm"]
    assert list(ledger["by_mode"]) == ["batch"], "the offline summary spent nothing: the spend is the batch's"
    assert ledger["cost_usd"] == pytest.approx(it["meta"]["translation_cost_usd"], abs=1e-6)


def test_offline_stays_a_note_in_batch_mode(make_engine: Callable[..., Engine], media_server: MediaServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLM at all: batch mode changes nothing, the item is done with the "needs an LLM" note, never parked."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    e, it = run_batch(make_engine, media_server, "boff", summarizer="offline")
    assert it["meta"]["translation_outcome"] == "offline" and it["meta"]["translation_reason"] == tr.NEEDS_LLM
    assert not e.batch_header("boff").get("llm_jobs")
    assert not list(Path(it["workdir"]).glob("transcript.de.*"))


def test_dropped_segments_go_out_alone_in_a_new_job(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                    llm_server: FakeLLMServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that drops the second segment of every longer chunk (a batch answer cannot be re-asked): the rest
    is kept, the dropped ones go out alone in a second job and come back; outcome ``repaired``, no realtime."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator(drop=lambda ids: {ids[1]} if len(ids) > 1 else set())
    _, it = run_batch(make_engine, media_server, "bdrop", summarizer="offline")
    first, second = translation_lines(llm_server)
    dropped = sorted(asked(ln["body"])[1]["id"] for ln in first if len(asked(ln["body"])) > 1)
    assert dropped and sorted(s["id"] for ln in second for s in asked(ln["body"])) == dropped
    assert all(len(asked(ln["body"])) == 1 for ln in second)
    assert llm_server.chat_requests() == []
    assert_translated_files(Path(it["workdir"]))
    assert it["meta"]["translation_outcome"] == "repaired" and "translation-repaired" in it["flags"]


def test_without_realtime_fallback_a_failed_job_is_a_flag(make_engine: Callable[..., Engine],
                                                          media_server: MediaServer, llm_server: FakeLLMServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``llm_fallback_realtime`` off and both jobs failed: no realtime request, no translated file; the item is
    done, its translation flagged failed with the Batch API's reason (a retry can ask again)."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    llm_server.queue_batch(fail_after_creation=True)
    llm_server.queue_batch(fail_after_creation=True)
    _, it = run_batch(make_engine, media_server, "bnort", summarizer="offline", llm_fallback_realtime=False)
    assert llm_server.batches_created == 2 and llm_server.chat_requests() == []
    assert it["meta"]["translation_outcome"] == "failed" and "translation-failed" in it["flags"]
    assert "Batch API" in it["meta"]["translation_reason"] and "Enqueued token limit" in it["meta"][
        "translation_reason"]
    wd = Path(it["workdir"])
    assert not list(wd.glob("transcript.de.*"))
    assert "final" not in json.loads((wd / tr.cache_name("de")).read_text())["batch"]


def test_restart_while_the_translation_job_runs_resumes_it(make_engine: Callable[..., Engine],
                                                           media_server: MediaServer, llm_server: FakeLLMServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine stops while the translation's job is in progress; a new engine on the same home polls it to
    the end and writes the files: one upload, one job, nothing realtime."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    clock = FakeClock()
    llm_server.clock = clock
    a = make_engine(settings=fast_settings(retry=QUICK_RETRY, llm_batch_poll_s=0.05))
    a.submit("brs", [x.to_item() for x in expand(media_server.url("/captioned.html")).entries], recipe="transcribe",
             options={"translate_to": "de", "llm_mode": "batch", "llm_mode_effective": "batch",
                      "summarizer": "offline"})

    def job() -> dict[str, Any]:
        return (a.batch_header("brs").get("llm_jobs") or [{}])[0]

    deadline = time.monotonic() + 60
    while job().get("status") != "validating":
        assert time.monotonic() < deadline, "no Batch API job"
        time.sleep(0.05)
    clock.advance(llm_server.schedule.validating + 0.05)
    while job().get("status") != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    a.shutdown(interrupt=True)
    b = make_engine(settings=fast_settings(retry=QUICK_RETRY, llm_batch_poll_s=0.05))
    assert b.summary("brs").counts["parked"] == 1
    clock.advance(10)
    assert b.wait("brs", timeout=60).state == "done"
    (it,) = b.items("brs")
    assert_translated_files(Path(it["workdir"]))
    assert len(llm_server.uploads) == 1 and llm_server.batches_created == 1 and llm_server.chat_requests() == []
    assert it["meta"]["translation_outcome"] == "llm"


def test_a_split_request_waits_for_all_its_jobs(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                llm_server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch,
                                                small_chunks: None) -> None:
    """One line a file: the item's chunks go out in two jobs; the first fails, the second completes. The item
    waits for both, then asks again for the failed chunk alone (the other's answer is kept), no realtime."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    llm_server.queue_batch(fail_after_creation=True)  # ends after 0.2 s
    llm_server.queue_batch(schedule=BatchSchedule(in_progress=1.5))  # still running when the first is ingested
    e, it = run_batch(make_engine, media_server, "bsplit", limits=BatchLimits(max_requests=1), summarizer="offline")
    assert [u.n_lines for u in llm_server.uploads] == [1, 1, 1]
    assert [j["status"] for j in e.batch_header("bsplit")["llm_jobs"]] == ["failed", "completed", "completed"]
    first, _, third = translation_lines(llm_server)
    assert asked(third[0]["body"]) == asked(first[0]["body"]), "only the failed chunk is asked again"
    assert llm_server.chat_requests() == []
    assert_translated_files(Path(it["workdir"]))
    assert it["meta"]["translation_outcome"] == "llm"

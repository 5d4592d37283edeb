"""A summary never costs a transcript: every way a real OpenAI-compatible server or a weak model misbehaves
(served by the local test server, the real SDK over HTTP) ends with the item done, its transcript files on
disk, and the summary's outcome flagged — realtime and through the Batch API; retry-summaries asks again
without re-transcribing."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.common import llmcall
from pipeline.config.settings import RetryPolicy
from pipeline.engine.core import Engine
from pipeline.engine.outputs import errors_markdown
from pipeline.recipes.transcribe import llm_batch
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings
from tests.llm_server import FakeLLMServer, field_responder, valid_summary
from tests.media_server import MediaServer

QUICK_RETRY = RetryPolicy(limit=3, base_s=0.05, cap_s=0.5, jitter=0.0, rate_limit_wait_s=0.1)
GOOD = json.dumps(valid_summary(chapters=[{"start": 0, "title": "Opening"}]))
CORE = ("transcript.txt", "transcript.srt", "transcript.vtt", "transcript.json", "meta.json")

# mode -> (outcome, words the reason or adjustments must contain)
EXPECTED: dict[str, tuple[str, str]] = {
    "llama_cpp": ("llm", ""),
    "prose_wrapped": ("llm", ""),
    "prose": ("fallback", "answer invalid"),
    "empty_fields": ("fallback", "answer invalid"),
    "truncated": ("repaired", "key point"),
    "soft_miss": ("repaired", "1 key point"),
    "auth": ("fallback", "refused the API key"),
    "rate_limited": ("fallback", "429"),
    "context_too_long": ("fallback", "context too long"),
    "server_error": ("fallback", "unreachable or failing"),
}


@pytest.fixture(autouse=True)
def _fresh_ladder() -> None:
    llmcall.forget()
    llmcall.clear_down()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def point_at(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-outcomes-0123456789abcdef")


def run(engine: Engine, name: str, text: str, timeout: float = 120, **options: Any) -> list[dict[str, Any]]:
    engine.submit(name, [e.to_item() for e in expand(text).entries], recipe="transcribe",
                  options={"summarizer": "llm", **options})
    s = engine.wait(name, timeout=timeout)
    assert s.state == "done", s
    return engine.items(name)


def summary_of(it: dict[str, Any]) -> dict[str, Any]:
    return json.loads((Path(it["workdir"]) / "summary.json").read_text())


def assert_core_files(it: dict[str, Any]) -> None:
    assert it["status"] == "done", it.get("error")
    for name in CORE:
        assert (Path(it["workdir"]) / name).stat().st_size > 0, name


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_every_field_mode_ends_done_with_its_outcome(mode: str, make_engine: Callable[..., Engine],
                                                     media_server: MediaServer, llm_server: FakeLLMServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each server/model behaviour seen in the field: item done, transcript files written, outcome flagged."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = field_responder(mode)
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    (it,) = run(e, mode, media_server.url("/captioned.html"))
    assert_core_files(it)
    outcome, words = EXPECTED[mode]
    doc = summary_of(it)
    assert doc["outcome"] == outcome and it["meta"]["summary_outcome"] == outcome, doc
    said = " ".join([doc.get("reason") or "", *doc.get("adjustments", [])])
    assert words in said, said
    flag = {"llm": None, "repaired": "summary-repaired", "fallback": "summary-fallback"}[outcome]
    assert [f for f in it.get("flags") or [] if f.startswith("summary-")] == ([flag] if flag else [])
    assert "sk-test-outcomes" not in json.dumps(doc)
    if mode == "llama_cpp":  # the ladder: json_schema refused once (HTTP 500), json_object + schema remembered
        fmts = [(r.get("response_format") or {}).get("type") for r in llm_server.chat_requests()]
        assert fmts[:2] == ["json_schema", "json_object"], fmts
        caps = json.loads((e.home / llmcall.CAPS_FILE).read_text())
        assert {v["rung"] for v in caps.values()} == {"json_object_schema"}


def test_endpoint_down_still_writes_transcripts_and_falls_back_fast(make_engine: Callable[..., Engine],
                                                                    media_server: MediaServer,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A key set but nothing listening: Whisper transcripts are written, every item ends done with the offline
    summary, the reason says the endpoint is unreachable, and errors.md lists them with the retry command."""
    point_at(monkeypatch, f"http://127.0.0.1:{free_port()}/v1")
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    text = "\n".join([media_server.media_url("m4a"), media_server.media_url("mp3"),
                      media_server.url("/captioned.html")])
    items = run(e, "down", text)
    assert len(items) == 3
    for it in items:
        assert_core_files(it)
        doc = summary_of(it)
        assert doc["outcome"] == "fallback" and "unreachable" in doc["reason"], doc
        assert doc["engine"] == "offline" and doc["key_points"]
    folder = Path(e.summary("down").output_dir)
    report = (folder / "errors.md").read_text()
    assert "## Summaries" in report and "tubemill retry-summaries down" in report
    rows = json.loads((folder / "manifest.json").read_text())["items"]
    assert {r["summary"]["outcome"] for r in rows} == {"fallback"}


def test_retry_summaries_asks_again_without_retranscribing(make_engine: Callable[..., Engine],
                                                           media_server: MediaServer, llm_server: FakeLLMServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A weak model's prose falls back; once the server answers well, retry-summaries re-asks only the flagged
    items: no download, no Whisper run, the transcript file untouched, the flag gone."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = field_responder("prose")
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    (it,) = run(e, "weak", media_server.media_url("m4a"))
    assert summary_of(it)["outcome"] == "fallback"
    tr = Path(it["workdir"]) / "transcript.json"
    before = (tr.stat().st_mtime_ns, media_server.hits(media_server.media["m4a"]), it["timings"]["transcribe"])
    llm_server.responder = lambda req: GOOD
    assert e.reopen("weak", "retry_summaries") == 1
    s = e.wait("weak", timeout=60)
    assert s.state == "done" and s.counts["done"] == 1
    (again,) = e.items("weak")
    assert summary_of(again)["outcome"] == "llm" and "summary-fallback" not in (again.get("flags") or [])
    assert (tr.stat().st_mtime_ns, media_server.hits(media_server.media["m4a"]),
            again["timings"]["transcribe"]) == before
    assert e.reopen("weak", "retry_summaries") == 0  # nothing flagged any more


def test_batch_api_invalid_answers_and_down_endpoint_never_park_forever(make_engine: Callable[..., Engine],
                                                                        media_server: MediaServer,
                                                                        llm_server: FakeLLMServer,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch API mode: prose answers in the output file are retried once, then realtime, then the offline fallback;
    soft misses are repaired in the batch; with the realtime fallback off the item still ends done."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = field_responder("prose")
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY, llm_batch_poll_s=0.05))
    (it,) = run(e, "bprose", media_server.url("/captioned.html"), llm_mode="batch", llm_mode_effective="batch")
    assert_core_files(it)
    assert summary_of(it)["outcome"] == "fallback" and len(llm_server.uploads) == 2  # job, then one retry job

    llm_server.responder = field_responder("soft_miss")
    (it,) = run(e, "bsoft", media_server.url("/captioned.html"), llm_mode="batch", llm_mode_effective="batch",
                force=True)
    doc = summary_of(it)
    assert doc["outcome"] == "repaired" and doc["mode"] == "batch", doc

    llm_server.responder = field_responder("empty_fields")
    (it,) = run(e, "bnoreal", media_server.url("/captioned.html"), llm_mode="batch", llm_mode_effective="batch",
                force=True, llm_fallback_realtime="0")
    assert_core_files(it)
    doc = summary_of(it)
    assert doc["outcome"] == "fallback" and "Batch API" in doc["reason"], doc


def test_batch_api_endpoint_down_falls_back(make_engine: Callable[..., Engine], media_server: MediaServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listening in Batch API mode: the upload keeps failing, the manager gives up after a few passes,
    the item is summarized realtime, which falls back offline: done, with the reason."""
    point_at(monkeypatch, f"http://127.0.0.1:{free_port()}/v1")
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY, llm_batch_poll_s=0.01))
    manager = e.services.get(llm_batch.SERVICE)  # the recipe's Batch API service, started with the scheduler
    assert manager is not None
    manager.max_interval_s = 0.05
    (it,) = run(e, "bdown", media_server.url("/captioned.html"), llm_mode="batch", llm_mode_effective="batch")
    assert_core_files(it)
    doc = summary_of(it)
    assert doc["outcome"] == "fallback" and "unreachable" in doc["reason"], doc
    assert "kept failing" in e.store.header(e.store.resolve("bdown"))["llm_note"]  # type: ignore[union-attr]


def test_errors_report_hint_for_flagged_summaries() -> None:
    """errors.md has a Summaries section naming each flagged item, its reason and the retry command."""
    items = [{"n": 1, "title": "A", "status": "done", "flags": ["summary-fallback"],
              "meta": {"summary_outcome": "fallback", "summary_reason": "endpoint unreachable or failing: refused"}},
             {"n": 2, "title": "B", "status": "done", "flags": ["summary-repaired"],
              "meta": {"summary_outcome": "repaired", "summary_adjustments": ["kept the first 7 of 9 key points"]}},
             {"n": 3, "title": "C", "status": "done", "meta": {"summary_outcome": "llm"}}]
    md = errors_markdown({"name": "talks"}, items, Path("/tmp"))
    assert "No items failed." in md and "## Summaries" in md
    assert "endpoint unreachable" in md and "kept the first 7" in md and "tubemill retry-summaries talks" in md
    assert "C" not in md.split("## Summaries", 1)[1]


def test_cli_status_shows_fallbacks_and_retry_summaries_reasks(home: Path, media_server: MediaServer,
                                                              llm_server: FakeLLMServer) -> None:
    """`tubemill run` with the endpoint refusing the key exits 0 (transcripts done); `status` names the fallback
    and the command; `tubemill retry-summaries` (foreground, no other owner) re-asks once the key is accepted."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    def tm(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**cli_env(home), "OPENAI_BASE_URL": llm_server.base_url, "OPENAI_API_KEY": "sk-test-cli-0123456789"}
        return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    llm_server.responder = field_responder("auth")
    res = tm("run", media_server.url("/captioned.html"), "--batch-name", "cap", "--summarizer", "llm")
    assert res.returncode == 0, res.stderr
    out = tm("status", "cap").stdout
    assert "1 fallback" in out and "refused the API key" in out and "tubemill retry-summaries cap" in out
    doc = json.loads(tm("status", "cap", "--json").stdout)
    assert doc["summaries"] == {"fallback": 1} and doc["items"][0]["summary"]["outcome"] == "fallback"
    assert "sk-test-cli" not in json.dumps(doc)
    llm_server.responder = lambda req: GOOD
    res = tm("retry-summaries", "cap")
    assert res.returncode == 0 and "asking the LLM again for 1 summary" in res.stderr, res.stderr
    doc = json.loads(tm("status", "cap", "--json").stdout)
    assert doc["summaries"] == {"llm": 1} and doc["items"][0]["status"] == "done"
    assert tm("retry-summaries", "cap").stdout.startswith("nothing to retry")

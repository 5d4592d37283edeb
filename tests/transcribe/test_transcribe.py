"""The transcribe recipe end to end: real yt-dlp against a loopback server, real faster-whisper on the
bundled model, real ffmpeg; captions first, reuse across batches, errors classified, outputs valid."""

from __future__ import annotations

import json
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.common.formats import parse_srt, parse_vtt
from pipeline.config.settings import RetryPolicy
from pipeline.engine.clock import FakeClock
from pipeline.engine.core import Engine
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings
from tests.llm_server import valid_summary
from tests.media import MEDIA_TEXT
from tests.media_server import MediaServer
from tests.wer import word_edits


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split()


def wer(ref: str, hyp: str) -> float:
    """Word error rate: edit distance over reference words (this file's plain normalisation)."""
    r = words(ref)
    return word_edits(r, words(hyp)) / max(1, len(r))


def content_words(text: str) -> set[str]:
    """Stems (first five letters) of the words of five letters or more: what any decent transcription keeps
    whatever the encoder did to the audio ("astronomer" for "astronomers" counts)."""
    return {w[:5] for w in words(text) if len(w) >= 5}


def assert_transcripts_match(pairs: dict[str, tuple[str, str]]) -> None:
    """Content checks that hold across ffmpeg/espeak-ng versions (a lossy codec moves one clip's WER by ±0.1):
    the corpus mean WER, a generous per-item bound, and most of each reference's content words present."""
    rates = {k: wer(ref, hyp) for k, (ref, hyp) in pairs.items()}
    assert sum(rates.values()) / len(rates) < 0.3, rates
    for k, (ref, hyp) in pairs.items():
        assert rates[k] < 0.6, (k, rates[k], hyp)
        want, got = content_words(ref), content_words(hyp)
        assert len(want & got) >= 0.6 * len(want), (k, sorted(want - got))


def run_batch(engine: Engine, name: str, text: str, timeout: float = 120, **options: Any) -> list[dict[str, Any]]:
    x = expand(text)
    engine.submit(name, [e.to_item() for e in x.entries], recipe="transcribe", options=options)
    s = engine.wait(name, timeout=timeout)
    assert s.state == "done", s
    return engine.items(name)


def by_title(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {it.get("title") or it["source"]: it for it in items}


def test_batch_end_to_end(make_engine: Callable[..., Engine], media_server: MediaServer,
                          media_files: dict[str, Path], tmp_path: Path) -> None:
    """Direct files, an RSS feed and a captioned page become transcripts; bad sources fail with a reason."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "screen.mp4").write_bytes(media_files["silent_mp4"].read_bytes())
    text = "\n".join([
        "# lectures", media_server.media_url("m4a"), media_server.url("/feed.xml"),
        media_server.url("/captioned.html"), media_server.url("/missing.mp3"), media_server.url("/notmedia.html"),
        str(local), "not a url",
    ])
    e = make_engine()
    items = run_batch(e, "lectures", text)
    done = [it for it in items if it["status"] == "done"]
    failed = {it["source"]: it["error"]["type"] for it in items if it["status"] == "failed"}
    assert failed == {media_server.url("/missing.mp3"): "NotFound", media_server.url("/notmedia.html"): "Unsupported",
                      str(local / "screen.mp4"): "NoAudio"}
    assert len(done) == 4  # m4a (also in the feed: deduplicated), feed bravo + charlie, captioned page
    pairs = {}
    for it in done:
        tr = json.loads(Path(it["artifacts"]["json"]).read_text())
        name = "vtt" if "captioned" in it["id"] else next(
            k for k, v in media_server.media.items() if Path(v).stem in it["id"] and k != "vtt")
        pairs[it["title"]] = (MEDIA_TEXT[name], " ".join(s["text"] for s in tr["segments"]))
    assert_transcripts_match(pairs)
    for it in done:
        srt = parse_srt(Path(it["artifacts"]["srt"]).read_text())
        vtt = parse_vtt(Path(it["artifacts"]["vtt"]).read_text())
        for cues in (srt, vtt):
            assert cues and all(c["start"] < c["end"] for c in cues)
            assert all(a["end"] <= b["start"] for a, b in zip(cues, cues[1:], strict=False))
        assert (Path(it["workdir"]) / "summary.md").read_text().startswith("# ")
        assert not (Path(it["workdir"]) / ".tmp").exists()  # temporary audio is gone
    captioned = next(it for it in done if "captioned" in it["id"])
    assert captioned["meta"]["transcript_source"] == "captions"
    assert media_server.hits(media_server.media["mp4"]) == 0  # captions only: the video was never fetched
    whisper = next(it for it in done if it["id"].startswith("talk-alpha"))
    assert whisper["meta"]["transcript_source"] == "whisper" and whisper["meta"]["language"] == "en"

    folder = Path(e.summary("lectures").output_dir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["items"]) == len(items)
    for row in manifest["items"]:
        for rel in (row.get("files") or {}).values():
            if rel:
                assert (folder / rel).exists(), rel
    errors_md = (folder / "errors.md").read_text()
    assert media_server.url("/missing.mp3") in errors_md and "404" in errors_md
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["stages"]["transcribe"]["count"] >= 1
    from pypdf import PdfReader

    pdf = next(folder.glob("*.pdf"))
    assert len(PdfReader(pdf).outline) >= len(done)
    zf = next(folder.glob("*.zip"))
    names = zipfile.ZipFile(zf).namelist()
    assert any(n.endswith("transcript.srt") for n in names) and any(n.endswith("manifest.json") for n in names)
    assert not any(n.endswith(".zip") or "cookie" in n.lower() for n in names)


def test_captions_policies(make_engine: Callable[..., Engine], media_server: MediaServer) -> None:
    """--captions never transcribes a captioned page with Whisper; --captions only fails a file without captions."""
    e = make_engine()
    never = run_batch(e, "never", media_server.url("/captioned.html"), captions="never")
    assert never[0]["meta"]["transcript_source"] == "whisper"
    only = run_batch(e, "only", media_server.media_url("mp3"), captions="only")
    assert only[0]["status"] == "failed" and only[0]["error"]["type"] == "NoCaptions"


def test_finished_videos_are_reused_across_batches(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                   tmp_path: Path) -> None:
    """A video finished in an earlier batch is copied, not fetched again, unless --force; the archive is kept."""
    e = make_engine()
    url = media_server.media_url("mp3")
    first = run_batch(e, "first", url)
    fetched = media_server.hits(media_server.media["mp3"])
    assert fetched >= 1
    second = run_batch(e, "second", url)
    assert media_server.hits(media_server.media["mp3"]) == fetched
    assert second[0]["meta"]["reused_from"] == first[0]["workdir"]
    a, b = (Path(x[0]["artifacts"]["txt"]).read_text() for x in (first, second))
    assert a == b
    run_batch(e, "forced", url, force=True)
    assert media_server.hits(media_server.media["mp3"]) > fetched
    archive = (e.home / "download-archive.txt").read_text().splitlines()
    assert archive == ["generic talk-bravo"]  # yt-dlp's own --download-archive format, written once


def test_transient_errors_retry_then_succeed(make_engine: Callable[..., Engine], media_server: MediaServer) -> None:
    """429 with Retry-After waits without spending an attempt; a 500 is retried with backoff; both finish."""
    settings = fast_settings(retry=RetryPolicy(limit=2, base_s=0.2, cap_s=1, jitter=0, rate_limit_wait_s=5))
    e = make_engine(settings=settings)
    items = run_batch(e, "flaky", "\n".join([media_server.url("/flaky429.mp3"), media_server.url("/flaky500.mp3")]),
                      captions="never")
    assert [it["status"] for it in items] == ["done", "done"]


def test_hanging_server_times_out_and_reset_download_resumes(make_engine: Callable[..., Engine],
                                                             media_server: MediaServer,
                                                             media_files: dict[str, Path]) -> None:
    """A server that stops sending is cut off by the read timeout and retried later; a transfer cut mid-file
    resumes from its .part with an HTTP Range request instead of starting over."""
    clock = FakeClock()
    settings = fast_settings(retry=RetryPolicy(limit=1, base_s=10, cap_s=10, jitter=0))
    e = make_engine(settings=settings, clock=clock)
    media_server.add_reset("/reset-once.mp3", media_files["mp3"], ok_first=1, times=1)  # probe ok, transfer cut
    t0 = time.monotonic()
    x = expand("\n".join([media_server.url("/hang.mp3"), media_server.url("/reset-once.mp3")]))
    e.submit("net", [en.to_item() for en in x.entries], recipe="transcribe",
             options={"socket_timeout": 2, "captions": "never"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and e.items("net")[0]["status"] != "waiting":
        time.sleep(0.1)
    hang = e.items("net")[0]
    assert hang["status"] == "waiting" and hang["error"]["type"] == "NetworkError"
    assert "timed out" in hang["error"]["message"] and time.monotonic() - t0 < 20
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and e.items("net")[1]["status"] != "done":
        time.sleep(0.1)
    assert e.items("net")[1]["status"] == "done", e.items("net")[1]["error"]
    ranges = [h.headers.get("Range") for h in media_server.requests if h.path == "/reset-once.mp3"]
    assert any(r and not r.startswith("bytes=0-") for r in ranges), ranges  # resumed, not restarted
    clock.advance(11)  # the hanging item's retry is due: it times out again and fails for good
    s = e.wait("net", timeout=30)
    assert s.counts["failed"] == 1 and e.items("net")[0]["attempts"] == 2


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-test-SECRET-should-never-appear-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    return key


def test_llm_summaries_through_a_local_server(make_engine: Callable[..., Engine], media_server: MediaServer,
                                              llm_server: Any, secret_env: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With an endpoint configured, summaries come from the LLM with usage recorded and the key stored nowhere."""
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    llm_server.responder = lambda req: json.dumps(valid_summary(chapters=[{"start": 0, "title": "The fox"}]))
    e = make_engine()
    items = run_batch(e, "llm", media_server.media_url("m4a"), summarizer="llm")
    it = items[0]
    assert it["status"] == "done", it["error"]
    assert it["meta"]["summary_engine"] == "llm" and it["meta"]["llm_usage"]["input_tokens"] > 0
    assert llm_server.chat_requests()
    folder = Path(e.summary("llm").output_dir)
    for path in [*e.home.rglob("*"), *folder.rglob("*")]:
        if path.is_file() and path.suffix in (".json", ".md", ".txt", ".csv", ".jsonl"):
            assert secret_env not in path.read_text(errors="replace"), path


def test_kill_9_then_resume_fetches_nothing_twice(media_server: MediaServer, media_files: dict[str, Path],
                                                  tmp_path: Path) -> None:
    """kill -9 of `tubemill run` mid-batch, then --resume: finished items are not fetched again and the
    result equals an uninterrupted run."""
    import signal
    import subprocess
    import sys

    from state.reader import read_batch, read_summaries
    from tests.conftest import ROOT, cli_env

    extra = []
    for i in range(3):  # more items than can finish between seeing the first done and the kill
        media_server.add_file(f"/extra/lecture-{i}.mp3", media_files["mp3"])
        extra.append(media_server.url(f"/extra/lecture-{i}.mp3"))
    src = tmp_path / "talks.txt"
    src.write_text("\n".join([media_server.url("/feed.xml"), media_server.media_url("mp4"),
                              media_server.media_url("wav"), *extra]) + "\n")

    def cmd(home: Path) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(src), "--resume",
                "--captions", "never", "--max-workers", "1"]

    def done_items(home: Path) -> list[dict[str, Any]]:
        s = read_summaries(home)
        return [it for it in read_batch(home, s[0].id)[1] if it["status"] == "done"] if s else []

    home = tmp_path / "home"
    proc = subprocess.Popen(cmd(home), cwd=ROOT, env=cli_env(home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(done_items(home)) < 1:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = done_items(home)
    assert 1 <= len(finished) < 8
    paths = {it["id"]: urllib_path(it["source"]) for it in finished}
    before = {p: media_server.hits(p) for p in paths.values()}
    res = subprocess.run(cmd(home), cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert {p: media_server.hits(p) for p in paths.values()} == before  # nothing finished was fetched again
    resumed = {it["id"]: Path(it["artifacts"]["txt"]).read_text() for it in done_items(home)}

    clean_home = tmp_path / "clean"
    res = subprocess.run(cmd(clean_home), cwd=ROOT, env=cli_env(clean_home), capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr
    clean = {it["id"]: Path(it["artifacts"]["txt"]).read_text() for it in done_items(clean_home)}
    assert resumed == clean and len(clean) == 8


def urllib_path(url: str) -> str:
    from urllib.parse import urlparse

    return urlparse(url).path


def test_an_idle_whisper_model_is_released(media_files: dict[str, Path]) -> None:
    """A model no transcription has used for the idle time is dropped from memory, never one in use; the next
    transcription loads it again."""
    from pipeline.recipes.transcribe.stages import transcribe as t

    t.release_idle_models(0)  # models earlier tests left idle in this process
    loaded = t.get_model("tiny.en", "cpu", 1)
    with t._using(loaded):
        assert t.release_idle_models(0) == 0  # in use: kept
        t.transcribe_file(media_files["wav"], loaded)
    assert t.release_idle_models(3600) == 0  # used a moment ago: kept
    assert t.release_idle_models(0) == 1 and ("tiny.en", "cpu", 1) not in t._models
    assert t.get_model("tiny.en", "cpu", 1) is not loaded

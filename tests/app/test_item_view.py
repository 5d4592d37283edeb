"""One item as the pages show it: one labelled progress figure, the stage chain (upload skipped), the whole
error with its hint, the log tail, and a player that never points at a page URL."""

from __future__ import annotations

from pathlib import Path

from pipeline.app import item_view, views

STAGES = ["captions", "download", "transcribe", "summarize", "export"]


def item(**kw: object) -> dict:
    base = {"n": 1, "source": "https://example.org/watch?v=1", "title": "One", "status": "pending",
            "stage_index": 0, "stage": None, "attempts": 0, "error": None, "timings": {}, "artifacts": {},
            "meta": {}, "progress": 0.0}
    base.update(kw)
    return base


def test_running_item_has_one_figure_and_label() -> None:
    """A running transcription at 40 % is 2.4 of 5 stages through, labelled with its stage and fraction."""
    it = item(status="running", stage_index=2, stage="transcribe", progress=0.4)
    assert abs(item_view.item_progress(it, 5) - 0.48) < 1e-9
    assert item_view.progress_label(it, STAGES) == "stage 3/5 transcribe 40 %"
    row = views.item_rows([it], STAGES)[0]
    assert row["progress"] == item_view.item_progress(it, 5) and row["where"] == "stage 3/5 transcribe 40 %"


def test_pending_item_says_it_waits_and_stage_fraction_does_not_leak() -> None:
    """A pending item's leftover stage fraction is ignored; its label names the stage it waits for."""
    it = item(status="pending", stage_index=1, progress=1.0)
    assert item_view.item_progress(it, 5) == 0.2
    assert item_view.progress_label(it, STAGES) == "stage 2/5 download · pending"
    assert item_view.progress_label(item(status="done", stage_index=5), STAGES) == "done"


def test_chain_shows_upload_skipped_and_the_failed_stage() -> None:
    """``upload`` with upload off reads skipped, not done; a failed item marks the stage that failed."""
    gen = ["script", "narrate", "render", "upload"]
    done = item(status="done", stage_index=4, meta={"upload": "skipped", "tts_fallback": "edge-tts unreachable"},
                timings={"script": 1.0, "upload": 0.01})
    chain = {c["stage"]: c["state"] for c in item_view.stage_chain(done, gen)}
    assert chain == {"script": "done", "narrate": "done", "render": "done", "upload": "skipped"}
    assert "upload: skipped" in item_view.chain_text(done, gen)
    notes = item_view.item_notes(done)
    assert any("espeak-ng" in n and "edge-tts unreachable" in n for n in notes)
    failed = item(status="failed", stage_index=1,
                  error={"type": "NotFound", "message": "HTTP 404", "stage": "download"})
    chain = {c["stage"]: c["state"] for c in item_view.stage_chain(failed, STAGES)}
    assert chain["captions"] == "done" and chain["download"] == "failed" and chain["export"] == "pending"


def test_detail_has_whole_error_hint_log_and_files(tmp_path: Path) -> None:
    """The detail keeps the whole message (never cut), adds the errors.md hint, the log's tail and the files."""
    wd = tmp_path / "0001-one"
    wd.mkdir()
    (wd / "log.txt").write_text("".join(f"line {i}\n" for i in range(200)), encoding="utf-8")
    (wd / "transcript.txt").write_text("hello", encoding="utf-8")
    message = "Unsupported URL: https://example.org/a/very/long/path " + "word " * 40
    it = item(status="failed", stage_index=1, attempts=2, workdir=str(wd),
              error={"type": "NotFound", "message": message, "stage": "download", "retryable": False})
    d = item_view.item_detail(it, STAGES, "talks")
    assert d.error is not None and d.error["message"] == message and d.error["attempts"] == 2
    assert "404" in d.error["hint"]
    assert d.log is not None and d.log.splitlines()[-1] == "line 199" and len(d.log.splitlines()) == 80
    assert {f["file"] for f in d.files} == {"log.txt", "transcript.txt"}
    assert d.actions == ["retry", "skip", "remove"]
    assert views.item_rows([it], STAGES)[0]["error"] == "NotFound: " + " ".join(message.split())


def test_log_tail_of_a_big_log_starts_on_a_whole_line(tmp_path: Path) -> None:
    """Reading only the end of a large log never shows a line cut by the seek."""
    (tmp_path / "log.txt").write_text("".join(f"entry number {i:06d}\n" for i in range(20000)), encoding="utf-8")
    tail = item_view.log_tail(tmp_path, lines=10_000)
    assert tail is not None and all(line.startswith("entry number ") for line in tail.splitlines())
    assert item_view.log_tail(tmp_path / "missing") is None


def test_player_prefers_kept_media_then_media_url_never_the_page(tmp_path: Path) -> None:
    """Kept media first, then the resolved media URL; a page URL alone gives nothing to play."""
    media = tmp_path / "audio.m4a"
    media.write_bytes(b"x")
    page = "http://127.0.0.1:8000/page.html"
    assert item_view.player_source(item(source=page, artifacts={"media": str(media)})) == str(media)
    assert item_view.player_source(item(source=page, artifacts={"audio": str(media)})) == str(media)
    assert item_view.player_source(item(source=page, meta={"media_url": "http://127.0.0.1:8000/a.mp3"})) == \
        "http://127.0.0.1:8000/a.mp3"
    assert item_view.player_source(item(source=page)) is None
    (tmp_path / "media.webm").write_bytes(b"x")
    assert item_view.player_source(item(source=page, workdir=str(tmp_path))) == str(tmp_path / "media.webm")
    assert item_view.player_source(item(source="http://127.0.0.1:8000/ep1.mp3?x=1")) == \
        "http://127.0.0.1:8000/ep1.mp3?x=1"
    assert item_view.is_audio("http://h/a.mp3?x=1") and not item_view.is_audio(str(tmp_path / "v.mp4"))

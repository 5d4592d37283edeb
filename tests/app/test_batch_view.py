"""A batch as the pages show it: capacity per stage in items per hour of wall time with the bottleneck marked,
failures coloured in the progress line, a picker label that follows the state, one model list."""

from __future__ import annotations

from datetime import datetime

from pipeline.app import batch_view
from pipeline.app.monitor import TIME_AXIS_FORMAT, time_chart
from state.models import BatchSummary


def summary(**kw: object) -> BatchSummary:
    base = {"id": "b1", "name": "talks", "recipe": ["captions", "download", "transcribe", "summarize", "export"],
            "state": "active", "counts": {"done": 12, "failed": 3, "running": 1, "pending": 4}, "total": 20,
            "created_at": 0.0}
    base.update(kw)
    return BatchSummary(**base)  # type: ignore[arg-type]


def test_capacity_uses_workers_and_shared_pools_and_marks_the_bottleneck() -> None:
    """Export's 0.01 s no longer reads 360k/h: it shares the cpu pool with transcription, which is the bottleneck."""
    s = summary(stage_stats={"captions": {"n": 10, "total_s": 1.0}, "download": {"n": 10, "total_s": 20.0},
                             "transcribe": {"n": 5, "total_s": 100.0}, "summarize": {"n": 10, "total_s": 10.0},
                             "export": {"n": 10, "total_s": 0.1}})
    rows = {r["stage"]: r for r in batch_view.capacity(s, {"net": 2, "cpu": 2, "gpu": 0, "llm": 1})}
    # cpu pool: (100 + 0.1) s over 10 items = 10.01 s an item, 2 workers -> ~719 items/h
    assert rows["transcribe"]["pool"] == "cpu" and rows["transcribe"]["workers"] == 2
    assert abs(rows["transcribe"]["items_per_hour"] - round(2 * 3600 / 10.01, 1)) < 0.2
    assert rows["export"]["items_per_hour"] == rows["transcribe"]["items_per_hour"]
    assert rows["transcribe"]["bottleneck"] and not rows["export"]["bottleneck"]
    assert sum(r["bottleneck"] for r in rows.values()) == 1
    assert rows["download"]["items_per_hour"] > rows["transcribe"]["items_per_hour"]
    assert "transcribe" in (batch_view.capacity_note(list(rows.values())) or "")
    assert batch_view.capacity(summary(), {"cpu": 1}) == []


def test_progress_line_colours_failures_and_picker_follows_state() -> None:
    """A batch with failures says so in red with an icon; a paused or done batch's label drops "active"."""
    s = summary()
    md = batch_view.progress_markdown(s)
    assert ":red[:material/error: **3 failed**]" in md and "12 of 20 done" in md
    assert "failed" not in batch_view.progress_markdown(summary(counts={"done": 20}, state="done"))
    assert batch_view.progress_text(s).startswith("12 of 20 done · 3 failed · 1 running")
    assert "· active" in batch_view.picker_label(s)
    assert "active" not in batch_view.picker_label(summary(state="paused"))
    assert batch_view.picker_label(summary(state="done", counts={"done": 20})) == "talks · 20/20 · done"


def test_one_model_list_bundled_first() -> None:
    """Settings and New batch share the list; the bundled model is first and labelled; a custom model is kept."""
    assert batch_view.WHISPER_MODELS[0] == "tiny.en"
    assert "bundled" in batch_view.model_label("tiny.en")
    assert batch_view.model_choices("/models/mine")[:2] == ["tiny.en", "/models/mine"]


def test_time_axis_is_24_hour() -> None:
    """The System charts label time as HH:MM:SS (no 12-hour clock without AM/PM)."""
    chart = time_chart([{"time": datetime(2024, 1, 1, 15, 4, 5), "CPU %": 10.0}], "%")
    spec = chart.to_dict()
    assert spec["encoding"]["x"]["axis"]["format"] == TIME_AXIS_FORMAT == "%H:%M:%S"


def test_titles_are_cut_at_a_word_in_tables() -> None:
    from pipeline.app.views import item_rows
    from pipeline.common.units import short_title

    long = "How the moon pulls the oceans: a very long explainer about tides, gravity and the sea level"
    cut = short_title(long)
    assert cut == "How the moon pulls the oceans: a very long explainer about …" and len(cut) <= 60
    assert long.startswith(cut[:-2])  # whole words only
    url = "http://127.0.0.1:8000/" + "x" * 80 + ".mp3"
    assert short_title(url) == url[:59] + "…"  # one word longer than the cell is cut inside it
    assert short_title("  two\n words ") == "two words" and short_title(None) == ""
    rows = item_rows([{"n": 1, "source": "s", "title": long, "status": "done", "stage_index": 5}],
                     ["captions", "download", "transcribe", "summarize", "export"])
    assert rows[0]["title"] == cut


def test_latest_result_reads_the_newest_finished_transcript(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    wd = tmp_path / "0002"
    wd.mkdir()
    (wd / "transcript.json").write_text(json.dumps({"segments": [
        {"start": 0.0, "end": 2.0, "text": " Hello there."}, {"start": 61.5, "end": 63.0, "text": "Second."},
        {"start": 70.0, "end": 71.0, "text": "Third."}, {"start": 80.0, "end": 81.0, "text": "Fourth."}]}))
    items = [{"n": 1, "source": "a", "title": "Older", "status": "done", "finished_at": 10.0, "workdir": None},
             {"n": 2, "source": "b", "title": "Newest", "status": "done", "finished_at": 20.0, "workdir": str(wd)}]

    class Eng:
        def items(self, ref, status=None, offset=0, limit=None):  # type: ignore[no-untyped-def]
            assert status == ["done"] and offset == 0  # only the last few finished items are read
            return items

    res = batch_view.latest_result(Eng(), summary(counts={"done": 2}, total=2))
    assert res is not None and res["n"] == 2 and res["title"] == "Newest" and res["segments"] == 4
    assert res["lines"] == ["00:00  Hello there.", "01:01  Second.", "01:10  Third."]
    assert batch_view.latest_result(Eng(), summary(counts={"pending": 2}, total=2)) is None

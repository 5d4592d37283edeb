"""A recipe is a small DAG: independent stages of one item run at once; a finished stage never runs again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.engine.core import Engine
from pipeline.engine.recipe import Recipe, companions, register_recipe
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.errors import PermanentError
from state.reader import read_batch
from tests.conftest import wait_for

RUNS: list[tuple[str, int, str, float]] = []  # (event, item, stage, monotonic time)
_lock = threading.Lock()


def timed(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """Sleeps ``sleep`` seconds; fails while the file ``gate`` exists when it is this stage's turn."""
    with _lock:
        RUNS.append(("start", ctx.item_n, ctx.stage, time.monotonic()))
    try:
        time.sleep(float(ctx.options.get("sleep", 0)))
        gate = ctx.options.get("gate")
        if gate and ctx.stage == ctx.options.get("gated_stage") and Path(gate).exists():
            raise PermanentError("gate file present")
        return StageResult(artifacts={ctx.stage: ctx.stage})
    finally:
        with _lock:
            RUNS.append(("end", ctx.item_n, ctx.stage, time.monotonic()))


for _name, _res in (("d_script", "llm"), ("d_voice", "net"), ("d_frames", "cpu"), ("d_render", "gpu")):
    register(Stage(_name, timed, resource=_res))  # type: ignore[arg-type]
STAGES = ("d_script", "d_voice", "d_frames", "d_render")
register_recipe(Recipe("dagtest", STAGES, False, "DAG test", offered=False,
                       needs={"d_frames": ("d_script",), "d_render": ("d_voice", "d_frames")}))


def _runs(stage: str, event: str = "start") -> list[tuple[str, int, str, float]]:
    return [r for r in RUNS if r[2] == stage and r[0] == event]


def test_companions_follow_the_needs_and_default_to_a_chain() -> None:
    assert companions(list(STAGES), {}) == [(), (), (), ()]  # a plain stage list runs one after another
    after = companions(list(STAGES), {"d_frames": ("d_script",), "d_render": ("d_voice", "d_frames")})
    assert after == [(), (2,), (), ()]  # frames may start beside voice; render waits for both
    assert companions(["a", "b", "c"], {"b": (), "c": ()}) == [(1, 2), (2,), ()]


def test_independent_stages_of_one_item_run_at_once(make_engine: Callable[..., Engine]) -> None:
    RUNS.clear()
    e = make_engine()
    bid = e.submit("dag", ["x"], recipe="dagtest", options={"sleep": 0.4})
    s = e.wait(bid, timeout=20)
    assert s.counts["done"] == 1
    (voice_start, voice_end), (frames_start, frames_end) = [
        (_runs(st)[0][3], _runs(st, "end")[0][3]) for st in ("d_voice", "d_frames")]
    assert frames_start < voice_end and voice_start < frames_end  # they overlapped
    render_start = _runs("d_render")[0][3]
    assert render_start >= max(voice_end, frames_end)  # render needs both
    assert _runs("d_script", "end")[0][3] <= min(voice_start, frames_start)
    _, items = read_batch(e.home, bid)
    assert items[0]["status"] == "done" and set(items[0]["artifacts"]) == set(STAGES)
    assert set(items[0]["timings"]) == set(STAGES) and not items[0].get("done_ahead")
    assert set(s.stage_stats) == set(STAGES)  # every stage's timing counted once


def test_a_failed_sibling_does_not_rerun_the_finished_one(make_engine: Callable[..., Engine],
                                                          tmp_path: Path) -> None:
    RUNS.clear()
    gate = tmp_path / "gate"
    gate.write_text("1")
    e = make_engine()
    bid = e.submit("dag2", ["x"], recipe="dagtest",
                   options={"sleep": 0.05, "gate": str(gate), "gated_stage": "d_voice"})
    s = e.wait(bid, timeout=20)
    assert s.counts["failed"] == 1
    item = e.items(bid)[0]
    assert item["error"]["stage"] == "d_voice"
    assert item["done_ahead"] == ["d_frames"] and item["stage_index"] == 1  # frames kept, voice next
    gate.unlink()
    assert e.retry_failed(bid) == 1
    s = e.wait(bid, timeout=20)
    wait_for(lambda: e.summary(bid).counts["done"] == 1, 10)
    assert len(_runs("d_frames")) == 1  # finished once, never again
    assert len(_runs("d_voice")) == 2 and len(_runs("d_render")) == 1
    assert not e.items(bid)[0].get("done_ahead")

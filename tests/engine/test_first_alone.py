"""A fresh batch's first item starts alone: the result a user watches for is not slowed by the rest of the
batch starting on the same cores. The rest start when its first stage ends, or after FIRST_ALONE_S."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.engine import scheduler
from pipeline.engine.core import Engine
from pipeline.engine.recipe import Recipe, register_recipe
from pipeline.engine.stage import Stage, StageContext, StageResult, register

RUNS: list[tuple[str, int, str, float]] = []
_lock = threading.Lock()


def timed(item: dict[str, Any], ctx: StageContext) -> StageResult:
    with _lock:
        RUNS.append(("start", ctx.item_n, ctx.stage, time.monotonic()))
    time.sleep(float(ctx.options.get("sleep", 0)))
    with _lock:
        RUNS.append(("end", ctx.item_n, ctx.stage, time.monotonic()))
    return StageResult()


register(Stage("fa_look", timed, resource="net"))  # type: ignore[arg-type]
register(Stage("fa_work", timed, resource="cpu"))  # type: ignore[arg-type]
register_recipe(Recipe("firstalone", ("fa_look", "fa_work"), False, "first-alone test", offered=False))


def _at(event: str, n: int, stage: str = "fa_look") -> float:
    return next(t for e, k, s, t in RUNS if (e, k, s) == (event, n, stage))


def test_the_first_item_starts_alone_until_its_first_stage_ends(make_engine: Callable[..., Engine]) -> None:
    RUNS.clear()
    e = make_engine()
    bid = e.submit("fresh", ["a", "b", "c"], recipe="firstalone", options={"sleep": 0.3})
    assert e.wait(bid, timeout=30).counts["done"] == 3
    first_end = _at("end", 1)
    assert _at("start", 2) >= first_end and _at("start", 3) >= first_end
    assert _at("start", 3) < _at("end", 2)  # then the rest run side by side, as before
    assert _at("start", 2) < _at("end", 1, "fa_work")  # not the whole chain: only its first stage


def test_a_slow_first_stage_holds_the_rest_only_so_long(make_engine: Callable[..., Engine],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    RUNS.clear()
    monkeypatch.setattr(scheduler, "FIRST_ALONE_S", 0.3)
    monkeypatch.setattr("pipeline.engine.core.FIRST_ALONE_S", 0.3)
    e = make_engine()
    bid = e.submit("slow", ["a", "b"], recipe="firstalone", options={"sleep": 1.5})
    assert e.wait(bid, timeout=30).counts["done"] == 2
    waited = _at("start", 2) - _at("start", 1)
    assert 0.25 <= waited < 1.2


def test_a_batch_with_finished_stages_starts_all_at_once(make_engine: Callable[..., Engine]) -> None:
    RUNS.clear()
    e = make_engine()
    bid = e.submit("again", ["a"], recipe="firstalone", options={"sleep": 0.05})
    assert e.wait(bid, timeout=30).counts["done"] == 1
    RUNS.clear()
    e.submit("again", ["a", "b", "c"], recipe="firstalone", options={"sleep": 0.4}, resume=True)
    assert e.wait(bid, timeout=30).counts["done"] == 3
    assert abs(_at("start", 2) - _at("start", 3)) < 0.3 and "start" not in {ev for ev, k, *_ in RUNS if k == 1}
    assert _at("start", 3) < _at("end", 2)

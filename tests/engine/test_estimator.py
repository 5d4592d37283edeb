"""The one estimator: pools, the longest item, measured rates per media second, and what is left out of them."""

from __future__ import annotations

from pathlib import Path

from pipeline.engine.core import Engine
from pipeline.engine.estimator import Cost, estimate_batch, measured_rates
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from state.reader import read_summaries
from tests.conftest import fast_settings

COSTS = {"fetch": Cost(2.0), "work": Cost(0.0, 0.1)}


def pool_of(stage: str) -> str:
    return {"fetch": "net", "work": "cpu"}[stage]


def test_pools_and_the_longest_item() -> None:
    """Many items: the busiest pool ÷ its size; one long item: its own chain of stages, which no pool shortens."""
    many = estimate_batch([60.0] * 20, ["fetch", "work"], pool_of, {"net": 4, "cpu": 2}, COSTS)
    assert many.seconds == 60.0 and many.bottleneck == "cpu"  # 20 × 6 s ÷ 2 workers
    one = estimate_batch([600.0], ["fetch", "work"], pool_of, {"net": 4, "cpu": 2}, COSTS)
    assert one.seconds == 62.0 and one.bottleneck == "one item's stages"
    d = one.to_dict()
    assert d["estimate_s"] == 62.0 and d["items"] == 1 and d["stages"]["work"]["seconds_each"] == 60.0


def test_measured_rate_per_media_second_prices_long_media() -> None:
    """A home that measured 10 s clips prices a 1000 s lecture by seconds per media second, not per run."""
    stats = [{"work": {"n": 3, "total_s": 6.0, "media_s": 30.0, "media_total_s": 6.0},
              "fetch": {"n": 3, "total_s": 1.5}}]
    means, rtf = measured_rates(stats)
    assert means == {"work": 2.0, "fetch": 0.5} and rtf == {"work": 0.2}
    est = estimate_batch([1000.0], ["fetch", "work"], pool_of, {"net": 1, "cpu": 1}, COSTS, means, rtf=rtf)
    assert est.seconds == 200.5 and est.stages["work"]["measured"]
    unknown = estimate_batch([None], ["fetch", "work"], pool_of, {"net": 1, "cpu": 1}, COSTS, means, rtf=rtf)
    assert unknown.seconds == 2.5  # no length: the measured mean per run


def _quick(item: dict, ctx: StageContext) -> StageResult:
    return StageResult(meta={"duration": 10.0}, measured=not ctx.options.get("reused"))


register(Stage("est_quick", _quick, resource="cpu"))


def test_unmeasured_runs_stay_out_of_the_rates(tmp_path: Path) -> None:
    """A stage that found its work done (captions, an earlier file) is timed on the item but not in the rate."""
    home = tmp_path / "home"
    with Engine(home, settings=fast_settings()) as e:
        a = e.submit("measured", ["x", "y"], recipe=["est_quick"])
        b = e.submit("reused", ["z"], recipe=["est_quick"], options={"reused": True})
        e.wait(a, timeout=20)
        e.wait(b, timeout=20)
        assert "est_quick" in (e.items(b)[0].get("timings") or {})
    stats = {s.name: s.stage_stats for s in read_summaries(home)}
    assert stats["measured"]["est_quick"]["n"] == 2 and stats["measured"]["est_quick"]["media_s"] == 20.0
    assert "est_quick" not in stats["reused"]


def test_starting_eta_comes_from_the_home_and_the_items() -> None:
    """Before a batch has measured anything its ETA is the home's rates for its items' lengths, not nothing."""
    from pipeline.engine.estimator import estimate_eta, starting_costs

    home = [{"work": {"n": 2, "total_s": 4.0, "media_s": 40.0, "media_total_s": 4.0}}]
    costs = starting_costs(["fetch", "work"], COSTS, [100.0, 300.0, None], home)
    assert costs == {"fetch": 2.0, "work": 20.0}  # 0.1 s per media second measured here × a 200 s mean
    eta = estimate_eta(["fetch", "work"], ["net", "cpu"], {0: 3}, {}, {"net": 1, "cpu": 1}, costs)
    assert eta == 60.0

"""The engine: ordering, backoff on an injected clock, on_error modes, pause/resume/cancel,
pool limits, fair sharing, the governor, durability gating, followers."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import GovernorSettings, RetryPolicy
from pipeline.engine.clock import FakeClock
from pipeline.engine.core import Engine
from pipeline.engine.estimator import estimate_eta
from pipeline.engine.governor import Governor, Readings
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from state.reader import read_batch
from tests.conftest import fast_settings
from tests.conftest import wait_for as _wait_for

# ---------------------------------------------------------------- test stages
EVENTS: list[tuple[str, int, str]] = []
_lock = threading.Lock()
_conc: dict[str, int] = {}
_max_conc: dict[str, int] = {}


def _record(kind: str, ctx: StageContext) -> None:
    with _lock:
        EVENTS.append((kind, ctx.item_n, f"{ctx.batch_name}/{ctx.stage}"))


def tracked(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """Records start/end and concurrency per stage; sleeps per option; honours cancel."""
    with _lock:
        _conc[ctx.stage] = _conc.get(ctx.stage, 0) + 1
        _max_conc[ctx.stage] = max(_max_conc.get(ctx.stage, 0), _conc[ctx.stage])
    _record("start", ctx)
    try:
        end = time.monotonic() + float(ctx.options.get("sleep", 0))
        while time.monotonic() < end:
            if ctx.cancelled():
                from pipeline.errors import Cancelled

                raise Cancelled("stopped")
            time.sleep(0.005)
        gate = ctx.options.get("gate")
        if gate and Path(gate).exists() and ctx.stage == "t_cpu":
            from pipeline.errors import PermanentError

            raise PermanentError("gate file present")
        return StageResult(meta={"title": item["source"]})
    finally:
        with _lock:
            _conc[ctx.stage] -= 1
        _record("end", ctx)


def durable_check(item: dict[str, Any], ctx: StageContext) -> StageResult:
    """Fails if the previous stage's completion is not yet on disk when this one starts."""
    home = Path(ctx.options["home"])
    _, items = read_batch(home, ctx.batch_id)
    on_disk = {it["n"]: it for it in items}[ctx.item_n]
    if on_disk.get("stage_index", 0) < 1 or "t_net" not in (on_disk.get("timings") or {}):
        raise AssertionError(f"item {ctx.item_n}: previous stage not durable when the next started")
    return StageResult()


for _name, _res in (("t_net", "net"), ("t_cpu", "cpu"), ("t_llm", "llm")):
    register(Stage(_name, tracked, resource=_res))  # type: ignore[arg-type]
register(Stage("t_durable", durable_check, resource="cpu"))

RECIPE = ["t_net", "t_cpu", "t_llm"]


@pytest.fixture(autouse=True)
def _reset() -> None:
    EVENTS.clear()
    _conc.clear()
    _max_conc.clear()



wait_for = functools.partial(_wait_for, timeout=10.0, poll=0.01)  # this module's stages are quick


def status_of(engine: Engine, batch: str) -> list[str]:
    return [it["status"] for it in engine.items(batch)]


# ---------------------------------------------------------------- tests
def test_stages_run_in_recipe_order(make_engine: Callable[..., Engine]) -> None:
    """Each item runs its stages in order, one at a time; the batch ends done."""
    e = make_engine()
    e.submit("b", [f"s{i}" for i in range(6)], recipe=RECIPE)
    s = e.wait("b", timeout=20)
    assert s.state == "done" and s.counts["done"] == 6
    for n in range(1, 7):
        mine = [(k, st) for k, i, st in EVENTS if i == n]
        assert mine == [("start", "b/t_net"), ("end", "b/t_net"), ("start", "b/t_cpu"), ("end", "b/t_cpu"),
                        ("start", "b/t_llm"), ("end", "b/t_llm")]
    item = e.items("b")[0]
    assert set(item["timings"]) == set(RECIPE) and item["title"] == "s0"


def test_next_stage_waits_for_durable_completion(make_engine: Callable[..., Engine], home: Path) -> None:
    """A stage's completion is on disk before the item's next stage starts."""
    e = make_engine(settings=fast_settings(flush_delay_s=0.15))
    e.submit("b", [f"s{i}" for i in range(8)], recipe=["t_net", "t_durable"], options={"home": str(home)})
    s = e.wait("b", timeout=20)
    assert s.counts["done"] == 8, [it["error"] for it in e.items("b")]


def test_retry_backoff_follows_the_injected_clock(make_engine: Callable[..., Engine]) -> None:
    """A transient failure waits base·2^(n-1) seconds of clock time, then runs; attempts are counted."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    t0 = clock.now()
    e.submit("b", ["x fail=2@probe_cpu"], recipe="probe")
    wait_for(lambda: e.items("b")[0]["status"] == "waiting")
    it = e.items("b")[0]
    assert it["attempts"] == 1 and it["next_attempt_at"] == pytest.approx(t0 + 10)
    assert it["error"]["retryable"] and it["error"]["stage"] == "probe_cpu"
    clock.advance(9.9)
    time.sleep(0.3)
    assert e.items("b")[0]["status"] == "waiting"
    clock.advance(0.2)
    wait_for(lambda: e.items("b")[0]["attempts"] == 2 and e.items("b")[0]["status"] == "waiting")
    assert e.items("b")[0]["next_attempt_at"] == pytest.approx(t0 + 10.1 + 20)  # doubled
    clock.advance(20)
    s = e.wait("b", timeout=10)
    assert s.counts["done"] == 1
    assert e.items("b")[0]["attempts"] == 0  # reset once the stage succeeded


def test_retry_limit_then_failed(make_engine: Callable[..., Engine]) -> None:
    """After the retry limit the item fails with its last error; the batch still finishes."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    e.submit("b", ["x fail=99@probe_net", "y"], recipe="probe", options={"retry_limit": 2})
    for _ in range(3):
        wait_for(lambda: e.items("b")[0]["status"] in ("waiting", "failed"))
        clock.advance(1000)
        time.sleep(0.1)
    s = e.wait("b", timeout=10)
    x = e.items("b")[0]
    assert (x["status"], x["attempts"], x["error"]["type"]) == ("failed", 3, "RetryableError")
    assert s.counts == {**s.counts, "done": 1, "failed": 1}


def test_permanent_error_fails_at_once(make_engine: Callable[..., Engine]) -> None:
    """A permanent error fails the item on its first attempt, other items carry on (on_error=continue)."""
    e = make_engine()
    e.submit("b", ["x perm@probe_gpu", "y", "z"], recipe="probe")
    s = e.wait("b", timeout=10)
    x = e.items("b")[0]
    assert (x["status"], x["attempts"], x["error"]["stage"]) == ("failed", 1, "probe_gpu")
    assert not x["error"]["retryable"]
    assert s.state == "done" and s.counts["done"] == 2


def test_on_error_stop_pauses_the_batch(make_engine: Callable[..., Engine]) -> None:
    """on_error=stop pauses the batch at the first permanent failure; nothing new starts."""
    e = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    e.submit("b", ["x perm@probe_net"] + [f"s{i}" for i in range(5)], recipe="probe",
             options={"on_error": "stop"})
    wait_for(lambda: e.summary("b").state == "paused")
    time.sleep(0.3)
    s = e.summary("b")
    assert s.counts["failed"] == 1 and s.counts["done"] == 0 and s.counts["running"] == 0
    e.resume("b")
    s = e.wait("b", timeout=10)
    assert s.counts["done"] == 5


def test_on_error_retry_retries_permanent_errors(make_engine: Callable[..., Engine]) -> None:
    """on_error=retry keeps retrying even permanent failures, up to the limit."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    e.submit("b", ["x perm@probe_net"], recipe="probe", options={"on_error": "retry", "retry_limit": 1})
    wait_for(lambda: e.items("b")[0]["status"] == "waiting")
    clock.advance(100)
    s = e.wait("b", timeout=10)
    assert s.counts["failed"] == 1 and e.items("b")[0]["attempts"] == 2


def test_unexpected_exception_is_recorded_and_retried(make_engine: Callable[..., Engine], home: Path) -> None:
    """A bug in a stage (plain exception) is recorded with its type, retried, and its traceback logged."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    e.submit("b", ["x crash@probe_cpu"], recipe="probe", options={"retry_limit": 0})
    s = e.wait("b", timeout=10)
    it = e.items("b")[0]
    assert s.counts["failed"] == 1 and it["error"]["type"] == "RuntimeError" and it["error"]["retryable"]
    assert "Traceback" in (Path(it["workdir"]) / "log.txt").read_text()


def test_rate_limit_requeues_without_spending_an_attempt(make_engine: Callable[..., Engine]) -> None:
    """HTTP 429 puts the item back with the account cooled down; no attempt is spent."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    t0 = clock.now()
    e.submit("b", ["x ratelimit=2@probe_net", "y"], recipe="probe")
    wait_for(lambda: e.items("b")[0]["status"] == "waiting")
    x = e.items("b")[0]
    assert x["attempts"] == 0 and x["next_attempt_at"] == pytest.approx(t0 + 30)
    assert x["error"]["type"] == "RateLimited"
    time.sleep(0.2)
    for _ in range(2):
        clock.advance(31)
        time.sleep(0.2)
    s = e.wait("b", timeout=10)
    assert s.counts["done"] == 2 and e.items("b")[0]["attempts"] == 0


def test_pause_lets_running_finish_and_starts_nothing(make_engine: Callable[..., Engine]) -> None:
    """Pausing lets running stages finish, starts nothing new; resume completes the batch."""
    e = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    e.submit("b", [f"s{i}" for i in range(6)], recipe=RECIPE, options={"sleep": 0.1})
    wait_for(lambda: any(k == "start" for k, _, _ in EVENTS))
    e.pause("b")
    wait_for(lambda: e.summary("b").counts["running"] == 0)
    n_events = len(EVENTS)
    time.sleep(0.4)
    assert len(EVENTS) == n_events
    assert e.summary("b").state == "paused" and e.summary("b").counts["done"] < 6
    e.resume("b")
    assert e.wait("b", timeout=20).counts["done"] == 6


def test_pause_all_and_resume_all(make_engine: Callable[..., Engine]) -> None:
    """Pause and resume apply to every batch when no batch is named."""
    e = make_engine()
    e.submit("a", ["x"], recipe=RECIPE, options={"sleep": 0.2})
    e.submit("b", ["y"], recipe=RECIPE, options={"sleep": 0.2})
    e.pause()
    assert {s.state for s in e.summaries()} == {"paused"}
    e.resume()
    assert e.wait("a", timeout=10).state == "done" and e.wait("b", timeout=10).state == "done"


def test_cancel_stops_running_stage_and_keeps_finished_work(make_engine: Callable[..., Engine]) -> None:
    """Cancel stops a running stage cooperatively, cancels the queue, keeps what was done."""
    e = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    e.submit("b", [f"s{i}" for i in range(5)], recipe=RECIPE, options={"sleep": 0.15})
    wait_for(lambda: e.summary("b").counts["done"] >= 1, timeout=20)
    t0 = time.monotonic()
    e.cancel("b")
    s = e.wait("b", timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert s.state == "cancelled" and s.counts["running"] == 0
    assert s.counts["done"] >= 1 and s.counts["cancelled"] == 5 - s.counts["done"]
    done_before = s.counts["done"]
    e.resume("b")  # resuming a cancelled batch reopens the cancelled items only
    s = e.wait("b", timeout=20)
    assert s.counts["done"] == 5
    assert sum(1 for k, _, st in EVENTS if k == "start" and st == "b/t_llm") <= 5 + 1
    assert done_before >= 1


def test_pool_limits_are_respected(make_engine: Callable[..., Engine]) -> None:
    """No pool ever runs more stages at once than its size."""
    e = make_engine(settings=fast_settings(pools={"net": 3, "cpu": 1, "gpu": 0, "llm": 2}))
    e.submit("b", [f"s{i}" for i in range(12)], recipe=RECIPE, options={"sleep": 0.03})
    e.wait("b", timeout=30)
    assert _max_conc == {"t_net": 3, "t_cpu": 1, "t_llm": 2}


def test_two_batches_share_a_pool_fairly(make_engine: Callable[..., Engine]) -> None:
    """With one worker, two batches take turns instead of one starving the other."""
    e = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    e.submit("a", [f"a{i}" for i in range(8)], recipe=["t_net"], options={"sleep": 0.01}, paused=True)
    e.submit("b", [f"b{i}" for i in range(8)], recipe=["t_net"], options={"sleep": 0.01}, paused=True)
    assert not EVENTS
    e.resume()
    e.wait("a", timeout=20)
    e.wait("b", timeout=20)
    order = [st.split("/")[0] for k, _, st in EVENTS if k == "start"]
    assert len(order) == 16
    first_half = order[:8]
    assert first_half.count("a") == 4 and first_half.count("b") == 4, order


def low_ram_probe(state: dict[str, float]) -> Callable[[], Readings]:
    def probe() -> Readings:
        return Readings(ram_total_mb=8000, ram_available_mb=state["ram"], disk_free_mb=50_000, cpu_percent=5.0,
                        gpus=[], gpu_error="no GPU in test")

    return probe


def test_governor_holds_heavy_stages_while_ram_is_low(make_engine: Callable[..., Engine], home: Path) -> None:
    """Low free RAM holds cpu stages (with the reason visible) while net stages still run."""
    state = {"ram": 100.0}
    gov = Governor(home / "output", GovernorSettings(min_free_ram_mb=500, min_free_disk_mb=0, cache_s=0.0),
                   probe=low_ram_probe(state))
    e = make_engine(governor=gov)
    e.submit("b", [f"s{i}" for i in range(3)], recipe=RECIPE)
    wait_for(lambda: sum(1 for k, _, st in EVENTS if k == "end" and st == "b/t_net") == 3)
    wait_for(lambda: e.summary("b").held is not None, timeout=5)
    assert "free RAM 100 MB is below 500 MB" in (e.summary("b").held or "")
    assert not any(st == "b/t_cpu" for _, _, st in EVENTS)
    assert any(p.held for p in e.pools() if p.name == "cpu")
    state["ram"] = 4000.0
    s = e.wait("b", timeout=10)
    assert s.counts["done"] == 3


def test_governor_reads_this_machine(tmp_path: Path) -> None:
    """Real readings: RAM and disk are positive; an absent GPU is reported, not raised."""
    r = Governor(tmp_path / "not-yet-created").readings()
    assert r.ram_total_mb > 0 and 0 < r.ram_available_mb <= r.ram_total_mb and r.disk_free_mb > 0
    assert r.gpus or r.gpu_error


def test_retry_failed_reruns_from_the_failed_stage(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    """Retry failed runs only the stage that failed onward; earlier stages are not redone."""
    gate = tmp_path / "gate"
    gate.write_text("fail")
    e = make_engine()
    e.submit("b", ["x"], recipe=RECIPE, options={"gate": str(gate)})
    s = e.wait("b", timeout=10)
    assert s.counts["failed"] == 1
    gate.unlink()
    EVENTS.clear()
    assert e.retry_failed("b") == 1
    s = e.wait("b", timeout=10)
    assert s.counts["done"] == 1
    assert [st for k, _, st in EVENTS if k == "start"] == ["b/t_cpu", "b/t_llm"]


def test_hostile_titles_stay_inside_the_output_folder(make_engine: Callable[..., Engine], home: Path) -> None:
    """Titles with ../ or slashes become safe folder names inside the batch folder."""
    e = make_engine()
    e.submit("../../evil", ["../../../etc/passwd", "..", "a/b\\c"], recipe="probe")
    e.wait("../../evil", timeout=10)
    root = (home / "output").resolve()
    for it in e.items("../../evil"):
        assert Path(it["workdir"]).resolve().is_relative_to(root), it["workdir"]
    assert not (home.parent / "etc").exists()


def test_temp_files_are_removed_when_items_finish(make_engine: Callable[..., Engine]) -> None:
    """The item's scratch folder is gone once it is done."""

    def scratch(item: dict[str, Any], ctx: StageContext) -> StageResult:
        (ctx.tmpdir / "audio.part").write_bytes(b"x" * 100)
        return StageResult()

    register(Stage("t_scratch", scratch, resource="cpu"))
    e = make_engine()
    e.submit("b", ["x"], recipe=["t_scratch", "t_net"])
    e.wait("b", timeout=10)
    wd = Path(e.items("b")[0]["workdir"])
    assert (wd / "log.txt").exists() and not (wd / ".tmp").exists()


def test_eta_and_active_steps_are_published(make_engine: Callable[..., Engine]) -> None:
    """While a batch runs its summary carries an ETA and the step of each active item."""
    e = make_engine(settings=fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1}))
    e.submit("b", [f"s{i}" for i in range(8)], recipe=RECIPE, options={"sleep": 0.3})
    wait_for(lambda: bool(e.summary("b").eta_s) and bool(e.summary("b").active), timeout=10)
    s = e.summary("b")
    assert s.eta_s > 0 and {a["stage"] for a in s.active} <= set(RECIPE)
    e.cancel("b")


def test_estimate_eta_uses_the_slowest_pool() -> None:
    """ETA = remaining runs × measured mean, per pool ÷ pool size, slowest pool."""
    eta = estimate_eta(["dl", "tr"], ["net", "cpu"], {0: 10, 1: 5},
                       {"dl": {"n": 2, "total_s": 20.0}, "tr": {"n": 1, "total_s": 60.0}}, {"net": 2, "cpu": 1})
    assert eta == pytest.approx(max(10 * 10 / 2, 15 * 60 / 1))
    assert estimate_eta(["a"], ["cpu"], {}, {}, {"cpu": 1}) == 0.0
    assert estimate_eta(["a"], ["cpu"], {0: 3}, {}, {"cpu": 1}) is None


def test_retry_policy_is_validated_and_capped() -> None:
    """Delays double and stop at the cap; nonsense policies are refused."""
    p = RetryPolicy(limit=5, base_s=2, cap_s=10, jitter=0)
    assert [p.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    with pytest.raises(ValueError):
        RetryPolicy(jitter=1.5)


def test_follower_forwards_control_and_takes_over(make_engine: Callable[..., Engine], home: Path) -> None:
    """A second engine on the same home follows the owner, submits through it, and takes over when it stops."""
    owner = make_engine()
    follower = make_engine()
    assert owner.owner and not follower.owner
    bid = follower.submit("via-follower", [f"s{i}" for i in range(3)], recipe=RECIPE, options={"sleep": 0.5})
    wait_for(lambda: owner.summary(bid).counts["running"] >= 1)
    follower.pause("via-follower")
    wait_for(lambda: owner.summary(bid).state == "paused")
    owner.shutdown(interrupt=True)
    wait_for(lambda: follower.owner, timeout=10)
    follower.resume("via-follower")
    assert follower.wait("via-follower", timeout=20).counts["done"] == 3

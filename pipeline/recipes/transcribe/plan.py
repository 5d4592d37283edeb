"""The transcribe recipe's planner (``tubemill plan``): the real engine and pacing code on a virtual clock.

Why: "7,000 videos, 3 accounts, 3–5 min pacing, 2 transcription workers — when does it
finish, and what is the bottleneck?" has an answer only once the scheduler's rules
(one download per account, random spacing, queue-aware pace and hold, depth-first pools)
meet the stage durations. Spreadsheet arithmetic misses the interactions; running it for
real takes weeks. So the simulator builds an ordinary ``Engine`` (state in a throw-away
home) whose executors do not run stages: each stage "finishes" at ``now + modelled
duration`` on a ``FakeClock``, and the loop jumps the clock from event to event. Every
scheduling decision is the production code's.

Stage durations come from measured ``stats.json`` files of earlier batches on this
machine when there are any (``transcribe`` as busy seconds per audio second), else from
built-in figures; every one can be overridden.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.config.settings import GovernorSettings, PacingSettings, Settings
from pipeline.engine.ratelimit import AccountPool
from pipeline.engine.recipe import get_recipe
from pipeline.engine.simulate import NoGovernor, VirtualExecutor, VirtualTime
from pipeline.engine.stage import Stage, StageContext
from pipeline.recipes.transcribe.costs import COSTS

DAY = 86400.0


@dataclass(frozen=True)
class StageModel:
    """Seconds one worker spends per item on each stage (pacing is not in here: it is simulated).

    The defaults are the recipe's stage costs (``costs.COSTS``), the same the preview and the
    ETA start from; measured ``stats.json`` figures or the command line replace them.
    """

    audio_minutes: float = 60.0
    transcribe_rtf: float = COSTS["transcribe"].per_media_s  # busy seconds per audio second
    download_s: float = COSTS["download"].fixed_s
    captions_s: float = COSTS["captions"].fixed_s
    summarize_s: float = COSTS["summarize"].fixed_s
    export_s: float = COSTS["export"].fixed_s
    source: str = "built-in defaults"

    def seconds(self, stage: str) -> float:
        if stage == "transcribe":
            return self.audio_minutes * 60.0 * self.transcribe_rtf
        return float(getattr(self, f"{stage}_s", 0.0))


def model_from_stats(paths: Iterable[Path], base: StageModel | None = None) -> StageModel:
    """Stage means from ``stats.json`` files (weighted by item count); fields without data keep ``base``."""
    import json

    base = base or StageModel()
    busy: dict[str, float] = {}
    count: dict[str, int] = {}
    audio_s = audio_items = 0.0
    used = 0
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stages = data.get("stages") or {}
        if "transcribe" not in stages:
            continue
        used += 1
        for name, st in stages.items():
            if st.get("count") and st.get("busy_s") is not None:
                busy[name] = busy.get(name, 0.0) + float(st["busy_s"])
                count[name] = count.get(name, 0) + int(st["count"])
        if data.get("audio_s"):
            audio_s += float(data["audio_s"])
            audio_items += float(data.get("audio_items") or 0)
    if not used:
        return base
    fields: dict[str, Any] = {"source": f"{used} stats.json file(s)"}
    for name in ("download", "captions", "summarize", "export"):
        if count.get(name):
            fields[f"{name}_s"] = busy[name] / count[name]
    if count.get("transcribe") and audio_s and audio_items:
        # busy seconds per audio second, over the items that have a duration
        fields["transcribe_rtf"] = (busy["transcribe"] / count["transcribe"]) / (audio_s / audio_items)
    return replace(base, **fields)


def find_stats(root: Path, limit: int = 50) -> list[Path]:
    """The newest ``stats.json`` files under an output root (one per batch folder)."""
    if not Path(root).is_dir():
        return []
    found = sorted(Path(root).glob("*/stats.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:limit]


@dataclass
class PlanSpec:
    videos: int
    accounts: int = 1  # cookie accounts; 0 = anonymous
    delay: tuple[float, float] | None = None  # the range of the accounts' kind; None: settings
    transcribe_workers: int = 2
    download_workers: int = 4
    llm_workers: int = 4
    model: StageModel = field(default_factory=StageModel)
    pacing: PacingSettings = field(default_factory=PacingSettings)
    captions_fraction: float = 0.0  # items whose captions make the download unnecessary
    recipe: str = "transcribe"
    seed: int = 1
    start: datetime | None = None
    samples: int = 400

    def pacing_settings(self) -> PacingSettings:
        if self.delay is None:
            return self.pacing
        lo, hi = self.delay
        key = "cookie" if self.accounts else "anon"
        return replace(self.pacing, **{f"{key}_delay_min_s": lo, f"{key}_delay_max_s": hi})


@dataclass
class PlanResult:
    makespan_s: float
    downloads_done_s: float
    utilization: dict[str, float]
    bottleneck: str
    buffer: list[tuple[float, int]]
    progress: list[tuple[float, int, int]]  # (t, downloaded, finished)
    arithmetic_s: float | None
    start: datetime
    spec: PlanSpec
    sim_seconds: float
    ticks: int

    @property
    def finish(self) -> datetime:
        return self.start + timedelta(seconds=self.makespan_s)

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        p = spec.pacing_settings()
        lo, hi = p.delay_range(bool(spec.accounts))
        return {
            "videos": spec.videos,
            "accounts": spec.accounts,
            "delay_s": [lo, hi],
            "transcribe_workers": spec.transcribe_workers,
            "queue_aware": p.queue_aware,
            "makespan_s": round(self.makespan_s, 1),
            "makespan_days": round(self.makespan_s / DAY, 3),
            "downloads_days": round(self.downloads_done_s / DAY, 3),
            "pacing_arithmetic_days": round(self.arithmetic_s / DAY, 3) if self.arithmetic_s else None,
            "bottleneck": self.bottleneck,
            "utilization": {k: round(v, 3) for k, v in self.utilization.items()},
            "max_buffer_seen": max((b for _, b in self.buffer), default=0),
            "start": self.start.isoformat(timespec="minutes"),
            "finish": self.finish.isoformat(timespec="minutes"),
            "model": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in spec.model.__dict__.items()},
            "simulated_in_s": round(self.sim_seconds, 2),
        }


class _Occupancy(AccountPool):
    """The real pool, also adding up how much of each account's time its pacing used."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.occupied = 0.0
        self.first_start: float | None = None
        self.last_done = 0.0

    def acquire(self, names: list[str], now: float) -> Any:
        acct = super().acquire(names, now)
        if acct is not None and self.first_start is None:
            self.first_start = now
        return acct

    def _account_time(self, name: str, now: float) -> None:
        a = self.get(name)
        if a is not None and a.last_start is not None:
            self.occupied += max(now, a.next_ready_at, a.cooldown_until) - a.last_start
        self.last_done = now

    def success(self, name: str, now: float, buffer: int | None = None) -> None:
        super().success(name, now, buffer)
        self._account_time(name, now)

    def rate_limited(self, name: str, now: float, retry_after: float | None = None) -> None:
        super().rate_limited(name, now, retry_after)
        self._account_time(name, now)

    def failure(self, name: str, now: float, *, counts: bool = True) -> None:
        super().failure(name, now, counts=counts)
        self._account_time(name, now)


class _Simulation:
    """The transcribe recipe's stage model on virtual time (captioned items skip download and transcription)."""

    def __init__(self, spec: PlanSpec) -> None:
        self.spec = spec
        self.time = VirtualTime((spec.start or datetime.now(UTC)).timestamp())
        self.clock = self.time.clock
        self.busy_s: dict[str, float] = {}
        self.rng = random.Random(spec.seed)
        self.captioned: set[int] = set()

    def model(self, stage: Stage, ctx: StageContext) -> float:
        secs = self.spec.model.seconds(stage.name)
        if ctx.item_n in self.captioned:
            if stage.name == "captions":
                # what the real captions stage leaves; the real download stage then needs no account
                ctx.workdir.mkdir(parents=True, exist_ok=True)
                (ctx.workdir / "transcript.json").write_text("{}")
            elif stage.name in ("download", "transcribe"):
                secs = 0.0
        self.busy_s[stage.name] = self.busy_s.get(stage.name, 0.0) + secs
        return secs


def simulate(spec: PlanSpec) -> PlanResult:
    """Run ``spec.videos`` modelled items through a real ``Engine`` on virtual time."""
    if spec.videos < 1:
        raise ValueError("--videos must be at least 1")
    if spec.transcribe_workers < 1:
        raise ValueError("--transcribe-workers must be at least 1")
    t_wall = time.perf_counter()
    sim = _Simulation(spec)
    pacing = spec.pacing_settings()
    settings = Settings(
        pools={"net": spec.download_workers, "cpu": spec.transcribe_workers, "gpu": 0, "llm": spec.llm_workers},
        flush_delay_s=3600.0,  # the throw-away store is written once, at the end
        governor=GovernorSettings(min_free_ram_mb=0, min_free_disk_mb=0, min_free_gpu_mb=0),
        pacing=pacing,
    )
    stages = list(get_recipe(spec.recipe).stages)
    n_capt = int(round(spec.videos * max(0.0, min(1.0, spec.captions_fraction))))
    sim.captioned = set(sim.rng.sample(range(1, spec.videos + 1), n_capt)) if n_capt else set()
    accounts = _Occupancy(pacing, rng=random.Random(spec.seed))
    engine, result = _simulated_run(spec, sim, settings, accounts, stages)
    t0 = sim.time.start
    makespan = result["end"] - t0
    util = {name: busy / (makespan * _pool_size(engine, name)) if makespan > 0 else 0.0
            for name, busy in sim.busy_s.items() if name != "download"}
    n_acc = max(1, spec.accounts)
    if "download" in stages:
        util["download"] = min(1.0, accounts.occupied / (n_acc * makespan)) if makespan > 0 else 0.0
    lo, hi = pacing.delay_range(bool(spec.accounts))
    downloads = spec.videos - n_capt
    arithmetic = downloads * (lo + hi) / 2 / n_acc if downloads and "download" in stages else None
    bottleneck = max(util, key=lambda k: util[k]) if util else "none"
    return PlanResult(
        makespan_s=makespan,
        downloads_done_s=(accounts.last_done - t0) if accounts.last_done else 0.0,
        utilization=util,
        bottleneck=bottleneck,
        buffer=result["buffer"],
        progress=result["progress"],
        arithmetic_s=arithmetic,
        start=datetime.fromtimestamp(t0, UTC),
        spec=spec,
        sim_seconds=time.perf_counter() - t_wall,
        ticks=result["ticks"],
    )


def _simulated_run(spec: PlanSpec, sim: _Simulation, settings: Settings, accounts: AccountPool,
                   stages: list[str]) -> tuple[Any, dict[str, Any]]:
    """The real engine on a throw-away home: virtual executors, clock and governor, no fsync, no outputs."""
    from pipeline.engine.core import Engine

    with tempfile.TemporaryDirectory(prefix="tubemill-plan-") as tmp:
        home = Path(tmp)
        executors = dict.fromkeys(("net", "cpu", "gpu", "llm"), VirtualExecutor(sim.time, sim.model))
        engine = Engine(home, settings=settings, clock=sim.clock, executors=executors,
                        governor=NoGovernor(home, settings.governor), seed=spec.seed, accounts=accounts,
                        durable=False, write_outputs=False, takeover=False, role="tubemill plan")
        engine.start(run_scheduler=False)
        try:
            options: dict[str, Any] = {"recipe_name": "plan"}
            if spec.accounts:
                options["cookie_files"] = {f"account-{i + 1}": f"(simulated account {i + 1})"
                                           for i in range(spec.accounts)}
            sources = [{"source": f"sim://video/{i}", "id": f"sim{i}", "duration": spec.model.audio_minutes * 60}
                       for i in range(spec.videos)]
            bid = engine.submit("plan", sources, recipe=stages, options=options)
            return engine, _run(engine, sim, bid, spec, stages.index("download") if "download" in stages else -1)
        finally:
            engine.shutdown(timeout=5)


def _pool_size(engine: Any, stage_name: str) -> int:
    return max(1, engine.pool_sizes.get(engine.pool_of(stage_name), 1))


def _run(engine: Any, sim: _Simulation, bid: str, spec: PlanSpec, download_index: int) -> dict[str, Any]:
    """Event loop: tick the scheduler, then jump to the next completion or account wake-up."""
    clock, t0 = sim.clock, sim.time.start
    buffer: list[tuple[float, int]] = []
    progress: list[tuple[float, int, int]] = []
    total = spec.videos
    ticks = 0
    last_sample = -math.inf
    step = 60.0
    while True:
        engine.tick()
        ticks += 1
        s = engine.store.summary(bid)
        now = clock.now()
        if now - last_sample >= step or s.finished >= total:
            last_sample = now
            rem = engine.store.remaining_by_stage(bid)
            downloaded = total - sum(v for k, v in rem.items() if k <= download_index)
            buffer.append((now - t0, engine.download_buffer()))
            progress.append((now - t0, downloaded, s.finished))
            if len(buffer) > 4 * spec.samples:  # keep the series small: halve it, sample half as often
                buffer, progress, step = buffer[::2], progress[::2], step * 2
        if s.finished >= total:
            return {"end": now, "buffer": buffer, "progress": progress, "ticks": ticks}
        nxt = sim.time.next_event()
        wake = engine.next_wakeup(now)
        if wake is not None and wake > now:
            nxt = min(nxt, wake)
        if nxt is math.inf:
            if engine.idle():
                raise RuntimeError(f"simulation stalled at {s.finished}/{total} finished: {s.counts}")
            continue
        sim.time.jump(nxt)


def parse_delay(text: str) -> tuple[float, float]:
    """``180-300`` (seconds), ``3m-5m``, ``10`` → (min, max)."""
    def one(t: str) -> float:
        t = t.strip().lower()
        mult = 60.0 if t.endswith("m") else 3600.0 if t.endswith("h") else 1.0
        return float(t.rstrip("smh")) * mult

    parts = text.split("-")
    if len(parts) == 1:
        v = one(parts[0])
        return v, v
    if len(parts) != 2:
        raise ValueError(f"--delay expects MIN-MAX seconds (e.g. 180-300), got {text!r}")
    lo, hi = one(parts[0]), one(parts[1])
    if lo > hi or lo < 0:
        raise ValueError(f"--delay {text!r}: need 0 <= MIN <= MAX")
    return lo, hi


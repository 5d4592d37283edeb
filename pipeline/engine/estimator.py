"""The one estimator: what a stage costs a worker, and how long a batch takes over its pools.

Before anything has run, a stage costs what its recipe says (:class:`Cost`: fixed seconds
plus seconds per second of media, the transcription's real-time factor); once a stage has
run on this machine, its measured mean replaces that. The preview, ``--dry-run``, the
running ETA and ``tubemill plan`` all take their stage seconds from :func:`stage_seconds`;
wall time is the busiest pool's work divided by its size (stages of different pools
overlap).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

UNKNOWN_MEDIA_S = 600.0  # the length assumed for an item whose duration is not known yet


@dataclass(frozen=True)
class Cost:
    """Seconds one worker spends on one run of a stage, before it has been measured here."""

    fixed_s: float = 1.0
    per_media_s: float = 0.0  # seconds per second of the item's media (the transcription's rtf)

    def seconds(self, media_s: float | None) -> float:
        return self.fixed_s + self.per_media_s * (media_s if media_s else UNKNOWN_MEDIA_S)


DEFAULT_COST = Cost()


def stage_seconds(stage: str, media_s: float | None, costs: Mapping[str, Cost],
                  measured: Mapping[str, float] | None = None, rtf: Mapping[str, float] | None = None) -> float:
    """What this machine measured for the stage when it has, else the recipe's cost.

    A stage whose cost grows with the media (the transcription) is priced by its measured
    seconds per media second (``rtf``) when the item's length is known: a home that has
    transcribed 30 s clips must not price an hour-long lecture at 3 s.
    """
    cost = costs.get(stage, DEFAULT_COST)
    if rtf and stage in rtf and cost.per_media_s > 0 and media_s:
        return rtf[stage] * media_s
    if measured and stage in measured:
        return measured[stage]
    return cost.seconds(media_s)


def measured_rates(stats: Iterable[Mapping[str, Mapping[str, float]]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean seconds per run, and seconds per media second, per stage, from batches' ``stage_stats`` sums."""
    runs: dict[str, list[float]] = {}
    media: dict[str, list[float]] = {}
    for batch in stats:
        for stage, st in batch.items():
            r = runs.setdefault(stage, [0.0, 0.0])
            r[0] += float(st.get("total_s", 0.0))
            r[1] += float(st.get("n", 0))
            if st.get("media_s"):
                m = media.setdefault(stage, [0.0, 0.0])
                m[0] += float(st.get("media_total_s", 0.0))
                m[1] += float(st["media_s"])
    return ({k: v[0] / v[1] for k, v in runs.items() if v[1]},
            {k: v[0] / v[1] for k, v in media.items() if v[1] > 0})


@dataclass(frozen=True)
class Estimate:
    """A batch's wall-time estimate and how it was reached (what ``run --dry-run --json`` prints)."""

    seconds: float
    items: int
    pools: dict[str, float]  # seconds of work per pool ÷ its size
    stages: dict[str, dict[str, Any]]  # per stage: pool, runs, seconds each (mean), work seconds, measured here?
    bottleneck: str | None
    calibrated: tuple[str, ...] = ()  # stages priced by a short calibration of this machine, not by batches

    def to_dict(self) -> dict[str, Any]:
        return {"estimate_s": round(self.seconds, 3), "items": self.items, "bottleneck": self.bottleneck,
                "pools_s": {k: round(v, 3) for k, v in self.pools.items()}, "stages": self.stages,
                "calibrated": list(self.calibrated)}


def estimate_batch(media: Iterable[float | None], stages: Iterable[str], pool_of: Callable[[str], str],
                   pools: Mapping[str, int], costs: Mapping[str, Cost],
                   measured: Mapping[str, float] | None = None,
                   skip: Mapping[str, float] | None = None, rtf: Mapping[str, float] | None = None,
                   paced_s: float = 0.0, calibrated: Mapping[str, float] | None = None) -> Estimate:
    """Wall time for items of the given media lengths: each pool's work ÷ its size, the slowest pool.

    ``skip[pool]`` is the fraction of that pool's work items will not need (captioned
    items skip transcription). Pools work at once (a download beside a transcription), so
    the slowest one sets the wall time — unless one item's own chain of stages is longer: an
    item's stages run one after another, so a short batch takes at least its longest item.
    ``paced_s`` is the download pacing's own floor (downloads of one account on one site,
    spaced): no pool size shortens it. ``calibrated`` prices stages per media second the way
    ``rtf`` does, for stages no batch has measured yet (a short timing of this machine).
    """
    stages = list(stages)
    media = list(media)
    skip = skip or {}
    calibrated = {k: v for k, v in (calibrated or {}).items() if k not in (rtf or {}) and k not in (measured or {})}
    rates = {**calibrated, **(rtf or {})}
    place = {st: pool_of(st) for st in stages}
    # Each item's seconds per stage, priced once; every figure below is a sum over this table.
    table = [{st: stage_seconds(st, dur, costs, measured, rates) for st in stages} for dur in media]
    work: dict[str, float] = {}
    per_stage: dict[str, dict[str, Any]] = {}
    for st in stages:
        keep = 1 - skip.get(place[st], 0.0)
        total = sum(row[st] for row in table) * keep
        work[place[st]] = work.get(place[st], 0.0) + total
        per_stage[st] = {"pool": place[st], "runs": round(len(media) * keep, 2),
                         "seconds_each": round(total / (len(media) * keep), 3) if media and keep > 0 else 0.0,
                         "work_s": round(total, 3),
                         "measured": bool((measured and st in measured) or (rtf and st in rtf))}
    # Items take a pool's workers first come, first served: list-schedule each pool's per-item work onto
    # its workers (a big item that starts last ends last; many small ones come to work ÷ workers), each
    # job scaled by the share of the pool's work items need (captioned items skip the transcription).
    walls = {}
    for p in work:
        jobs = [sum(row[st] for st in stages if place[st] == p) for row in table]
        share = 1 - skip.get(p, 0.0)
        free = [0.0] * max(1, min(max(1, pools.get(p) or pools.get("cpu", 1)), len(jobs)))
        for job in jobs:
            heapq.heapreplace(free, free[0] + job * share)
        walls[p] = max(free)
    # The longest item's own stages; a pool every item skips (all captioned) is not in it.
    chain = max((sum(row[st] for st in stages if skip.get(place[st], 0.0) < 1) for row in table), default=0.0)
    if paced_s > 0:
        walls["download pacing"] = paced_s
    bottleneck = max(walls, key=lambda p: walls[p]) if walls else None
    if chain > max(walls.values(), default=0.0):
        walls["one item's stages"] = chain
        bottleneck = "one item's stages"
    return Estimate(max(walls.values(), default=0.0), len(media), walls, per_stage, bottleneck,
                    tuple(sorted(st for st in calibrated if st in stages)))


def starting_costs(stages: Iterable[str], costs: Mapping[str, Cost], durations: Iterable[Any],
                   home_stats: Iterable[Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
    """Each stage's seconds for a batch's ETA before the batch has measured it: the home's measured rates
    (per media second where the stage's cost grows with the media), else the recipe's cost, for the
    batch's mean media length."""
    known = [float(d) for d in durations if d]
    media = sum(known) / len(known) if known else None
    means, rtf = measured_rates(home_stats)
    return {name: stage_seconds(name, media, costs, means, rtf) for name in stages}


def estimate_eta(
    stage_names: list[str],
    stage_pools: list[str],
    remaining_at: dict[int, int],
    stats: dict[str, dict[str, float]],
    pool_sizes: dict[str, int],
    defaults: Mapping[str, float] | None = None,
) -> float | None:
    """Seconds left: remaining runs of each stage × its measured mean, per pool ÷ pool size, slowest pool.

    ``remaining_at[k]`` counts unfinished items whose next stage is ``k``; an item at
    stage ``k`` still has to run every stage from ``k`` on. A stage not measured yet costs
    ``defaults[stage]`` (its recipe's cost for this batch's items, or this home's measured rate), else
    the mean of the measured stages; before anything is measured the defaults alone give the ETA.
    """
    means = {s: v["total_s"] / v["n"] for s, v in stats.items() if v.get("n")}
    if not remaining_at:
        return 0.0
    if not means and not defaults:
        return None
    means = {**(defaults or {}), **means}
    fallback = sum(means.values()) / len(means)
    work: dict[str, float] = {}
    cum = 0
    for k, (name, pool) in enumerate(zip(stage_names, stage_pools, strict=True)):
        cum += remaining_at.get(k, 0)
        work[pool] = work.get(pool, 0.0) + cum * means.get(name, fallback)
    return max(w / max(1, pool_sizes.get(p, 1)) for p, w in work.items())

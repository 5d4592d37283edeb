"""The one estimator: what a stage costs a worker, and how long a batch takes over its pools.

Before anything has run, a stage costs what its recipe says (:class:`Cost`: fixed seconds
plus seconds per second of media, the transcription's real-time factor); once a stage has
run on this machine, its measured mean replaces that. The preview, ``--dry-run``, the
running ETA and ``tubemill plan`` all take their stage seconds from :func:`stage_seconds`;
wall time is the busiest pool's work divided by its size (stages of different pools
overlap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

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
                  measured: Mapping[str, float] | None = None) -> float:
    """The measured mean of the stage on this machine when there is one, else the recipe's cost."""
    if measured and stage in measured:
        return measured[stage]
    return costs.get(stage, DEFAULT_COST).seconds(media_s)


def wall_seconds(media: Iterable[float | None], stages: Iterable[str], pool_of: Callable[[str], str],
                 pools: Mapping[str, int], costs: Mapping[str, Cost],
                 measured: Mapping[str, float] | None = None,
                 skip: Mapping[str, float] | None = None) -> float:
    """Wall time for items of the given media lengths: each pool's work ÷ its size, the slowest pool.

    ``skip[pool]`` is the fraction of that pool's work items will not need (captioned
    items skip transcription).
    """
    stages = list(stages)
    work: dict[str, float] = {}
    for dur in media:
        for st in stages:
            pool = pool_of(st)
            work[pool] = work.get(pool, 0.0) + stage_seconds(st, dur, costs, measured)
    for pool, fraction in (skip or {}).items():
        if pool in work:
            work[pool] *= 1 - fraction
    if not work:
        return 0.0
    return max(w / max(1, pools.get(p) or pools.get("cpu", 1)) for p, w in work.items())


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
    ``defaults[stage]`` (its recipe's cost), else the mean of the measured stages.
    """
    means = {s: v["total_s"] / v["n"] for s, v in stats.items() if v.get("n")}
    if not remaining_at:
        return 0.0
    if not means:
        return None
    means = {**(defaults or {}), **means}
    fallback = sum(means.values()) / len(means)
    work: dict[str, float] = {}
    cum = 0
    for k, (name, pool) in enumerate(zip(stage_names, stage_pools, strict=True)):
        cum += remaining_at.get(k, 0)
        work[pool] = work.get(pool, 0.0) + cum * means.get(name, fallback)
    return max(w / max(1, pool_sizes.get(p, 1)) for p, w in work.items())

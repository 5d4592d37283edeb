"""A batch's estimate before it starts: the preview's, ``run --dry-run``'s and the starting ETA's one number.

It is :func:`pipeline.engine.estimator.estimate_batch` fed with what this home knows: the
recipe's stage costs, replaced by the stage rates this home has measured (per media second
for the transcription), the pool sizes the engine will use, the items that need no
transcription (captions), and the download pacing of the sites the items come from. A fresh
home prices the stages it has not measured with the recipe's short calibration of this
machine (transcribe: a few seconds of Whisper, once, cached) where the recipe has one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config.settings import Settings
from pipeline.engine.estimator import Estimate, estimate_batch, measured_rates
from pipeline.engine.recipe import get_recipe
from pipeline.engine.stage import get_stage
from state.models import BatchSummary


def batch_estimate(home: Path, recipe: str, sources: list[Any], settings: Settings,
                   done_ids: set[str] | None = None, *, pools: Mapping[str, int] | None = None,
                   summaries: Iterable[BatchSummary] | None = None) -> Estimate:
    """The wall time of this batch on this machine, from the one estimator: the recipe's stage costs, replaced
    by what this home has measured; the pool sizes the engine will use; captioned items without transcription;
    items already done in this home left out (the app's preview counts the same way).

    ``pools`` and ``summaries``: a running engine's own (the app); by default the settings' pool sizes and
    the home's batch files (the CLI's dry run, with no engine).
    """
    from state.reader import read_summaries

    pools = dict(pools) if pools is not None else settings.worker_pools()

    def pool_of(stage: str) -> str:
        res = get_stage(stage).resource
        return "cpu" if res == "gpu" and not pools.get("gpu") else res

    todo = [s for s in sources if not (isinstance(s, dict) and s.get("id") in (done_ids or set()))]
    media = [float(s["duration"]) if isinstance(s, dict) and s.get("duration") else None for s in todo]
    captioned = sum(1 for s in todo if isinstance(s, dict) and (s.get("meta") or {}).get("subtitles"))
    skip = {"cpu": captioned / len(todo)} if captioned and todo else None
    r = get_recipe(recipe)
    means, rtf = measured_rates(s.stage_stats for s in (summaries if summaries is not None
                                                         else read_summaries(home)))
    unmeasured = [st for st in r.stages if st not in rtf and st not in means and st in r.costs
                  and r.costs[st].per_media_s > 0]
    calibrated = r.calibrate(home, settings) if r.calibrate is not None and unmeasured else None
    paced = pacing_seconds([s.get("source") if isinstance(s, dict) else s for s in todo], settings)
    return estimate_batch(media, r.stages, pool_of, pools, r.costs, means, skip, rtf, paced_s=paced,
                          calibrated=calibrated)


def pacing_seconds(sources: list[Any], settings: Settings) -> float:
    """How long the download pacing alone keeps a batch going: per site, the spacing between its downloads
    (the middle of the anonymous account's range) times one less than their number; sites are paced side
    by side, so the slowest site counts. Loopback, the private network and files: nothing. (One account:
    a batch's extra cookie accounts would share a site's downloads; the dry run does not know them.)"""
    from pipeline.engine.sites import site_of

    per_site: dict[str, int] = {}
    for src in sources:
        site = site_of(src, settings.pacing)
        if settings.pacing.paced(site):
            per_site[site] = per_site.get(site, 0) + 1
    worst = 0.0
    for site, n in per_site.items():
        lo, hi = settings.pacing.delay_range(False, site)
        worst = max(worst, (n - 1) * (lo + hi) / 2)
    return worst

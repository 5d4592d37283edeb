"""A batch's estimate before it starts: the preview's, ``run --dry-run``'s and the starting ETA's one number.

It is :func:`pipeline.engine.estimator.estimate_batch` fed with what this home knows: the
recipe's stage costs, replaced by the stage rates this home has measured (per media second
for the transcription), the pool sizes the engine will use, the items that need no
transcription (captions), and the download pacing of the sites the items come from. A fresh
home prices the stages it has not measured with the recipe's short calibration of this
machine (transcribe: a few seconds of Whisper, once, cached) where the recipe has one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.config.settings import Settings
from pipeline.engine.estimator import Estimate, estimate_batch, measured_rates
from pipeline.engine.recipe import get_recipe
from pipeline.engine.stage import get_stage


def batch_estimate(home: Path, recipe: str, sources: list[Any], settings: Settings,
                   done_ids: set[str] | None = None) -> Estimate:
    """The wall time of this batch on this machine, from the one estimator: the recipe's stage costs, replaced
    by what this home has measured; the pool sizes the engine will use; captioned items without transcription;
    items already done in this home left out (the app's preview counts the same way)."""
    from state.reader import read_summaries

    pools = {p: max(0, int(settings.pools.get(p, 0))) for p in ("net", "cpu", "gpu", "llm")}
    pools.update({p: max(1, pools[p]) for p in ("net", "cpu", "llm")})

    def pool_of(stage: str) -> str:
        res = get_stage(stage).resource
        return "cpu" if res == "gpu" and not pools.get("gpu") else res

    todo = [s for s in sources if not (isinstance(s, dict) and s.get("id") in (done_ids or set()))]
    media = [float(s["duration"]) if isinstance(s, dict) and s.get("duration") else None for s in todo]
    captioned = sum(1 for s in todo if isinstance(s, dict) and (s.get("meta") or {}).get("subtitles"))
    skip = {"cpu": captioned / len(todo)} if captioned and todo else None
    r = get_recipe(recipe)
    means, rtf = measured_rates(s.stage_stats for s in read_summaries(home))
    calibrated: dict[str, float] = {}
    if r.calibrate is not None and any(st not in rtf and st not in means and r.costs.get(st) and
                                       r.costs[st].per_media_s > 0 for st in r.stages):
        calibrated = {k: v for k, v in r.calibrate(home, settings).items() if k not in rtf and k not in means}
    paced = pacing_seconds([s.get("source") if isinstance(s, dict) else s for s in todo], settings)
    est = estimate_batch(media, r.stages, pool_of, pools, r.costs, means, skip, {**calibrated, **rtf},
                         paced_s=paced)
    for st in calibrated:  # priced by the calibration, not measured by a batch
        est.stages[st]["measured"] = False
    return replace(est, calibrated=tuple(sorted(calibrated)))


def pacing_seconds(sources: list[Any], settings: Settings, accounts: int = 1) -> float:
    """How long the download pacing alone keeps a batch going: per site, the spacing between its downloads
    (the middle of the site's range) times one less than their number, shared by the accounts; sites are
    paced side by side, so the slowest site counts. Loopback, the private network and files: nothing."""
    from pipeline.engine.sites import site_of

    per_site: dict[str, int] = {}
    for src in sources:
        site = site_of(src, settings.pacing)
        if settings.pacing.paced(site):
            per_site[site] = per_site.get(site, 0) + 1
    worst = 0.0
    for site, n in per_site.items():
        lo, hi = settings.pacing.delay_range(False, site)
        worst = max(worst, (n - 1) / max(1, accounts) * (lo + hi) / 2)
    return worst

"""``run --dry-run``: what would run, what is already done in this home, what the summaries would cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.app.progress import fmt_duration
from pipeline.cli.base import EXIT_OK
from pipeline.config.settings import Settings, load_settings
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
    return estimate_batch(media, r.stages, pool_of, pools, r.costs, means, skip, rtf)


def preview(home: Path, name: str, recipe: str, sources: list[Any], *, as_json: bool = False) -> int:
    """--dry-run: what would run, what is already done here, how long it should take, and nothing started."""
    from pipeline.recipes.transcribe import library

    ids = [s["id"] for s in sources if isinstance(s, dict) and s.get("id")]
    known = library.status_of(home, ids)
    total = sum(float(s.get("duration") or 0) for s in sources if isinstance(s, dict))
    settings = load_settings(home)
    est = batch_estimate(home, recipe, sources, settings, set(known.get("ids") or ()))
    print(f"batch {name!r} ({recipe}): {len(sources)} item(s), {known['already_done']} already done in this home, "
          f"{fmt_duration(total) if total else 'unknown'} of media")
    print(f"estimate: {fmt_duration(est.seconds)} on this machine (slowest pool: {est.bottleneck or '—'}; "
          + ", ".join(f"{st} {v['seconds_each']:.1f} s each{' measured' if v['measured'] else ''}"
                      for st, v in est.stages.items()) + ")")
    from types import SimpleNamespace

    from pipeline.app.views import estimate_llm
    from pipeline.config.secrets import llm_config_for

    cfg = llm_config_for(home, settings)
    llm = estimate_llm([SimpleNamespace(duration=s.get("duration") if isinstance(s, dict) else None)
                        for s in sources], cfg.configured(), cfg.model, cfg.prices())
    if llm["engine"] == "llm":
        cost = llm["cost_usd"]
        price = (f"≈ ${cost:.2f} realtime, ≈ ${llm['batch_cost_usd']:.2f} with the Batch API" if cost is not None
                 else "no price known for this model")
        print(f"summaries with {cfg.model}: ≈ {llm['input_tokens']:,} input + {llm['output_tokens']:,} output "
              f"tokens, {price}")
    else:
        print("summaries: offline extractive summarizer (no LLM configured), no cost")
    for s in sources[:50]:
        if isinstance(s, dict):
            dur = fmt_duration(s["duration"]) if s.get("duration") else "?"
            print(f"  {dur:>8}  {s.get('title') or s['source']}")
        else:
            print(f"  {s}")
    if len(sources) > 50:
        print(f"  … and {len(sources) - 50} more")
    if as_json:
        print(json.dumps({"batch": name, "recipe": recipe, **est.to_dict(), "already_done": known["already_done"],
                          "media_s": round(total, 3), "llm": llm, "pools": dict(settings.pools)}))
    return EXIT_OK

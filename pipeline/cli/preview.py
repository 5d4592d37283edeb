"""``run --dry-run``: what would run, what is already done in this home, what the summaries would cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.app.estimate import batch_estimate
from pipeline.app.progress import fmt_duration
from pipeline.cli.base import EXIT_OK
from pipeline.config.settings import load_settings


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

"""``run --dry-run``: what would run, what is already done in this home, what the summaries would cost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.app.progress import fmt_duration
from pipeline.cli.base import EXIT_OK
from pipeline.config.settings import load_settings


def preview(home: Path, name: str, recipe: str, sources: list[Any]) -> int:
    """--dry-run: what would run, what is already done here, and nothing started."""
    from pipeline.recipes.transcribe import library

    ids = [s["id"] for s in sources if isinstance(s, dict) and s.get("id")]
    known = library.status_of(home, ids)
    total = sum(float(s.get("duration") or 0) for s in sources if isinstance(s, dict))
    print(f"batch {name!r} ({recipe}): {len(sources)} item(s), {known['already_done']} already done in this home, "
          f"{fmt_duration(total) if total else 'unknown'} of media")
    from types import SimpleNamespace

    from pipeline.app.views import estimate_llm
    from pipeline.config.secrets import llm_config_for

    cfg = llm_config_for(home, load_settings(home))
    est = estimate_llm([SimpleNamespace(duration=s.get("duration") if isinstance(s, dict) else None)
                        for s in sources], cfg.configured(), cfg.model, cfg.prices())
    if est["engine"] == "llm":
        cost = est["cost_usd"]
        price = (f"≈ ${cost:.2f} realtime, ≈ ${est['batch_cost_usd']:.2f} with the Batch API" if cost is not None
                 else "no price known for this model")
        print(f"summaries with {cfg.model}: ≈ {est['input_tokens']:,} input + {est['output_tokens']:,} output "
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
    return EXIT_OK

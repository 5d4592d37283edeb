"""Named stage lists. A batch stores its recipe's stage names, so a recipe changed
later never rewrites the plan of a batch already running."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.stages import Stage, get_stage

RECIPES: dict[str, list[str]] = {
    # Stand-ins until the transcribe recipe lands; they drive tests and the benchmark.
    "probe": ["probe_net", "probe_cpu", "probe_gpu", "probe_llm"],
    "noop": ["noop_net", "noop_cpu", "noop_gpu", "noop_llm"],
}

DEFAULT_RECIPE = "probe"


def recipe_stages(name_or_stages: str | list[str]) -> list[Stage]:
    """Stage objects for a recipe name or an explicit list of stage names."""
    if isinstance(name_or_stages, str):
        if name_or_stages not in RECIPES:
            known = ", ".join(sorted(RECIPES))
            raise ConfigError(f"unknown recipe {name_or_stages!r} (known: {known})")
        names = RECIPES[name_or_stages]
    else:
        names = list(name_or_stages)
    return [get_stage(n) for n in names]

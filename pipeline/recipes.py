"""Named stage lists. A batch stores its recipe's stage names, so a recipe changed
later never rewrites the plan of a batch already running."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError
from pipeline.stages import Stage, get_stage


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[str, ...]
    expands_sources: bool  # URLs/playlists/folders are listed into one item per video before the batch starts
    doc: str = ""
    topics: bool = False  # input is topics (lines or CSV with per-row options), not sources


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("transcribe", ("captions", "download", "transcribe", "summarize", "export"), True,
               "captions or Whisper → summary and tags → txt/srt/vtt/json/md"),
        Recipe("generate", ("script", "plan", "narrate", "frames", "subtitles", "render", "metadata", "upload"),
               False, "topics → script → narration → frames → subtitles → video → metadata → YouTube", topics=True),
        # Stand-ins driven by the source line; they exercise the engine in tests and benchmarks.
        Recipe("probe", ("probe_net", "probe_cpu", "probe_gpu", "probe_llm"), False, "engine test stand-in"),
        Recipe("noop", ("noop_net", "noop_cpu", "noop_gpu", "noop_llm"), False, "engine overhead benchmark"),
    )
}

DEFAULT_RECIPE = "transcribe"


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    return RECIPES[name]


def recipe_stages(name_or_stages: str | list[str]) -> list[Stage]:
    """Stage objects for a recipe name or an explicit list of stage names."""
    names = get_recipe(name_or_stages).stages if isinstance(name_or_stages, str) else name_or_stages
    return [get_stage(n) for n in names]

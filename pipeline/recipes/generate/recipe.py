"""The generate recipe as the engine sees it."""

from __future__ import annotations

from pipeline.engine.recipe import Recipe
from pipeline.recipes.generate.stages import frames, narrate, render, script, subtitles, upload  # noqa: F401

RECIPE = Recipe(
    "generate", ("script", "plan", "narrate", "frames", "subtitles", "render", "metadata", "upload"), False,
    "topics → script → narration → frames → subtitles → video → metadata → YouTube", topics=True,
)

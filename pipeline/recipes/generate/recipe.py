"""The generate recipe as the engine sees it."""

from __future__ import annotations

from pipeline.engine.estimator import Cost
from pipeline.engine.recipe import Recipe
from pipeline.recipes.generate.options import GenerateOptions, parse_options
from pipeline.recipes.generate.stages import frames, narrate, render, script, subtitles, upload  # noqa: F401

RECIPE = Recipe(
    "generate", ("script", "plan", "narrate", "frames", "subtitles", "render", "metadata", "upload"), False,
    "topics → script → narration → frames → subtitles → video → metadata → YouTube", topics=True,
    parse_options=parse_options, check_options=lambda options, _settings: GenerateOptions.parse(options),
    # Narration, frames and metadata need only the script and the plan: they run at once.
    needs={"narrate": ("plan",), "frames": ("plan",), "subtitles": ("narrate",), "render": ("frames", "subtitles"),
           "metadata": ("script",), "upload": ("render", "metadata")},
    # Measured with bench/generate.py on 2 cores, per second of video (offline script, espeak-ng, libx264).
    costs={"script": Cost(1.0), "plan": Cost(0.1), "narrate": Cost(0.5, 0.08), "frames": Cost(0.2, 0.018),
           "subtitles": Cost(0.1), "render": Cost(0.5, 0.12), "metadata": Cost(0.1), "upload": Cost(5.0, 0.05)},
)

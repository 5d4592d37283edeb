"""The generate recipe as the engine sees it."""

from __future__ import annotations

from pipeline.engine.estimator import Cost
from pipeline.engine.recipe import Recipe
from pipeline.recipes.generate.options import parse_options
from pipeline.recipes.generate.stages import (  # noqa: F401
    frames,
    master,
    narrate,
    render,
    script,
    subtitles,
    upload,
)

RECIPE = Recipe(
    "generate",
    ("script", "plan", "narrate", "frames", "subtitles", "encode", "master", "render", "metadata", "upload"), False,
    "topics → script → narration → frames → subtitles → video → metadata → YouTube", topics=True,
    parse_options=parse_options,
    # Narration, frames and metadata need only the script and the plan: they run at once. The scene
    # times narrate writes are all the video encode needs, so the loudness pass (master) runs beside it.
    # master needs only narrate's clips, but an item's stages that start together also finish together,
    # so it waits for subtitles (milliseconds) to start with the encode rather than beside subtitles.
    needs={"narrate": ("plan",), "frames": ("plan",), "subtitles": ("narrate",), "encode": ("frames", "subtitles"),
           "master": ("subtitles",), "render": ("encode", "master"), "metadata": ("script",),
           "upload": ("render", "metadata")},
    # Measured with bench/generate.py on 2 cores, per second of video (offline script, espeak-ng, libx264).
    costs={"script": Cost(1.0), "plan": Cost(0.1), "narrate": Cost(0.2, 0.012), "frames": Cost(0.2, 0.01),
           "subtitles": Cost(0.1), "encode": Cost(0.2, 0.055), "master": Cost(0.2, 0.055), "render": Cost(0.3, 0.002),
           "metadata": Cost(0.1), "upload": Cost(5.0, 0.05)},
)

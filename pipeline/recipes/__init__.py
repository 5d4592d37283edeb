"""The recipes: what a batch does to its items, each a package on the recipe-agnostic engine.

``transcribe`` (sources → captions or Whisper → summary → files) and ``generate`` (topics →
script → narration ∥ frames → subtitles → video → upload) are packages with their own
intake, options, stages and batch outputs; ``testing`` holds the probe and no-op stand-ins
the engine's tests and benchmarks run (never offered in the app). Each recipe is listed in
the ``tubemill.recipes`` entry-point group, which is how the engine finds it.
"""

from pipeline.engine.recipe import Recipe, default_recipe, get_recipe, offered_recipes, recipe_stages

__all__ = ["Recipe", "default_recipe", "get_recipe", "offered_recipes", "recipe_stages"]

"""The transcribe recipe as the engine sees it."""

from __future__ import annotations

from pipeline.engine.recipe import Recipe
from pipeline.recipes.transcribe.stages import captions, download, export, summarize, transcribe  # noqa: F401

RECIPE = Recipe(
    "transcribe", ("captions", "download", "transcribe", "summarize", "export"), True,
    "captions or Whisper → summary and tags → txt/srt/vtt/json/md", default=True,
)

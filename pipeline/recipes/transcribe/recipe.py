"""The transcribe recipe as the engine sees it: its stages, options, batch outputs, Batch API service, actions."""

from __future__ import annotations

from pipeline.engine.recipe import Recipe
from pipeline.recipes.transcribe import llm_batch, outputs
from pipeline.recipes.transcribe.costs import COSTS
from pipeline.recipes.transcribe.options import parse_options
from pipeline.recipes.transcribe.report import REPORT
from pipeline.recipes.transcribe.stages import captions, download, export, summarize, transcribe  # noqa: F401

RECIPE = Recipe(
    "transcribe", ("captions", "download", "transcribe", "summarize", "export"), True,
    "captions or Whisper → summary and tags → txt/srt/vtt/json/md", default=True, parse_options=parse_options,
    costs=COSTS, outputs=outputs.outputs, report=REPORT, services=(llm_batch.service,),
    actions={"retry_summaries": outputs.retry_summaries()},
)

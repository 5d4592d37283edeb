"""The transcribe recipe as the engine sees it: its stages, options, batch outputs, Batch API service, actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.engine.recipe import Recipe
from pipeline.recipes.transcribe import calibrate, llm_batch, outputs
from pipeline.recipes.transcribe.costs import COSTS
from pipeline.recipes.transcribe.options import parse_options
from pipeline.recipes.transcribe.report import REPORT
from pipeline.recipes.transcribe.stages import captions, download, export, summarize, transcribe  # noqa: F401


def _calibrate(home: Path, settings: Any) -> dict[str, float]:
    rtf = calibrate.whisper_rtf(home, settings.whisper_model, settings.whisper_device)
    return {"transcribe": rtf} if rtf else {}


RECIPE = Recipe(
    "transcribe", ("captions", "download", "transcribe", "summarize", "export"), True,
    "captions or Whisper → summary and tags → txt/srt/vtt/json/md", default=True, parse_options=parse_options,
    costs=COSTS, outputs=outputs.outputs, report=REPORT, calibrate=_calibrate, services=(llm_batch.service,),
    actions={"retry_summaries": outputs.retry_summaries()},
)

"""The transcribe recipe as the engine sees it: its stages, options, batch outputs, Batch API service, actions.

A batch stores the stage list it was made with, so a batch made before ``translate`` existed keeps its five
stages (and ``retry_translations`` finds nothing to reopen in it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.engine.recipe import Recipe, Reopen
from pipeline.recipes.transcribe import calibrate, llm_batch, outputs
from pipeline.recipes.transcribe.costs import COSTS
from pipeline.recipes.transcribe.options import parse_options
from pipeline.recipes.transcribe.report import REPORT
from pipeline.recipes.transcribe.stages import (  # noqa: F401
    captions,
    download,
    export,
    summarize,
    transcribe,
    translate,
)


def _calibrate(home: Path, settings: Any) -> dict[str, float]:
    rtf = calibrate.whisper_rtf(home, settings.whisper_model, settings.whisper_device)
    return {"transcribe": rtf} if rtf else {}


def _retry_translations() -> Reopen:
    """Reopen the items whose translation failed (or was partial, or had no LLM) at ``translate``: the
    transcript and summary are kept, and the chunk cache means only what is missing is asked again."""
    from pipeline.common import llmcall
    from pipeline.recipes.transcribe.translate import FLAGS

    return Reopen(flag=FLAGS["failed"], stage="translate", before=llmcall.clear_down,
                  note="translation retry requested (transcript and summary kept)")


RECIPE = Recipe(
    "transcribe", ("captions", "download", "transcribe", "summarize", "translate", "export"), True,
    "captions or Whisper → summary and tags (→ translation) → txt/srt/vtt/json/md", default=True,
    parse_options=parse_options, costs=COSTS, outputs=outputs.outputs, report=REPORT, calibrate=_calibrate,
    services=(llm_batch.service,),
    actions={"retry_summaries": outputs.retry_summaries(), "retry_translations": _retry_translations()},
)

"""The worker side of a stage: run it, catch everything, return an :class:`Outcome`.

This is the one place that catches broad exceptions, and what every executor runs: the
engine's thread pools, the Dask workers (``pipeline.engine.distributed``) and the plan
simulator's virtual executor, which returns outcomes of its own through the same type.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.stage import Stage, StageContext, StageResult


@dataclass
class Outcome:
    """What one stage attempt came to: its result, or the exception that ended it."""

    ok: bool
    seconds: float
    result: StageResult | None = None
    exc: BaseException | None = None


def execute(stage: Stage, item: dict[str, Any], ctx: StageContext) -> Outcome:
    """Run one stage attempt in a worker and log it to the item's ``log.txt``."""
    t0 = time.perf_counter()
    try:
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        item_log(str(ctx.workdir), f"{ctx.stage}: started (attempt {ctx.attempt})")
        result = stage.run(item, ctx)
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {stage.name} returned {type(result).__name__}, not StageResult")
        secs = time.perf_counter() - t0
        item_log(str(ctx.workdir), f"{ctx.stage}: done in {secs:.2f}s")
        return Outcome(ok=True, seconds=secs, result=result)
    except BaseException as exc:
        secs = time.perf_counter() - t0
        detail = "" if isinstance(exc, errors.TubemillError) and exc.expected else "\n" + traceback.format_exc()
        item_log(str(ctx.workdir), f"{ctx.stage}: {type(exc).__name__}: {exc}{detail}")
        return Outcome(ok=False, seconds=secs, exc=exc)


def item_log(workdir: str | None, line: str) -> None:
    """Append to the item's ``log.txt``: its own history, readable without Tubemill."""
    if not workdir:
        return
    try:
        with open(Path(workdir) / "log.txt", "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")
    except OSError:
        pass


def remove_tmp(workdir: str | None) -> None:
    if workdir:
        shutil.rmtree(Path(workdir) / ".tmp", ignore_errors=True)

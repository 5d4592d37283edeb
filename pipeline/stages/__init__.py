"""Stage registry: recipes name stages, the runner looks them up here."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.stages.base import RESOURCES, Resource, Stage, StageContext, StageResult, safe_name

_REGISTRY: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    if stage.resource not in RESOURCES:
        raise ConfigError(f"stage {stage.name!r}: unknown resource {stage.resource!r}")
    _REGISTRY[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown stage {name!r}") from None


def all_stages() -> dict[str, Stage]:
    _load_builtin()
    return dict(_REGISTRY)


def _load_builtin() -> None:
    # Imported lazily: a stage module may import a heavy library (faster-whisper, moviepy).
    from pipeline.stages import (  # noqa: F401
        captions,
        download,
        export,
        frames,
        narrate,
        probe,
        render,
        script,
        subtitles,
        summarize,
        transcribe,
        upload,
    )


__all__ = [
    "RESOURCES",
    "Resource",
    "Stage",
    "StageContext",
    "StageResult",
    "all_stages",
    "get_stage",
    "register",
    "safe_name",
]

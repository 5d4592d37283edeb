"""Generate: topics → LLM script (strict JSON) → scenes → narration ∥ frames → subtitles → video →
metadata → YouTube upload.

``recipe`` holds the :class:`~pipeline.engine.recipe.Recipe`; ``stages/`` the stages; ``options``
the typed options (one frozen dataclass, also for CSV rows); ``topics`` the intake, ``video`` the
frame/plan helpers (ffmpeg itself is :mod:`pipeline.common.ffmpeg`), ``youtube`` the resumable,
quota-aware upload.
"""

"""Generate: topics → LLM script (strict JSON) → scenes → narration ∥ frames → subtitles → video →
metadata → YouTube upload.

``recipe`` holds the :class:`~pipeline.engine.recipe.Recipe`; ``stages/`` the stages; ``topics``
the intake, ``video`` the frame/plan helpers, ``youtube`` the resumable, quota-aware upload.
"""

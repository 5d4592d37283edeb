"""Transcribe & summarize: sources (URLs, playlists, channels, files) → captions, or yt-dlp audio and
faster-whisper → transcript files → LLM or extractive summary and tags → manifest, PDF, ZIP.

``recipe`` holds the :class:`~pipeline.engine.recipe.Recipe` the engine finds through the
entry point; ``stages/`` the stages; the other modules are the recipe's own parts (yt-dlp
in child processes, sources and filters, captions parsing, the summary model and its LLM
and extractive makers, the Batch API service, the PDF/ZIP outputs).
"""

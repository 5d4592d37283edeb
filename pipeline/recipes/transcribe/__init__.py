"""Transcribe & summarize: sources (URLs, playlists, channels, files) → captions, or yt-dlp audio and
faster-whisper → transcript files → LLM or extractive summary and tags → manifest, PDF, ZIP.

``recipe`` holds the :class:`~pipeline.engine.recipe.Recipe` the engine finds through the
entry point; ``stages/`` the stages; ``options`` the typed options every stage reads
(``arguments`` their ``tubemill run`` flags); the other modules are the recipe's own parts
(yt-dlp in child processes, sources and filters, the summary model in ``summary_model`` with
its makers: the LLM in ``summary`` and ``summary_repair``, the offline one in ``extractive``;
the Batch API service, the PDF/ZIP outputs).
"""

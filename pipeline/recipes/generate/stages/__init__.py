"""The generate recipe's stages: script, plan, narrate, frames, subtitles, render, metadata, upload."""

"""The generate recipe's stages: script, plan, narrate, frames, subtitles, encode, master, render, metadata,
upload."""

"""The transcribe recipe's stages, in order: captions, download, transcribe, summarize, translate, export."""

"""The one call into faster-whisper for a whole file: sequential (``WhisperModel.transcribe``) or batched
(``BatchedInferencePipeline``), with the VAD's speech chunks computed once by the stage.

Why batched: on 2 CPU cores it decodes the VAD's ≤ 30 s chunks ``batch_size`` at a time and used 0.85× the
CPU of the sequential decoder on 33–57 s files and 0.46× on 130–212 s ones, with a word error rate no worse
(0.17 vs 0.22 on the long ones; bench/peer.py's notes in the README). What it gives up: the previous chunk's
text is not the next one's prompt (``condition_on_previous_text``), which is also what keeps one bad chunk
from dragging the next into a loop, and segments arrive a batch at a time (progress and cancel are coarser).
It needs the VAD: with ``vad`` off, or ``batch_size`` 1, the sequential decoder runs as before.
"""

from __future__ import annotations

from typing import Any

from pipeline.recipes.transcribe.quality import SR


def decode(model: Any, source: Any, *, samples: Any = None, chunks: list[dict[str, int]] | None = None,
           vad: bool = True, batch_size: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """(segments iterator with times in the file's timeline, info). ``source`` is the path or the samples;
    ``samples`` and ``chunks`` (the stage's one VAD pass) spare the sequential decoder a second VAD pass."""
    if vad and batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        audio = samples if samples is not None else source
        # Its own VAD pass cuts speech at 30 s (the chunks it batches); one pipeline object per call.
        return BatchedInferencePipeline(model).transcribe(audio, batch_size=batch_size, vad_filter=True,
                                                          without_timestamps=False, **kwargs)
    if vad and samples is not None and chunks is not None:
        import numpy as np
        from faster_whisper.transcribe import restore_speech_timestamps
        from faster_whisper.vad import collect_chunks

        speech = np.concatenate(collect_chunks(samples, chunks)[0], axis=0)
        segments, info = model.transcribe(speech, vad_filter=False, **kwargs)
        return (restore_speech_timestamps(segments, chunks, SR) if chunks else segments), info
    return model.transcribe(source, vad_filter=vad, **kwargs)

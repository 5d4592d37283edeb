"""What each transcribe stage costs a worker before this machine has measured it (the one set of
defaults the preview, ``--dry-run``, the ETA and ``tubemill plan`` share; measured means replace them)."""

from __future__ import annotations

from pipeline.engine.estimator import Cost

TRANSCRIBE_RTF = 0.1  # tiny.en, int8, one CPU thread (bench/transcribe.py)
COSTS: dict[str, Cost] = {
    "captions": Cost(1.0),
    "download": Cost(5.0),
    "transcribe": Cost(0.0, TRANSCRIBE_RTF),
    "summarize": Cost(2.0),
    # Nothing unless --translate-to (most batches); a translating batch's first measured item replaces it.
    "translate": Cost(0.1),
    "export": Cost(0.3),
}

"""Warm yt-dlp children ahead of a batch (the preview): started one after the other, handed out ready,
capped, and gone with the pool."""

from __future__ import annotations

import time

from pipeline.recipes.transcribe.ytdlp_procs import PREPARE_MAX, _ready, _Spares


def _wait(cond, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_prepare_warms_one_after_the_other_and_hands_out_ready() -> None:
    pool = _Spares(2)
    try:
        assert pool.prepare(2, pages=1) == 2
        assert pool.prepare(2) == 0  # already on the way: nothing more
        # The first child is spawned at once; the second only once the first said ready.
        assert _wait(lambda: len(pool._procs) >= 1)
        first = pool._procs[0][1]
        assert _wait(lambda: len(pool._procs) == 2)
        assert _ready(first)  # the second waited for it
        assert _wait(lambda: all(_ready(p) for _, p in pool._procs))
        taken = pool.take()
        assert taken.poll() is None and _ready(taken)
        line = taken.stdout.readline()  # type: ignore[union-attr]
        assert b'"ready"' in line
        pool.give_back(taken)
    finally:
        pool.close()
    assert not pool._procs


def test_prepare_is_capped() -> None:
    pool = _Spares(2)
    try:
        assert pool.prepare(PREPARE_MAX + 5, pages=0) == PREPARE_MAX
    finally:
        assert _wait(lambda: pool._preparing == 0)
        pool.close()

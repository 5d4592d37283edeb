"""The yt-dlp child processes of this process: started, kept warm between calls, and killed with whatever
they started.

Cost: a cold child is a Python start plus yt-dlp's import and extractor table (≈1 s of CPU here). So a
child serves call after call: a call takes an idle one (≈ms) and gives it back when it ended cleanly; only
a child that had to be killed is replaced. Up to :data:`SPARES` idle children are kept (≈55 MB each); an
idle child exits after 10 min without a call, and when this process ends (its stdin closes).
:mod:`.ytdlp_run` holds the conversation with one of them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

CHILD_MODULE = "pipeline.recipes.transcribe.ytdlp_child"
SPARES = 2
PREPARE_MAX = 4  # ≈55 MB each, for a few minutes at most
PREPARE_READY_S = 10.0
WARM_PAGES_FLAG = "--warm-pages"  # the child also pays the first HTML page's cost before it says ready


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])  # so `-m pipeline.recipes.transcribe.ytdlp_child` works anywhere
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _fingerprint() -> tuple[str, ...]:
    """What a spare fixed at its start; the rest of the environment travels with each job."""
    return (sys.executable, *(os.environ.get(k, "") for k in ("PYTHONPATH", "PYTHONHOME", "LANG", "LC_ALL")))


def _spawn(*, pages: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", CHILD_MODULE, *([WARM_PAGES_FLAG] if pages else [])], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), start_new_session=True,
        close_fds=True, bufsize=0,
    )


def kill(proc: subprocess.Popen[bytes]) -> None:
    """The child and whatever it started (ffmpeg): its own process group (``start_new_session``)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    close_pipes(proc)


def close_pipes(proc: subprocess.Popen[bytes]) -> None:
    """Our ends of the child's pipes, closed (a closed stdin is also what tells an idle child to exit)."""
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()


class _Spares:
    """Idle children, warm and waiting for the next call (a cold one costs about a second of CPU).

    A call takes one (or starts one), and gives it back when the call ended cleanly: a child serves
    many calls, so the import and extractor table are paid once per concurrent call, not per download.
    A child the parent had to kill (cancel, stall, cap) is simply gone. Nothing is started ahead of
    need during a batch: on a small machine a spare warming up beside Whisper costs more than the second it
    saves. The one exception is :meth:`prepare`, when a user is about to start a batch (the preview): then
    the first item's yt-dlp call (≈1–1.5 s cold) is the whole wait for the first result.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._procs: list[tuple[tuple[str, ...], subprocess.Popen[bytes]]] = []
        self._preparing = 0

    def take(self) -> subprocess.Popen[bytes]:
        """An idle child for this environment if there is one (a warmed one first), else a fresh child."""
        mark = _fingerprint()
        with self._lock:
            self._prune(mark)
            ready = [i for i, (_, p) in enumerate(self._procs) if _ready(p)]
            if ready or self._procs:
                return self._procs.pop(ready[0] if ready else 0)[1]
        return _spawn()

    def prepare(self, count: int = 1, pages: int | None = None) -> int:
        """Warm children until ``count`` (at most :data:`PREPARE_MAX`) are idle, the first ``pages`` of them
        (default: all) with the first HTML page paid too (≈1 s more each, for calls that read a page);
        returns how many will be started. For the first wave of a batch about to start: its concurrent
        calls would otherwise all start cold at the same moment, on the same cores.

        Returns at once. The children start one after the other, each once the previous is ready, so the
        first is ready soonest (three warming together on two cores are all ready only after ≈5 s);
        :meth:`take` prefers a ready one. Unused ones exit after :data:`~.ytdlp_child.IDLE_EXIT_S`."""
        mark = _fingerprint()
        with self._lock:
            self._prune(mark)
            todo = max(0, min(count, PREPARE_MAX) - len(self._procs) - self._preparing)
            self._preparing += todo
        if todo:
            first_pages = count if pages is None else pages
            threading.Thread(target=self._warm, args=(mark, todo, first_pages), name="tubemill-ytdlp-warm",
                             daemon=True).start()
        return todo

    def _warm(self, mark: tuple[str, ...], todo: int, pages: int) -> None:
        started = 0
        try:
            for i in range(todo):
                try:
                    proc = _spawn(pages=i < pages)
                except OSError:
                    return  # no process to spare: a call starts its own, as without this
                with self._lock:
                    self._procs.append((mark, proc))
                    self._preparing -= 1
                started += 1
                with contextlib.suppress(OSError, ValueError):
                    select.select([proc.stdout], [], [], PREPARE_READY_S)  # ready (or taken, or gone)
        finally:
            with self._lock:
                self._preparing -= todo - started

    def give_back(self, proc: subprocess.Popen[bytes]) -> bool:
        """Keep a child whose call ended cleanly for the next call; False (the caller closes it) when full."""
        mark = _fingerprint()
        with self._lock:
            self._prune(mark)
            if proc.poll() is None and len(self._procs) < self.size:
                self._procs.append((mark, proc))
                return True
        return False

    def _prune(self, mark: tuple[str, ...]) -> None:
        keep = []
        for fp, proc in self._procs:
            if proc.poll() is not None or fp != mark:
                kill(proc)
            else:
                keep.append((fp, proc))
        self._procs = keep

    def close(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        for _, proc in procs:
            close_pipes(proc)  # stdin EOF: the child exits by itself
        for _, proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2)
            if proc.poll() is None:
                kill(proc)


def _ready(proc: subprocess.Popen[bytes]) -> bool:
    """The child has written its ``ready`` line (the only thing a spare writes before its job)."""
    try:
        return bool(proc.stdout is not None and select.select([proc.stdout], [], [], 0)[0])
    except (OSError, ValueError):
        return False


spares = _Spares(SPARES)
atexit.register(spares.close)

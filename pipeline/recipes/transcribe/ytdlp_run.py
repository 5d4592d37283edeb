"""Run one yt-dlp call in a child process (:mod:`.ytdlp_child`), so cancel and the limits reach it.

In-process, a download blocked in a socket read (a server trickling a byte every ten seconds) cannot be
stopped: yt-dlp calls its progress hook only after a whole block arrived, and Python cannot interrupt a
thread. Here the stage's thread only waits on the child's pipes, at most :data:`POLL_S` at a time, so
every :data:`POLL_S` it can act on:

- ``ctx.cancelled()`` (cancel, an interrupted engine): the child's process group is killed →
  :class:`~pipeline.errors.Cancelled`;
- the stall rule: once the transfer started, fewer than ``stall_bytes_per_s × stall_s`` bytes in the last
  ``stall_s`` seconds → :class:`~pipeline.errors.Stalled` (retryable). The parent sees bytes as the
  child reports them, block by block, so the child reads in fixed blocks small enough to arrive within
  the window at the minimum rate (``CallLimits.block_size``);
- the extraction deadline: no transfer after ``extract_timeout_s`` → ``Stalled``;
- the byte cap, as a backstop to the child's own count: the files in ``watch_dir`` (ffmpeg-driven
  downloads do not report bytes) → ``TooLarge`` / ``DiskFull``.

A call takes an idle, warm child and gives it back when it ended cleanly (:mod:`.ytdlp_procs` keeps them);
only a child that had to be killed is replaced.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.recipes.transcribe.ytdlp_limits import CallLimits
from pipeline.recipes.transcribe.ytdlp_procs import close_pipes, kill, spares
from pipeline.recipes.transcribe.ytdlp_redact import known_secrets, redact_text

if TYPE_CHECKING:
    from pipeline.engine.stage import StageContext

log = logging.getLogger("tubemill.ytdlp")

POLL_S = 0.2
DIR_CHECK_S = 1.0
CLOSE_WAIT_S = 5.0  # after the answer: time for the child to save the cookie copy and exit
_NOT_JSON = ("logger", "progress_hooks", "postprocessor_hooks", "match_filter")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class ChildFailure(Exception):
    """yt-dlp's own words for a failure (redacted), chained under the typed error the stage raises."""


# ---------------------------------------------------------------------- one call
def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items() if k not in _NOT_JSON}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


class YtdlpCall:
    """One yt-dlp call in a child process: :meth:`extract` (download or not), then optionally :meth:`fetch`.

    Progress goes to ``ctx.progress``, yt-dlp's log lines (redacted) to the ``tubemill.ytdlp`` logger;
    a failure arrives already classified and is raised as the same class of our error tree.
    """

    def __init__(self, ctx: StageContext, opts: Mapping[str, Any], limits: CallLimits, *,
                 account: str | None = None, watch_dir: Path | None = None) -> None:
        self.ctx = ctx
        self.opts = _jsonable(opts)
        self.limits = limits
        self.account = account
        self.watch_dir = watch_dir
        self.secrets = known_secrets(opts)
        self.proc: subprocess.Popen[bytes] | None = None
        self._sel: selectors.BaseSelector | None = None
        self._buf: dict[int, bytes] = {}
        self._events: deque[dict[str, Any]] = deque()
        self._stderr_tail: deque[str] = deque(maxlen=20)
        self._open = 0
        self.phase = "extract"
        self.bytes = 0
        self._samples: deque[tuple[float, int]] = deque()
        self._window_start = 0.0
        self._dir_checked = 0.0
        self._folder_start = 0
        self._folder_growth = 0
        self.timings: dict[str, float] = {}

    def __enter__(self) -> YtdlpCall:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the conversation
    def extract(self, url: str, *, download: bool, lang: str | None = None, source: str | None = None
                ) -> dict[str, Any]:
        """``extract_info(url, download=…)`` in the child; the trimmed info (first entry of a playlist)."""
        t0 = time.monotonic()
        self._start()
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        self._send({"op": "extract", "url": url, "source": source or url, "download": download, "lang": lang,
                    "opts": self.opts, "limits": self.limits.as_dict(), "account": self.account,
                    "env": dict(os.environ), "cwd": cwd})
        event = self._until("info")
        self.timings["extract_s"] = time.monotonic() - t0
        return dict(event.get("info") or {})

    def fetch(self, url: str, max_bytes: int = 20 * 2**20) -> str:
        """A caption track through the same session (cookies, headers, proxy, outbound rule)."""
        self.phase = "extract"
        self._send({"op": "fetch", "url": url, "max_bytes": max_bytes})
        return str(self._until("fetched").get("text") or "")

    def close(self) -> None:
        """End the call: the child closes its YoutubeDL (which saves the cookie copy) and goes back to the
        idle pool for the next call; a child that does not answer in time is killed."""
        proc = self.proc
        if proc is None:
            return
        kept = False
        try:
            if proc.poll() is None and self._sel is not None:
                self._send({"op": "end"})
                deadline = time.monotonic() + CLOSE_WAIT_S
                while time.monotonic() < deadline:
                    event = self._next_event(POLL_S)
                    if event is not None and event.get("ev") == "ended":
                        kept = spares.give_back(proc)
                        break
                    if event is not None:
                        self._handle(event)
        except errors.TubemillError:
            pass
        finally:
            self.proc = None
            if self._sel is not None:
                self._sel.close()
                self._sel = None
            if not kept:
                if proc.poll() is None:
                    with contextlib.suppress(OSError):
                        if proc.stdin is not None:
                            proc.stdin.close()  # EOF: it exits by itself; killed below if it does not
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=CLOSE_WAIT_S)
                if proc.poll() is None:
                    kill(proc)
                self._drain_stderr(proc)
                close_pipes(proc)

    # -- plumbing
    def _start(self) -> None:
        if self.proc is not None:
            return
        self._t0 = time.monotonic()
        self.proc = spares.take()
        self.timings["start_s"] = time.monotonic() - self._t0
        self._sel = selectors.DefaultSelector()
        for f in (self.proc.stdout, self.proc.stderr):
            assert f is not None
            os.set_blocking(f.fileno(), False)
            self._sel.register(f, selectors.EVENT_READ)
            self._buf[f.fileno()] = b""
            self._open += 1

    def _send(self, job: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps(job, default=str) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            self._kill()
            raise errors.RetryableError("the yt-dlp process could not be started (its input closed)") from exc

    def _kill(self) -> None:
        if self.proc is not None:
            kill(self.proc)

    def _until(self, kind: str) -> dict[str, Any]:
        """Events until ``kind`` (or an error), checking cancel, stalls, deadline and the cap every POLL_S."""
        self._op_start = time.monotonic()
        while True:
            event = self._next_event(POLL_S)
            if event is not None:
                ev = event.get("ev")
                if ev == kind:
                    return event
                if ev == "error":
                    raise errors.error_from_record(event.get("error") or {}) from ChildFailure(
                        redact_text(str(event.get("detail") or ""), self.secrets))
                self._handle(event)
            self._check()

    def _next_event(self, timeout: float) -> dict[str, Any] | None:
        if self._events:
            return self._events.popleft()
        if self._open == 0:
            assert self.proc is not None
            code = self.proc.wait()
            tail = " | ".join(self._stderr_tail)[-500:]
            raise errors.RetryableError(f"the yt-dlp process ended without an answer (exit code {code})") \
                from ChildFailure(redact_text(tail, self.secrets))
        assert self._sel is not None and self.proc is not None
        for key, _ in self._sel.select(timeout):
            f = key.fileobj
            fd = f.fileno()  # type: ignore[union-attr]
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._sel.unregister(f)
                self._open -= 1
                chunk = b"\n"
            data = self._buf[fd] + chunk
            *lines, self._buf[fd] = data.split(b"\n")
            for raw in lines:
                if f is self.proc.stdout:
                    self._parse(raw)
                elif raw.strip():
                    self._stderr_line(raw.decode("utf-8", "replace"))
        return self._events.popleft() if self._events else None

    def _parse(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            event = json.loads(raw)
        except ValueError:
            self._stderr_line(raw.decode("utf-8", "replace"))
            return
        if isinstance(event, dict):
            self._events.append(event)

    def _stderr_line(self, line: str) -> None:
        line = redact_text(line.rstrip(), self.secrets)
        self._stderr_tail.append(line)
        log.debug("yt-dlp child: %s", line)

    def _drain_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        """What the child wrote to stderr before it exited, to the debug log (redacted)."""
        f = proc.stderr
        if f is None or f.closed:
            return
        data = self._buf.get(f.fileno(), b"")
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(f.fileno(), 65536):
                data += chunk
        for raw in data.split(b"\n"):
            if raw.strip():
                self._stderr_line(raw.decode("utf-8", "replace"))

    def _handle(self, event: dict[str, Any]) -> None:
        ev = event.get("ev")
        now = time.monotonic()
        if ev == "log":
            log.log(_LEVELS.get(str(event.get("level")), logging.DEBUG), "%s",
                    redact_text(str(event.get("msg") or ""), self.secrets))
        elif ev == "phase" and event.get("phase") == "download":
            self._enter_download(now)
        elif ev == "progress":
            self.bytes = int(event.get("bytes") or 0)
            status = event.get("status")
            if status == "finished":
                self.phase = "post"  # postprocessing: no bytes to expect
            elif status == "downloading" and self.phase != "download":
                self._enter_download(now)
            total, done = event.get("file_total"), event.get("file_bytes")
            if total and done is not None:
                self.ctx.progress(min(0.99, float(done) / float(total)))
        elif ev == "ready":
            self.timings["ready_s"] = time.monotonic() - self._t0

    def _enter_download(self, now: float) -> None:
        self.phase = "download"
        self._window_start = now
        self._folder_start = _folder_bytes(self.watch_dir) if self.watch_dir is not None else 0
        self._folder_growth = 0
        self._samples = deque([(now, self.bytes)])

    def _check(self) -> None:
        now = time.monotonic()
        if self.ctx.cancelled():
            self._kill()
            raise errors.Cancelled("cancelled")
        lim = self.limits
        if self.phase == "extract" and now - self._op_start > lim.extract_timeout_s:
            self._kill()
            raise errors.Stalled(f"stalled: no media after {lim.extract_timeout_s:g} s (extract_timeout_s); the "
                                 "server is too slow to answer, retried later")
        if self.phase != "download":
            return
        if self.watch_dir is not None and now - self._dir_checked >= DIR_CHECK_S:
            self._dir_checked = now
            size = _folder_bytes(self.watch_dir)
            if size > lim.cap_bytes:
                self._kill()
                raise lim.cap_error(size)
            # Downloads yt-dlp hands to ffmpeg report no bytes: the growing file is the progress then.
            self._folder_growth = max(self._folder_growth, size - self._folder_start)
        if lim.stall_bytes_per_s > 0 and lim.stall_s > 0:
            seen = max(self.bytes, self._folder_growth)
            self._samples.append((now, seen))
            while len(self._samples) > 1 and self._samples[1][0] <= now - lim.stall_s:
                self._samples.popleft()
            got = seen - self._samples[0][1]
            if now - self._window_start >= lim.stall_s and got < lim.stall_bytes_per_s * lim.stall_s:
                self._kill()
                raise errors.Stalled(
                    f"stalled: under {lim.stall_bytes_per_s / 1024:g} KB/s for {lim.stall_s:g} s "
                    f"({got / lim.stall_s / 1024:.2f} KB/s); retried later")


def _folder_bytes(folder: Path) -> int:
    total = 0
    try:
        for p in folder.iterdir():
            with contextlib.suppress(OSError):
                st = p.lstat()
                if p.is_file() and not p.is_symlink():
                    total += st.st_size
    except OSError:
        pass
    return total

"""The delivery queue: one thread per process takes events in, writes them for the app's toasts,
and schedules each channel's attempts on a small thread pool; a failed attempt goes back on the
heap with a "not before" time (1, 2, 4… s, capped), never a worker sleeping on it.

``emit`` only appends under a lock and wakes the thread, so the engine never waits for a
receiver; an attempt is cut off by its timeout, and four senders mean one receiver that hangs
holds one of them, not the queue. Every step is a line in ``<home>/notify/notifications.log``
(event, channel, attempt, result) — the URL shown without path or query, no secret, no signature.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config.settings import NotifySettings, load_settings
from pipeline.notify import channels, keys

log = logging.getLogger("tubemill.notify")

NOTIFY_DIR = "notify"
LOG_NAME = "notifications.log"
EVENTS_NAME = "events.jsonl"
LOG_MAX_BYTES = 1 << 20  # then rotated once to notifications.log.1
EVENTS_KEEP = 200
SENDERS = 4
TEST_EVENT = "test"  # the Settings page's button: sent whatever notify.events says
EXIT_DRAIN_S = 10.0  # at exit, pending deliveries get this long (a CLI run ends right after batch.done)
_file_lock = threading.Lock()


def notify_dir(home: Path) -> Path:
    path = Path(home) / NOTIFY_DIR
    path.mkdir(mode=0o700, exist_ok=True)  # not parents: a home deleted meanwhile (a temp one) is not remade
    return path


def write_log(home: Path, line: str) -> None:
    """One timestamped line in the notifications log (rotated at 1 MB); a full disk loses the line only."""
    try:
        with _file_lock:
            path = notify_dir(home) / LOG_NAME
            if path.exists() and path.stat().st_size > LOG_MAX_BYTES:
                os.replace(path, path.with_name(LOG_NAME + ".1"))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{stamp} {line}\n")
    except OSError:
        log.warning("cannot write the notifications log under %s", home)


def record_event(home: Path, record: dict[str, Any]) -> None:
    """Append the event for the app's toasts, keeping the last ``EVENTS_KEEP`` (rewritten atomically)."""
    from state.storage import atomic_write_bytes

    try:
        with _file_lock:
            path = notify_dir(home) / EVENTS_NAME
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
            lines = [*lines[-(EVENTS_KEEP - 1):], json.dumps(record, sort_keys=True)]
            atomic_write_bytes(path, ("\n".join(lines) + "\n").encode(), durable=False)
    except OSError:
        log.warning("cannot record the event under %s", home)


def read_events(home: Path, after: float = 0.0) -> list[dict[str, Any]]:
    """Events recorded after ``after`` (their ``time``), oldest first; a torn or odd line is skipped."""
    path = Path(home) / NOTIFY_DIR / EVENTS_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and float(rec.get("time") or 0) > after:
            out.append(rec)
    return out


@dataclass(order=True)
class Job:
    due: float
    seq: int
    home: Path = field(compare=False)
    channel: str = field(compare=False)  # "webhook" | "apprise"
    record: dict[str, Any] = field(compare=False)
    conf: NotifySettings = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Dispatcher:
    """Owns the queue, the retry heap and the senders; started on the first event of the process."""

    def __init__(self, senders: int = SENDERS) -> None:
        self._cv = threading.Condition()
        self._incoming: list[tuple[Path, str, dict[str, Any]]] = []
        self._heap: list[Job] = []
        self._seq = itertools.count()
        self._outstanding = 0  # events not yet taken in + jobs queued or in flight
        # Plain daemon threads, not a ThreadPoolExecutor: the executors refuse new work once the interpreter
        # starts to exit, which is exactly when a CLI run's batch.done (and its retries) must still go out.
        self._ready: queue.SimpleQueue[Job] = queue.SimpleQueue()
        for i in range(senders):
            threading.Thread(target=self._send_loop, name=f"tubemill-notify-send-{i}", daemon=True).start()
        self._thread = threading.Thread(target=self._loop, name="tubemill-notify", daemon=True)
        self._thread.start()

    def submit(self, home: Path, event: str, payload: dict[str, Any]) -> None:
        with self._cv:
            self._incoming.append((Path(home), event, dict(payload)))
            self._outstanding += 1
            self._cv.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every delivery ended (delivered or given up), at most ``timeout`` s; True if all did."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._incoming and not (self._heap and self._heap[0].due <= time.monotonic()):
                    self._cv.wait(None if not self._heap else max(0.0, self._heap[0].due - time.monotonic()))
                incoming, self._incoming = self._incoming, []
                due = []
                while self._heap and self._heap[0].due <= time.monotonic():
                    due.append(heapq.heappop(self._heap))
            for home, event, payload in incoming:
                try:
                    jobs = self._take(home, event, payload)
                except Exception:  # a bad settings file, an odd payload: logged, the thread lives on
                    log.exception("notification %s under %s not taken", event, home)
                    jobs = []
                with self._cv:
                    for job in jobs:
                        heapq.heappush(self._heap, job)
                    self._outstanding += len(jobs) - 1
                    self._cv.notify_all()
            for job in due:
                self._ready.put(job)

    def _send_loop(self) -> None:
        while True:
            self._attempt(self._ready.get())

    def _take(self, home: Path, event: str, payload: dict[str, Any]) -> list[Job]:
        record = {"id": uuid.uuid4().hex, "event": event, "time": time.time(), "payload": payload}
        try:
            conf = load_settings(home).notify
        except ValueError as exc:
            write_log(home, f"{event} {record['id']}: settings unreadable, nothing sent ({exc})")
            return []
        if conf.toasts:
            record_event(home, record)
        if event not in conf.events and event != TEST_EVENT:
            write_log(home, f"{event} {record['id']}: not in notify.events, not sent")
            return []
        now, jobs = time.monotonic(), []
        if conf.webhook_url:
            jobs.append(Job(now, next(self._seq), home, "webhook", record, conf))
        if keys.apprise_urls(home):
            if channels.apprise_module() is None:
                write_log(home, f"{event} {record['id']}: apprise URLs are set but apprise is not installed")
            else:
                jobs.append(Job(now, next(self._seq), home, "apprise", record, conf))
        write_log(home, f"{event} {record['id']}: " + (", ".join(j.channel for j in jobs) or "no channel set"))
        return jobs

    def _attempt(self, job: Job) -> None:
        job.attempt += 1
        conf, rec = job.conf, job.record
        try:
            if job.channel == "webhook":
                where = channels.redact_url(conf.webhook_url)
                result = channels.send_webhook(conf.webhook_url, keys.webhook_secret(job.home), rec, conf.timeout_s)
            else:
                urls = keys.apprise_urls(job.home)
                where = f"{len(urls)} URL(s)"
                result = channels.send_apprise(urls, *channels.describe(rec))
        except Exception as exc:  # a bug in a channel must not lose the thread's count
            where, result = job.channel, channels.Attempt(False, f"{type(exc).__name__}", retryable=False)
        again = not result.ok and result.retryable and job.attempt < conf.max_attempts
        delay = 0.0
        if again:
            delay = min(conf.backoff_cap_s, conf.backoff_s * 2 ** (job.attempt - 1))
            delay = min(conf.backoff_cap_s, max(delay, result.retry_after_s or 0.0))
        verdict = ("delivered" if result.ok else f"retry in {delay:g}s" if again else "given up")
        write_log(job.home, f"{rec['event']} {rec['id']} {job.channel} {where} attempt {job.attempt}/"
                            f"{conf.max_attempts}: {result.detail}: {verdict}")
        with self._cv:
            if again:
                job.due = time.monotonic() + delay
                heapq.heappush(self._heap, job)
            else:
                self._outstanding -= 1
            self._cv.notify_all()


_dispatcher: Dispatcher | None = None
_start_lock = threading.Lock()


def dispatcher() -> Dispatcher:
    """The process's dispatcher, started (and given a bounded drain at exit) on first use."""
    global _dispatcher
    if _dispatcher is None:
        with _start_lock:
            if _dispatcher is None:
                _dispatcher = Dispatcher()
                atexit.register(_dispatcher.flush, EXIT_DRAIN_S)
    return _dispatcher

"""Notifications: a batch done, failed or held for long, and new items of a subscription, sent as a
signed webhook, through Apprise when it is installed, and as a toast in the app.

It sits between config and the engine: the engine calls :func:`emit` (and :func:`note_held` once a
second per batch) and this package imports only config, common and state. :func:`emit` never blocks
and never raises: delivery runs on its own thread (:mod:`~pipeline.notify.dispatch`), so a receiver
that hangs or fails costs the engine nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from pipeline.config.settings import NOTIFY_EVENTS
from pipeline.notify.channels import describe
from pipeline.notify.dispatch import LOG_NAME, NOTIFY_DIR, TEST_EVENT, read_events
from pipeline.notify.keys import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    apprise_urls,
    rotate_webhook_secret,
    set_apprise_urls,
    sign,
    verify,
    webhook_secret,
)

__all__ = ["NOTIFY_EVENTS", "SIGNATURE_HEADER", "TEST_EVENT", "TIMESTAMP_HEADER", "apprise_urls", "batch_finished",
           "describe", "emit", "flush", "log_path", "note_held", "read_events", "rotate_webhook_secret",
           "send_test", "set_apprise_urls", "sign", "toasts_since", "verify", "webhook_secret"]

log = logging.getLogger("tubemill.notify")
_held: dict[tuple[str, str], list[Any]] = {}  # (home, batch id) -> [held since, reason, reported]
_held_lock = threading.Lock()
_held_after: dict[str, tuple[int, float]] = {}  # home -> (settings.toml mtime, held_after_s)
_stopped: dict[tuple[str, str], dict[str, int]] = {}  # (home, batch id) -> counts when on_error=stop stopped it


def emit(home: Path | str, event: str, payload: dict[str, Any]) -> None:
    """Queue ``event`` for every channel set in the home's ``[notify]``; returns at once, never raises."""
    try:
        from pipeline.notify.dispatch import dispatcher

        dispatcher().submit(Path(home), event, payload)
    except Exception:
        log.exception("notification %s dropped", event)


def send_test(home: Path | str) -> None:
    """The Settings page's "send a test notification": every channel set, whatever ``notify.events`` says."""
    emit(home, TEST_EVENT, {"name": "test", "message": "a test notification"})


def log_path(home: Path | str) -> Path:
    """``<home>/notify/notifications.log``: one line per event taken and per delivery attempt."""
    return Path(home) / NOTIFY_DIR / LOG_NAME


def toasts_since(home: Path | str, after: float) -> tuple[list[tuple[str, str]], float]:
    """For the app's fragment: (title, text) of each event recorded after ``after`` (at most the last 5, so a
    page opened after a busy night is not buried), and the new cursor. Streamlit-free: the page calls st.toast."""
    events = read_events(Path(home), after)
    return [describe(r) for r in events[-5:]], max([after, *(float(r["time"]) for r in events)])


def flush(timeout: float = 10.0) -> bool:
    """Wait (at most ``timeout`` s) until queued deliveries ended; for tests and a CLI about to exit."""
    from pipeline.notify import dispatch

    return dispatch._dispatcher.flush(timeout) if dispatch._dispatcher else True


def batch_finished(home: Path | str, summary: dict[str, Any], reason: str | None = None) -> None:
    """``batch.failed`` when an item failed or the batch stopped on an error (``reason``), else ``batch.done``.

    A batch stopped by its last item finishes right after: that second event, saying nothing new, is not sent.
    """
    try:
        key, counts = (str(home), str(summary.get("id"))), dict(summary.get("counts") or {})
        with _held_lock:
            _held.pop(key, None)
            if reason:
                _stopped[key] = counts
            elif _stopped.pop(key, None) == counts:
                return  # the stopped batch then finished with nothing new: it was already reported
        event = "batch.failed" if reason or counts.get("failed") else "batch.done"
        emit(home, event, {"batch_id": summary.get("id"), "name": summary.get("name"), "state": summary.get("state"),
                           "recipe": summary.get("recipe"), "counts": counts, "total": summary.get("total"),
                           "finished_at": summary.get("finished_at"), "output_dir": summary.get("output_dir"),
                           **({"reason": reason} if reason else {})})
    except Exception:
        log.exception("batch event for %s dropped", summary.get("id"))


def note_held(home: Path | str, batch_id: str, name: str, held: str | None, now: float) -> None:
    """Called with each published hold reason (None: something runs, or the user paused it): a batch with
    work left that stays held ``notify.held_after_s`` is reported once, until it moves again."""
    try:
        key = (str(home), batch_id)
        with _held_lock:
            if not held:
                _held.pop(key, None)
                return
            entry = _held.setdefault(key, [now, held, False])
            entry[1] = held
            if entry[2] or now - entry[0] < _held_after_s(Path(home)):
                return
            entry[2] = True
            since = entry[0]
        emit(home, "batch.held", {"batch_id": batch_id, "name": name, "reason": held, "held_s": round(now - since, 1)})
    except Exception:
        log.exception("held check for %s failed", batch_id)


def _held_after_s(home: Path) -> float:
    """``notify.held_after_s``, read again only when settings.toml changes (this runs once a second)."""
    from pipeline.config.settings import SETTINGS_NAME, load_settings

    try:
        mtime = (home / SETTINGS_NAME).stat().st_mtime_ns
    except OSError:
        mtime = 0
    cached = _held_after.get(str(home))
    if cached is None or cached[0] != mtime:
        try:
            value = load_settings(home).notify.held_after_s
        except ValueError:
            value = float("inf")
        cached = _held_after[str(home)] = (mtime, value)
    return cached[1]

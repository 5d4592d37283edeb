"""Live streams and premieres: there is no recording to transcribe yet, and downloading a live stream would
hold a worker for its whole length, so such an item waits until it starts (or ends) instead.

Read from an info dict (``live_status``, ``release_timestamp``) when yt-dlp got that far, else from
YouTube's own wording ("This live event will begin in 3 hours.", "Premieres in 6 hours"), which the error
classifier hands here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline import errors

UPCOMING = re.compile(r"this live event will begin|\bpremieres? (?:in|on|at)\b|\bpremiere will begin|live event .*"
                      r"(?:scheduled|not yet started)|will begin at", re.I)
_IN = re.compile(r"\bin\s+(?P<n>\d+|an?|one)\s+(?P<unit>second|minute|hour|day|week)s?\b", re.I)
_SOON = re.compile(r"in a few moments|shortly|momentarily", re.I)
_AT_UTC = re.compile(r"(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)\s*(?:UTC|GMT|Z)\b", re.I)
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def upcoming_start(message: str, now: float | None = None) -> float | None:
    """When a "This live event will begin in 3 hours." / "Premieres in 6 hours" message says the stream
    starts (epoch seconds, as precise as the wording), or None when it gives no time."""
    now = time.time() if now is None else now
    m = _IN.search(message)
    if m:
        n = m.group("n").lower()
        count = 1 if n in ("a", "an", "one") else int(n)
        return now + count * _UNIT_S[m.group("unit").lower()]
    if _SOON.search(message):
        return now + 60
    m = _AT_UTC.search(message)
    if m:
        try:
            return datetime.fromisoformat(m.group("ts").replace(" ", "T")).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
    return None


def start_text(starts_at: float | None, now: float) -> str:
    """When a stream starts, as a message says it: ``starts about 2025-01-01 12:00 UTC``."""
    if starts_at is None:
        return "no start time given"
    stamp = datetime.fromtimestamp(starts_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"starts about {stamp}" if starts_at - now > 90 else "starts in a moment"


def check_live(info: Mapping[str, Any] | None, now: float | None = None) -> None:
    """Raise :class:`~pipeline.errors.NotYetLive` for an info dict of a stream that is upcoming
    (``live_status == "is_upcoming"``, start from ``release_timestamp``) or still live: there is no
    recording to transcribe yet, and downloading a live stream would hold a worker for its whole length."""
    if not info:
        return
    now = time.time() if now is None else now
    status = info.get("live_status")
    if status == "is_upcoming":
        ts = info.get("release_timestamp")
        starts = float(ts) if isinstance(ts, int | float) else None
        raise errors.NotYetLive(f"live stream or premiere not started yet ({start_text(starts, now)})",
                                starts_at=starts)
    if status == "is_live" or info.get("is_live"):
        raise errors.NotYetLive("live now: it can be transcribed once the stream has ended", starts_at=None)

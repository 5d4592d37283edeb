"""The YouTube quota day and this home's ledger of what it spent: refuse an upload before it overdraws the day.

The API grants 10,000 units a day and ``videos.insert`` costs 1,600. The day resets at
midnight America/Los_Angeles. :class:`QuotaLedger` counts what this home spent today and
refuses an upload that would overdraw it with :class:`pipeline.errors.RateLimited` whose
``retry_after`` is the time to the next quota day, so the engine parks the item without
spending an attempt. A real 403 ``quotaExceeded`` from the API marks the day as used up
in the ledger as well.

The upload extras are booked too (:meth:`QuotaLedger.book`): ``thumbnails.set`` and
``playlistItems.insert`` cost 50 units each (a video with both costs 1,700, so five a day
instead of six), and the ``playlistItems.list`` check before a retried insert costs 1.
A refused extra is flagged on its item, never waited for: the video is already up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline import errors
from pipeline.errors import CorruptStateFile
from state.storage import atomic_write_bytes, read_json_file

log = logging.getLogger("tubemill.youtube")

QUOTA_FILE = "youtube-quota.json"
PACIFIC = ZoneInfo("America/Los_Angeles")
DAILY_UNITS = 10_000
UPLOAD_COST = 1_600
THUMBNAIL_COST = 50  # thumbnails.set
PLAYLIST_INSERT_COST = 50  # playlistItems.insert
LIST_COST = 1  # playlistItems.list (and any other list call)
CALL_COSTS = {"thumbnails.set": THUMBNAIL_COST, "playlistItems.insert": PLAYLIST_INSERT_COST,
              "playlistItems.list": LIST_COST}


def quota_day(ts: float) -> str:
    """The quota day (a Pacific date, ISO) that the instant ``ts`` falls in."""
    return datetime.fromtimestamp(ts, PACIFIC).date().isoformat()


def next_reset(ts: float) -> float:
    """Epoch seconds of the next midnight America/Los_Angeles after ``ts`` (DST-aware)."""
    d = datetime.fromtimestamp(ts, PACIFIC).date() + timedelta(days=1)
    return datetime(d.year, d.month, d.day, tzinfo=PACIFIC).timestamp()


_ledger_locks: dict[Path, threading.Lock] = {}
_ledger_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _ledger_locks_guard:
        return _ledger_locks.setdefault(path.resolve(), threading.Lock())


class QuotaLedger:
    """Units spent today on this home's YouTube project, in ``<home>/youtube-quota.json``.

    Every change is one locked read-modify-write with an atomic replace (one process owns
    a home, the lock covers its threads). The file holds only today: a new Pacific day
    starts from zero. It counts what we asked for; the API remains the authority, and
    its ``quotaExceeded`` closes the day here too (:meth:`mark_exhausted`).
    """

    def __init__(self, home: Path, daily_units: int = DAILY_UNITS, upload_cost: int = UPLOAD_COST,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(home) / QUOTA_FILE
        self.daily_units = int(daily_units)
        self.upload_cost = int(upload_cost)
        self.clock = clock
        self._lock = _lock_for(self.path)

    def _today(self, now: float) -> dict[str, Any]:
        try:
            data = read_json_file(self.path) or {}
        except CorruptStateFile as exc:
            log.warning("ignoring an unreadable quota ledger: %s", exc)
            data = {}
        day = quota_day(now)
        if data.get("day") != day:
            return {"day": day, "spent": 0, "uploads": 0, "exhausted": False}
        return data

    def _write(self, data: dict[str, Any], now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {**data, "daily_units": self.daily_units, "updated_at": now}
        atomic_write_bytes(self.path, json.dumps(data, sort_keys=True).encode())

    def spent_today(self) -> int:
        return int(self._today(self.clock()).get("spent", 0))

    def remaining(self) -> int:
        data = self._today(self.clock())
        return 0 if data.get("exhausted") else max(0, self.daily_units - int(data.get("spent", 0)))

    def exhausted(self) -> bool:
        """Whether another upload today would be refused."""
        return self.remaining() < self.upload_cost

    def next_reset(self) -> float:
        return next_reset(self.clock())

    def seconds_to_reset(self) -> float:
        now = self.clock()
        return next_reset(now) - now

    def _refusal(self, data: dict[str, Any], now: float, why: str) -> errors.RateLimited:
        wait = next_reset(now) - now
        reset = datetime.fromtimestamp(now + wait, PACIFIC).strftime("%Y-%m-%d %H:%M %Z")
        return errors.RateLimited(f"YouTube quota for {data['day']} (Pacific) {why}; uploads resume at {reset} "
                                  f"(in {wait / 3600:.1f} h)", retry_after=wait)

    def check(self, units: int | None = None) -> None:
        """Raise ``RateLimited`` if ``units`` (one upload by default) would not fit today; books nothing."""
        units = self.upload_cost if units is None else int(units)
        now = self.clock()
        data = self._today(now)
        self._refuse_if_full(data, now, units)

    def _refuse_if_full(self, data: dict[str, Any], now: float, units: int, what: str = "an upload") -> None:
        spent = int(data.get("spent", 0))
        if data.get("exhausted"):
            raise self._refusal(data, now, "is used up (the API said quotaExceeded)")
        if spent + units > self.daily_units:
            raise self._refusal(data, now, f"is used up ({spent} of {self.daily_units} units spent, "
                                           f"{what} costs {units})")

    def reserve(self, units: int | None = None) -> int:
        """Book ``units`` (one upload by default) and return what is left, or raise ``RateLimited``."""
        units = self.upload_cost if units is None else int(units)
        with self._lock:
            now = self.clock()
            data = self._today(now)
            self._refuse_if_full(data, now, units)
            data["spent"] = int(data.get("spent", 0)) + units
            data["uploads"] = int(data.get("uploads", 0)) + 1
            self._write(data, now)
            return self.daily_units - data["spent"]

    def book(self, call: str, units: int | None = None) -> int:
        """Book one API call other than an upload (``thumbnails.set``: :data:`CALL_COSTS`) and return what is
        left, or raise ``RateLimited``; the calls of the day are counted by name beside the uploads."""
        units = CALL_COSTS.get(call, LIST_COST) if units is None else int(units)
        with self._lock:
            now = self.clock()
            data = self._today(now)
            self._refuse_if_full(data, now, units, call)
            data["spent"] = int(data.get("spent", 0)) + units
            calls = dict(data.get("calls") or {})
            calls[call] = int(calls.get(call, 0)) + 1
            data["calls"] = calls
            self._write(data, now)
            return self.daily_units - data["spent"]

    def refund(self, units: int | None = None) -> None:
        """Give back a reservation whose request never reached the API (no upload session opened)."""
        units = self.upload_cost if units is None else int(units)
        with self._lock:
            now = self.clock()
            data = self._today(now)
            data["spent"] = max(0, int(data.get("spent", 0)) - units)
            data["uploads"] = max(0, int(data.get("uploads", 0)) - 1)
            self._write(data, now)

    def mark_exhausted(self) -> None:
        """The API said the quota is gone: refuse every upload until the next Pacific midnight."""
        with self._lock:
            now = self.clock()
            data = self._today(now)
            data["exhausted"] = True
            self._write(data, now)

"""The stored subscriptions: ``<home>/watch/subs.json`` plus one append-only ``seen`` file per subscription.

Any process may change the list (the CLI adds while the app's engine records a check), so
every change is read-modify-write under an exclusive ``flock`` on ``watch/.lock`` and lands
by temp file + fsync + rename: a ``kill -9`` leaves the old list or the new one, never half.
Nothing here is TinyDB and nothing here is secret: options are what ``tubemill run`` would
store in a batch header (secrets such as a proxy password are refused when added).

What a subscription has seen is ``watch/seen/<id>.txt``, one entry id a line, appended
before its items are submitted, so a crash between the two loses an item rather than
processing one twice; the library archive (``library.jsonl``) is consulted too, so a video
another batch already finished is not done again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline import errors
from state.storage import atomic_write_bytes

KINDS = ("feed", "channel", "playlist", "folder")
SECRET_KEYS = re.compile(r"(password|passwd|secret|token|api_?key|cookie)", re.I)
_YT = re.compile(r"^https?://(?:www\.|m\.)?(?:youtube\.com|youtu\.be)/", re.I)


def watch_dir(home: Path) -> Path:
    return Path(home) / "watch"


def _path(home: Path) -> Path:
    return watch_dir(home) / "subs.json"


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    d = watch_dir(home)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read(home: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(_path(home).read_bytes() or b"{}")
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise errors.TubemillError(f"{_path(home)} is unreadable ({exc}); fix or delete it") from exc
    return list(data.get("subs") or [])


def _write(home: Path, subs: list[dict[str, Any]]) -> None:
    atomic_write_bytes(_path(home), json.dumps({"version": 1, "subs": subs}, indent=1).encode())


def kind_of(source: str) -> str:
    """What a source is, from its text and a ``stat``: a local folder, a YouTube channel or playlist, or a
    feed (any other URL: RSS or Atom read directly)."""
    if not re.match(r"^https?://", source, re.I):
        p = Path(source).expanduser()
        if not p.is_dir():
            raise errors.ConfigError(f"{source!r} is neither an http(s) URL nor an existing folder")
        return "folder"
    if _YT.match(source):
        if re.search(r"[?&]list=", source) or "/playlist" in source:
            return "playlist"
        return "channel"
    return "feed"


def _slug(source: str) -> str:
    text = re.sub(r"^https?://(www\.)?", "", source.rstrip("/"))
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[-40:] or "sub"


def add(home: Path, source: str, *, every_s: float = 1800, backfill: int = 0, recipe: str = "transcribe",
        options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a new subscription, due now (its first check marks what exists as seen, but ``backfill`` newest)."""
    source = source.strip()
    if every_s <= 0:
        raise errors.ConfigError("the check interval must be positive")
    if backfill < 0:
        raise errors.ConfigError("--backfill must be 0 or more")
    opts = dict(options or {})
    bad = [k for k in opts if SECRET_KEYS.search(k)]
    if bad:
        raise errors.ConfigError(f"secrets do not belong in a subscription ({', '.join(bad)}); "
                                 "use `tubemill secrets` or settings")
    kind = kind_of(source)
    if kind == "folder":
        source = str(Path(source).expanduser().resolve())
    now = time.time()
    sub = {
        "id": uuid.uuid4().hex[:8], "source": source, "kind": kind, "every_s": float(every_s),
        "backfill": int(backfill), "recipe": recipe, "options": opts, "paused": False, "created": now,
        "last_check": None, "next_check": now, "last_error": None, "failures": 0, "new_items_total": 0,
        "last_new": 0, "checks": 0, "batch": None, "name": _slug(source), "state": {},
    }
    with _locked(home):
        subs = _read(home)
        if any(s["source"] == source and s["recipe"] == recipe for s in subs):
            raise errors.ConfigError(f"already subscribed to {source} with recipe {recipe}")
        subs.append(sub)
        _write(home, subs)
    return sub


def list_subs(home: Path) -> list[dict[str, Any]]:
    with _locked(home):
        return _read(home)


def get(home: Path, sub_id: str) -> dict[str, Any]:
    """One subscription by id (or a unique id prefix); raises TubemillError naming the ref when none."""
    subs = list_subs(home)
    hits = [s for s in subs if s["id"] == sub_id] or [s for s in subs if s["id"].startswith(sub_id)]
    if len(hits) != 1:
        raise errors.TubemillError(f"no subscription {sub_id!r}" if not hits else f"{sub_id!r} is ambiguous")
    return hits[0]


def update(home: Path, sub_id: str, fn: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Apply ``fn`` to the stored subscription under the lock; None when it was removed meanwhile."""
    with _locked(home):
        subs = _read(home)
        for s in subs:
            if s["id"] == sub_id:
                fn(s)
                _write(home, subs)
                return s
    return None


def remove(home: Path, sub_id: str) -> bool:
    """Forget a subscription (its batches and outputs stay); True when there was one."""
    try:
        sid = get(home, sub_id)["id"]
    except errors.TubemillError:
        return False
    with _locked(home):
        subs = _read(home)
        kept = [s for s in subs if s["id"] != sid]
        _write(home, kept)
    (watch_dir(home) / "seen" / f"{sid}.txt").unlink(missing_ok=True)
    return len(kept) != len(subs)


def set_paused(home: Path, sub_id: str, paused: bool) -> dict[str, Any]:
    sid = get(home, sub_id)["id"]

    def change(s: dict[str, Any]) -> None:
        s["paused"] = bool(paused)
        if not paused:  # resumed: due now, backoff forgotten
            s["next_check"], s["failures"] = time.time(), 0

    out = update(home, sid, change)
    if out is None:
        raise errors.TubemillError(f"no subscription {sub_id!r}")
    return out


def check_now(home: Path, sub_id: str) -> None:
    """Ask the owner to check soon: the owner's loop reads the file every second and checks it first."""
    sid = get(home, sub_id)["id"]
    update(home, sid, lambda s: s.update(next_check=time.time(), check_requested=True))


def seen_ids(home: Path, sub_id: str) -> set[str]:
    try:
        text = (watch_dir(home) / "seen" / f"{sub_id}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {ln for ln in text.splitlines() if ln}


def mark_seen(home: Path, sub_id: str, ids: Iterable[str]) -> None:
    """Append ids to the subscription's seen file (one write; fsynced, so a restart never forgets them)."""
    lines = "".join(f"{i}\n" for i in ids)
    if not lines:
        return
    path = watch_dir(home) / "seen" / f"{sub_id}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)

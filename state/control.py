"""Requests from processes that do not own the home (a CLI beside the app, a second UI).

Each request is a small JSON file written atomically into ``<home>/control``; the
owning engine takes them in name order (time-stamped) about twice a second and may
leave a reply in ``<home>/control/replies``. Files, not sockets: nothing to bind,
survives the owner restarting, and works the same when no owner runs yet.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from state.storage import TEMP_PREFIX, atomic_write_bytes, clean_stray_temps

CONTROL_DIR = "control"
REPLIES_DIR = "replies"


def _dirs(home: Path) -> tuple[Path, Path]:
    ctl = Path(home) / CONTROL_DIR
    replies = ctl / REPLIES_DIR
    replies.mkdir(parents=True, exist_ok=True)
    return ctl, replies


def post_request(home: Path, op: str, **args: Any) -> str:
    """Queue ``op`` for the owner; returns the request id to wait for a reply on."""
    ctl, _ = _dirs(home)
    req_id = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"id": req_id, "op": op, "args": args}).encode()
    atomic_write_bytes(ctl / f"{req_id}.json", body, durable=False)
    return req_id


def take_requests(home: Path) -> list[dict[str, Any]]:
    """Read and remove pending requests, oldest first; unreadable ones are dropped with a reply."""
    ctl, replies = _dirs(home)
    out = []
    for path in sorted(ctl.glob("*.json")):
        if path.name.startswith(TEMP_PREFIX):
            continue
        try:
            req = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(req, dict) or "op" not in req:
                raise ValueError("not a request object")
            out.append(req)
        except (OSError, ValueError) as exc:
            put_reply(home, path.stem, ok=False, message=f"unreadable request {path.name}: {exc}")
        try:
            path.unlink()
        except OSError:
            pass
    return out


def put_reply(home: Path, req_id: str, *, ok: bool, message: str = "", **extra: Any) -> None:
    _, replies = _dirs(home)
    body = json.dumps({"id": req_id, "ok": ok, "message": message, **extra}).encode()
    atomic_write_bytes(replies / f"{req_id}.json", body, durable=False)


def wait_reply(home: Path, req_id: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """Poll for the owner's reply; ``None`` when none came in time."""
    _, replies = _dirs(home)
    path = replies / f"{req_id}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            time.sleep(0.05)
            continue
        try:
            path.unlink()
        except OSError:
            pass
        return reply
    return None


def clean_control(home: Path, max_reply_age_s: float = 3600.0) -> None:
    """Drop temp files and replies nobody collected."""
    ctl, replies = _dirs(home)
    clean_stray_temps(ctl)
    clean_stray_temps(replies)
    cutoff = time.time() - max_reply_age_s
    for path in replies.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass

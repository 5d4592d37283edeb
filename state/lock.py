"""One engine process owns a home; everyone else reads snapshots and posts requests.

``flock`` is released by the kernel when its holder dies, even on ``kill -9``, so a
stale lock file never blocks a restart. The file's content only says *who* holds it,
for the message a second ``tubemill run`` prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_NAME = "lock"
HOME_MODE = 0o700


def ensure_home(home: Path | str) -> Path:
    """The home, created 0700 (it holds secrets, cookie copies and what was transcribed); an existing home of
    ours that is readable by others is tightened. One function so that every first writer agrees."""
    path = Path(home).expanduser()
    if not path.is_dir():
        path.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    try:
        st = path.stat()
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(path, HOME_MODE)
    except OSError:
        pass
    return path


class HomeLocked(Exception):
    """Another live process owns this home."""

    def __init__(self, home: Path, owner: dict[str, Any] | None) -> None:
        self.home = Path(home)
        self.owner = owner or {}
        super().__init__(f"{self.home} is in use by {describe_owner(self.owner)}")


def describe_owner(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "another process"
    started = owner.get("started_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')} ({owner.get('role', 'engine')}, since {when})"


class HomeLock:
    """An exclusive, non-blocking claim on a home directory."""

    def __init__(self, home: Path, role: str = "engine") -> None:
        self.home = Path(home)
        self.path = self.home / LOCK_NAME
        self.role = role
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, attempts: int = 3) -> bool:
        """Claim the home; retried briefly because a reader's liveness probe holds it for microseconds."""
        if self._fd is not None:
            return True
        ensure_home(self.home)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for i in range(attempts):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if i == attempts - 1:
                    os.close(fd)
                    return False
                time.sleep(0.05)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "role": self.role,
            "argv": " ".join(sys.argv[:3]),
            "started_at": time.time(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return True

    def acquire(self) -> None:
        if not self.try_acquire():
            raise HomeLocked(self.home, read_owner(self.home))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def owner_alive(home: Path) -> bool:
    """True while some process holds the home's lock."""
    path = Path(home) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_owner(home: Path) -> dict[str, Any] | None:
    """Who holds the home, or ``None`` when nobody does."""
    if not owner_alive(home):
        return None
    try:
        return json.loads((Path(home) / LOCK_NAME).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}

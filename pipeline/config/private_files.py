"""Private files: the ``<home>/secrets`` folder (0700) and files of mode 0600 written atomically.

The one way every secret reaches the disk (API keys, cookie files and their per-call copies,
private batch options, OAuth tokens): a temp file created 0600 from the start, fsynced and
``os.replace``d, so a crash leaves the old secret or the new one, and no other user can read it
even for an instant.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from state.storage import fsync_dir

SECRETS_DIR = "secrets"
DIR_MODE = 0o700
FILE_MODE = 0o600
TEMP_PREFIX = ".tmp-"


def secrets_dir(home: Path) -> Path:
    """``<home>/secrets``, created with mode 0700 (and re-chmodded if something loosened it)."""
    from state.lock import ensure_home

    return private_dir(ensure_home(home) / SECRETS_DIR)


def private_dir(path: Path) -> Path:
    """``path`` as a folder of mode 0700 (created, or re-chmodded if something loosened it)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; the file is mode 0600 at every instant."""
    path = Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have narrowed it further; never wider
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, FILE_MODE)
    fsync_dir(path.parent)
    return path


def remove_file(path: Path) -> bool:
    """Delete ``path`` durably (the folder fsynced); True if there was a file."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True

"""The batch ZIP: every regular file of the batch folder but secrets and scratch, streamed to a temp
name and renamed (so a reader never sees half an archive), members in a reproducible order."""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from state.storage import TEMP_PREFIX

log = logging.getLogger("pipeline")

SECRET_NAME_PATTERNS = (
    "cookies*.txt", "*cookies*", "*.pem", "*.key", "*.p12", "*.pfx", "token*.json", "client_secret*.json",
    ".env", ".env.*", "*.netrc", "_netrc", ".upload-session*.json",
)  # fmt: skip
# media.* is an item's kept copy for playback (up to [downloads] keep_media_mb a batch): gigabytes of audio
# that were never asked for in the archive of the results (--keep-audio's audio.* still goes in).
SCRATCH_NAME_PATTERNS = (f"{TEMP_PREFIX}*", "*.tmp", "*.part", "*.part-frag*", "*.ytdl", "*.zip", "media.*")
SCRATCH_DIRS = (".tmp", "__pycache__")
_SECRET_CONTENT = re.compile(
    rb"# (?:Netscape )?HTTP Cookie File"
    rb"|\bsk-[A-Za-z0-9_\-]{20,}"
    rb"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    rb"|(?m:^\s*(?:export\s+)?[A-Z0-9_]*(?:API_?KEY|TOKEN|SECRET|PASSWORD)[A-Z0-9_]*\s*[=:]\s*\S{16,})",
)
_STORED_EXT = {".mp4", ".m4a", ".mkv", ".webm", ".mp3", ".opus", ".ogg", ".aac", ".jpg", ".jpeg", ".png",
               ".webp", ".gz", ".bz2", ".xz", ".7z", ".pdf"}


def is_secret_file(path: Path, *, by_name: bool = True) -> bool:
    """True for files that must never leave the machine, judged by name and by their first 4 KB."""
    name = path.name.lower()
    if by_name and any(fnmatch.fnmatch(name, pat) for pat in SECRET_NAME_PATTERNS):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True  # unreadable: we cannot vouch for it
    return _SECRET_CONTENT.search(head) is not None


def zip_members(folder: Path, ours: Iterable[Path] = ()) -> Iterable[tuple[Path, str]]:
    """(file, arcname) pairs the ZIP may hold, sorted for reproducible archives.

    The rule: every regular file under the batch folder, except
    - secrets by name: ``cookies*.txt``, ``*cookies*``, ``*.pem``, ``*.key``, ``*.p12``, ``*.pfx``,
      ``token*.json``, ``client_secret*.json``, ``.env``, ``.env.*``, ``*.netrc``;
    - secrets by content, in the first 4 KB: a ``# Netscape HTTP Cookie File`` header, an
      ``sk-…`` key of 20+ characters, a PEM private key, or an ``…API_KEY=/TOKEN=/SECRET=/PASSWORD=``
      line with a long value;
    - scratch: ``.tmp``/``__pycache__`` folders, our atomic-write temp files (``.tmp-*``), ``*.tmp``,
      partial downloads (``*.part``, ``*.ytdl``), and every ``*.zip`` (this archive, its temp file
      and earlier exports); media kept for playback (``media.*``);
    - symbolic links (they could point anywhere, e.g. at ``~/.ssh``).

    Files in ``ours`` (what this export just wrote) skip the name patterns only, so a batch
    called "cookies" still gets its PDF into the ZIP; their content is still checked.
    """
    folder = Path(folder)
    own = {Path(p).resolve() for p in ours}
    for root, dirs, files in os.walk(folder, followlinks=False):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if d.lower() not in SCRATCH_DIRS and not (rootp / d).is_symlink())
        for name in sorted(files):
            p = rootp / name
            low = name.lower()
            if p.is_symlink() or not p.is_file():
                continue
            if any(fnmatch.fnmatch(low, pat) for pat in SCRATCH_NAME_PATTERNS):
                continue
            if is_secret_file(p, by_name=p.resolve() not in own):
                log.warning("export: left %s out of the ZIP (looks secret)", p.relative_to(folder))
                continue
            yield p, p.relative_to(folder).as_posix()


def write_zip(folder: Path, path: Path, ours: Iterable[Path] = ()) -> Path:
    """Stream the batch folder into ``path`` (see :func:`zip_members` for what is left out).

    Files go to disk one by one through ``ZipFile.write`` (never an in-memory archive),
    into a temp name that is renamed at the end, so a crash leaves no half ZIP behind.
    Already-compressed media is stored, not deflated again.
    """
    folder, path = Path(folder), Path(path)
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            for file, arc in zip_members(folder, ours):
                stored = file.suffix.lower() in _STORED_EXT
                zf.write(file, arc, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path



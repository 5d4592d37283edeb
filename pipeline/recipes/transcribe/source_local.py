"""Local sources: a media file, or a folder walked for media files, each with an id from its content.

A folder's unreadable parts (a locked subfolder, a broken symlink, a name that is not UTF-8) are reported
and the rest is listed; the walk is bounded, so ``~`` or a disk's root as a line ends with a reason, not
a day-long listing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pipeline.common.lines import printable
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.source_entries import Entry, clean_title
from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS, os_reason
from pipeline.recipes.transcribe.source_text import SURROGATE, exists

MAX_FOLDER_ENTRIES = 200_000  # `~` or a disk's root as a line must end with a reason, not a day-long walk


def local_id(path: Path) -> str:
    """Content-based: the same lecture file in two folders is one video."""
    h = hashlib.sha1()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            h.update(f.read(1 << 20))
    return "local-" + h.hexdigest()[:16]


def _media_files(root: Path, skipped: list[tuple[str, str]]) -> list[Path]:
    """Media files under ``root``; what cannot be read is added to ``skipped`` as (path, reason), never raised.

    Directory symlinks are not followed (as ``rglob`` did not), so a link to ``/`` or a
    loop cannot make the walk endless; file symlinks are. ``MAX_FOLDER_ENTRIES`` bounds
    the walk with a reason instead of an hour of listing.
    """
    out: list[Path] = []
    stack, seen = [root], 0
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            skipped.append((printable(str(folder)), f"cannot list this folder ({os_reason(exc)})"))
            continue
        for e in entries:
            seen += 1
            if seen > MAX_FOLDER_ENTRIES:
                raise InvalidInput(f"more than {MAX_FOLDER_ENTRIES:,} entries under this folder; name a smaller one")
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                    continue
                if Path(e.name).suffix.lower().lstrip(".") not in MEDIA_EXTS:
                    continue
                if SURROGATE.search(e.path):
                    skipped.append((printable(e.path), "file name is not valid UTF-8; rename the file"))
                elif e.is_file():
                    out.append(Path(e.path))
                elif e.is_symlink() and not exists(Path(e.path)):
                    skipped.append((printable(e.path), "broken symlink"))
                elif not e.is_dir():
                    skipped.append((printable(e.path), "not a regular file (a device, pipe or socket)"))
            except OSError as exc:
                skipped.append((printable(e.path), f"cannot read this file ({os_reason(exc)})"))
    return sorted(out)


def local_entries(line: str, skipped: list[tuple[str, str]] | None = None) -> list[Entry]:
    """Entries for a local file or folder line (one per readable media file).

    A folder's unreadable entries go to ``skipped`` (path, reason) and the rest are
    listed; a file line that cannot be read raises ``InvalidInput``.
    """
    skipped = [] if skipped is None else skipped
    try:
        p = Path(line).expanduser().resolve()
        is_file = p.is_file()
    except (OSError, RuntimeError, ValueError) as exc:
        raise InvalidInput(f"cannot read this path ({exc})") from None
    files = [p] if is_file else _media_files(p, skipped)
    out = []
    for f in files:
        try:
            cid = local_id(f)
        except OSError as exc:
            if is_file:
                raise InvalidInput(f"cannot read this file ({os_reason(exc)})") from None
            skipped.append((printable(str(f)), f"cannot read this file ({os_reason(exc)})"))
            continue
        out.append(Entry(source=line, url=None, id=cid, archive_id=f"local {cid}", title=clean_title(f.stem),
                         title_from="file name", local_path=str(f), extractor="local"))
    return out

"""File routes that never leave their folder: a batch's ZIP and an item's files.

Every path from a request is joined to its root, resolved (``..`` and symlinks followed) and kept
only when the result is still inside the resolved root; anything else is "not found", so a probe
learns nothing about what exists outside. A root is never taken from the request: it is the batch's
output folder as stored when the batch was made (under the output root, or where ``tubemill run
--output`` put it), and an item's folder must lie inside its batch's.
The ZIP is written as it is sent, file by file in 1 MiB pieces: memory stays flat for any batch size.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 20


class OutsideRoot(LookupError):
    """The path would leave its root (or does not exist): answered as 404."""


def inside(root: Path, rel: str) -> Path:
    """``root/rel`` resolved, or :class:`OutsideRoot` when it escapes ``root`` (``..``, an absolute path, a
    symlink pointing out, a NUL) or is not a regular file."""
    if not rel or "\0" in rel or rel.startswith(("/", "\\")) or Path(rel).is_absolute():
        raise OutsideRoot(rel)
    base = root.resolve()
    try:
        target = (base / rel).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise OutsideRoot(rel) from None
    if not target.is_relative_to(base) or not target.is_file():
        raise OutsideRoot(rel)
    return target


def within(path: Path, root: Path) -> bool:
    """Whether ``path`` resolves to ``root`` or below it."""
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def listing(root: Path) -> list[dict[str, object]]:
    """The regular files under ``root`` that stay inside it (symlinks out are left out), relative, sorted."""
    base = root.resolve()
    out: list[dict[str, object]] = []
    for path in _walk(base):
        out.append({"path": path.relative_to(base).as_posix(), "bytes": path.stat().st_size})
    return sorted(out, key=lambda d: str(d["path"]))


def _walk(base: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(base, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in names:
            path = Path(folder) / name
            if name.endswith(".part") or path.is_symlink() or not path.is_file():
                continue  # a half-written file, or a link that might point anywhere
            yield path


class _Sink:
    """A write-only, unseekable file for ``zipfile``: it collects what was written until it is drained."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.buf = bytes(self.buf), bytearray()
        return data


def zip_stream(root: Path, prefix: str) -> Iterator[bytes]:
    """The files under ``root`` as a ZIP (entries under ``prefix/``), produced as it is read."""
    base = root.resolve()
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:  # type: ignore[arg-type]
        for path in sorted(_walk(base)):
            arc = f"{prefix}/{path.relative_to(base).as_posix()}"
            info = zipfile.ZipInfo.from_file(path, arc)
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as src, zf.open(info, "w", force_zip64=info.file_size > 1 << 30) as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
                    if len(sink.buf) >= CHUNK:
                        yield sink.drain()
            if sink.buf:
                yield sink.drain()
    if sink.buf:
        yield sink.drain()

"""The stock-media cache: search answers, downloaded files and pre-fitted pictures under ``<home>/cache/media``.

Why a cache at all: the same topics come back (a rerun, a retried item, a series on one
subject), and a provider's answer and its files do not change within a day, so a second run
should cost no requests and no downloads (seed 001: a TTL of 24 h). Why pre-fitted pictures:
a provider's photo is decoded and cover-cropped to the frame size once, then every video of
that size reuses the JPEG instead of resizing a 4,000-pixel original again.

Layout, keyed by a hash of provider + query (the provider's key is never part of it)::

    search/<provider>/<hash>.json      the API's answer, as received
    files/<provider>/<hash>.<ext>      a downloaded photo or clip (hash of its URL)
    fitted/<hash>-<W>x<H>.jpg          a picture cover-cropped to a frame size

Freshness is the file's modification time (when it was fetched): older than the TTL is a
miss and the file is fetched again. The size cap is kept by :meth:`MediaCache.trim`, which
removes the oldest files first. Writes are atomic (a ``.part`` file, then ``os.replace``),
so two videos fetching the same query at once both end with a whole file.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline import errors

MEDIA_CACHE = Path("cache") / "media"


def digest(*parts: str) -> str:
    """A short stable name for provider + query (or a URL)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


class MediaCache:
    """Search answers and files by provider + query hash, with a TTL and a size cap; thread-safe counters."""

    def __init__(self, home: Path, ttl_h: float = 24.0, cap_mb: float = 1024.0,
                 now: Callable[[], float] = time.time) -> None:
        self.root = Path(home) / MEDIA_CACHE
        self.ttl_s = max(0.0, float(ttl_h)) * 3600.0
        self.cap_bytes = max(0, int(float(cap_mb) * 1024 * 1024))
        self.now = now
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------ paths and freshness

    def search_path(self, provider: str, kind: str, query: str) -> Path:
        return self.root / "search" / provider / f"{digest(provider, kind, query.lower())}.json"

    def file_path(self, provider: str, url: str, ext: str) -> Path:
        return self.root / "files" / provider / f"{digest(provider, url)}{ext}"

    def fitted_path(self, src: Path, size: tuple[int, int]) -> Path:
        """Keyed by the file's path, size and mtime: a local picture replaced under the same name is refitted."""
        try:
            st = src.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = ""
        return self.root / "fitted" / f"{digest(str(src), stamp)}-{size[0]}x{size[1]}.jpg"

    def fresh(self, path: Path) -> bool:
        """The file exists and was written within the TTL; a stale one is removed (fetched again)."""
        try:
            age = self.now() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        if age <= self.ttl_s:
            return True
        path.unlink(missing_ok=True)
        return False

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return round(self.hits / total, 3) if total else None

    # ------------------------------------------------------------ reads and writes

    def read(self, path: Path) -> bytes | None:
        """The cached bytes when fresh (counted as a hit), else None (a miss)."""
        if self.fresh(path):
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            if data:
                self.count(True)
                return data
        self.count(False)
        return None

    def write(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.utime(part, (self.now(), self.now()))
        os.replace(part, path)
        return path

    def fitted(self, src: Path, size: tuple[int, int]) -> Path:
        """``src`` cover-cropped to ``size`` as a JPEG, made once per (file, size) and reused while fresh."""
        out = self.fitted_path(src, size)
        if self.fresh(out):
            try:
                with Image.open(out) as im:
                    if im.size == size:
                        return out
            except (OSError, UnidentifiedImageError):
                pass  # damaged: made again below
        try:
            with Image.open(src) as im:
                im.draft("RGB", (size[0] * 2, size[1] * 2))  # JPEG: decode at a fraction of a huge original
                pic = ImageOps.exif_transpose(im).convert("RGB")
                fitted = ImageOps.fit(pic, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
            raise errors.InvalidInput(f"{src.name} is not a readable picture: {exc}") from exc
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.part")
        fitted.save(part, format="JPEG", quality=90)
        os.replace(part, out)
        return out

    # ------------------------------------------------------------ the size cap

    def size_bytes(self) -> int:
        return sum(size for _, _, size in self._files())

    def trim(self, keep: set[Path] | None = None) -> int:
        """Remove files past the TTL, then the oldest until the cache is under its cap; ``keep`` stays.

        Returns the number of files removed. Stale ``.part`` files of a killed writer go too.
        """
        keep = {p.resolve() for p in keep or ()}
        files = sorted(self._files(), key=lambda f: f[1])
        total = sum(size for _, _, size in files)
        removed = 0
        for path, mtime, size in files:
            age = self.now() - mtime
            expired = age > self.ttl_s or (path.name.endswith(".part") and age > 3600)
            if total <= self.cap_bytes and not expired:
                continue
            if path.resolve() in keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        return removed

    def _files(self) -> list[tuple[Path, float, int]]:
        out: list[tuple[Path, float, int]] = []
        if not self.root.is_dir():
            return out
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                p = Path(dirpath) / name
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append((p, st.st_mtime, st.st_size))
        return out

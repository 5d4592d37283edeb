"""What this home has already finished, across batches.

Two append-only files in the home, so a crash mid-append loses at most the last
line and a 7,000-video library never gets rewritten whole:

- ``library.jsonl``: canonical id → the item folder holding its outputs; a later
  batch asking for the same video copies those outputs instead of downloading and
  transcribing again (unless ``--force``).
- ``download-archive.txt``: the same videos in yt-dlp's ``--download-archive`` format
  (``youtube abc123``), so a user can switch tools without redoing work.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIBRARY = "library.jsonl"
ARCHIVE = "download-archive.txt"
# What a finished item folder holds that a reuse copies (audio and logs are not reused).
REUSABLE = ("transcript.json", "transcript.txt", "transcript.srt", "transcript.vtt", "summary.md", "summary.json",
            "meta.json")

_lock = threading.Lock()


@dataclass(frozen=True)
class Finished:
    id: str
    workdir: str
    batch: str
    title: str | None
    at: float


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        finally:
            os.close(fd)


def record(home: Path, *, id: str, archive_id: str | None, workdir: str, batch: str, title: str | None) -> None:
    """Remember a finished video (called by the export stage once its files are written)."""
    entry = {"id": id, "workdir": workdir, "batch": batch, "title": title, "at": time.time()}
    _append(Path(home) / LIBRARY, json.dumps(entry, ensure_ascii=False))
    if archive_id and archive_id not in archive_ids(home):
        _append(Path(home) / ARCHIVE, archive_id)


_cache: dict[str, tuple[tuple[int, int], dict[str, Finished]]] = {}


def load(home: Path) -> dict[str, Finished]:
    """Latest record per id; a torn last line (crash mid-append) is skipped. Cached until the file changes."""
    out: dict[str, Finished] = {}
    path = Path(home) / LIBRARY
    try:
        st = path.stat()
        key = (st.st_size, st.st_mtime_ns)
        cached = _cache.get(str(path))
        if cached and cached[0] == key:
            return cached[1]
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            d = json.loads(line)
            out[d["id"]] = Finished(d["id"], d["workdir"], d.get("batch", ""), d.get("title"), d.get("at", 0.0))
        except (ValueError, KeyError, TypeError):
            continue
    _cache[str(path)] = (key, out)
    return out


def archive_ids(home: Path) -> set[str]:
    try:
        return {ln.strip() for ln in (Path(home) / ARCHIVE).read_text(encoding="utf-8").splitlines() if ln.strip()}
    except FileNotFoundError:
        return set()


def lookup(home: Path, video_id: str | None) -> Finished | None:
    """The finished outputs for this id, if they still exist on disk."""
    if not video_id:
        return None
    hit = load(home).get(video_id)
    if hit and (Path(hit.workdir) / "transcript.json").exists():
        return hit
    return None


def reuse(hit: Finished, dest: Path) -> list[str]:
    """Copy (or hard-link, when on the same disk) an earlier item's outputs into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    src = Path(hit.workdir)
    if src.resolve() == dest.resolve():
        return [n for n in REUSABLE if (src / n).exists()]
    for name in REUSABLE:
        s = src / name
        if not s.exists():
            continue
        d = dest / name
        tmp = dest / f".{name}.reuse"
        try:
            os.link(s, tmp)
        except OSError:
            shutil.copy2(s, tmp)
        os.replace(tmp, d)
        copied.append(name)
    return copied


def status_of(home: Path, ids: list[str]) -> dict[str, Any]:
    """For a preview: how many of these ids a batch would reuse (finished here, outputs still on disk).

    A record whose folder was deleted or moved is redone by the batch, so it is not "already done".
    """
    done = [i for i in dict.fromkeys(ids) if lookup(home, i) is not None]
    return {"already_done": len(done), "ids": done}

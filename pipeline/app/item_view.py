"""One item as the pages show it: its progress through the recipe as one labelled figure, its stage chain,
and the detail a user opens to learn why it failed (full error, hint, log tail, timings, files).

The table, "Now running" and the detail all compute progress here, so one item never reads 90 % in one
place and 36 % in another: the figure is the item's way through all its stages, labelled with where it is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.engine.controls import ITEM_ACTIONS
from pipeline.engine.report import hint_for
from pipeline.recipes.transcribe import kept_media

LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 64 * 1024  # a long log is read from its end: the page wants the latest lines
AUDIO_SUFFIXES = (".mp3", ".m4a", ".wav", ".ogg", ".opus", ".flac", ".aac", ".weba")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".m4v", ".ogv")


def done_stages(item: dict[str, Any], n_stages: int) -> int:
    """Stages behind the item: those before its current one plus any later ones that ran ahead (a DAG)."""
    if item.get("status") == "done":
        return n_stages
    k = int(item.get("stage_index") or 0)
    return min(n_stages, k + len(item.get("done_ahead") or ()))


def item_progress(item: dict[str, Any], n_stages: int) -> float:
    """Whole-item progress: finished stages plus the running stage's fraction (a stage's own 100 % between
    stages would read as done)."""
    if n_stages <= 0:
        return 1.0 if item.get("status") == "done" else 0.0
    if item.get("status") == "done":
        return 1.0
    frac = float(item.get("progress") or 0.0) if item.get("status") == "running" else 0.0
    return min(1.0, (done_stages(item, n_stages) + min(1.0, max(0.0, frac))) / n_stages)


def progress_label(item: dict[str, Any], stages: list[str]) -> str:
    """Where the item is, in words: ``stage 3/5 transcribe 40 %``, ``stage 2/5 download · pending``, ``done``."""
    status = str(item.get("status") or "")
    n = len(stages)
    if status == "done":
        return "done"
    if status == "skipped":
        return "skipped"
    k = min(int(item.get("stage_index") or 0), max(0, n - 1))
    name = item.get("stage") if status == "running" and item.get("stage") else (stages[k] if stages else "?")
    where = f"stage {k + 1}/{n} {name}"
    if status == "running":
        return f"{where} {round(100 * float(item.get('progress') or 0.0))} %"
    if status == "failed":
        err = item.get("error") or {}
        return f"failed at stage {k + 1}/{n} {err.get('stage') or name}"
    return f"{where} · {status}"


def stage_chain(item: dict[str, Any], stages: list[str]) -> list[dict[str, Any]]:
    """Each stage of the item with what became of it: a stage that ran but did nothing says so
    (``upload`` with upload off reads "skipped", not "done")."""
    meta = item.get("meta") or {}
    timings = item.get("timings") or {}
    k = int(item.get("stage_index") or 0)
    ahead = set(item.get("done_ahead") or ())
    running = set(str(item.get("stage") or "").split("+")) if item.get("status") == "running" else set()
    err_stage = (item.get("error") or {}).get("stage") if item.get("status") == "failed" else None
    out = []
    for i, name in enumerate(stages):
        if name in running:
            state = "running"
        elif item.get("status") == "done" or i < k or name in ahead:
            state = "done"
        elif name == err_stage or (item.get("status") == "failed" and i == k and not err_stage):
            state = "failed"
        else:
            state = "cancelled" if item.get("status") == "cancelled" else "pending"
        if state == "done" and meta.get(name) == "skipped":
            state = "skipped"
        secs = timings.get(name)
        out.append({"stage": name, "state": state, "seconds": round(float(secs), 2) if secs is not None else None})
    return out


def chain_text(item: dict[str, Any], stages: list[str]) -> str:
    """The chain on one line, in words (no symbol a font may lack): ``script: done → … → upload: skipped``."""
    return " → ".join(f"{c['stage']}: {c['state']}" for c in stage_chain(item, stages))


def error_text(item: dict[str, Any]) -> str:
    """``Type: message`` in full (tables show it whole; the detail adds the hint)."""
    err = item.get("error") or {}
    if not err:
        return ""
    return f"{err.get('type') or 'Error'}: {' '.join(str(err.get('message') or '').split())}"


def log_tail(workdir: str | Path | None, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last ``lines`` of the item's ``log.txt`` (None when it has none)."""
    if not workdir:
        return None
    path = Path(workdir) / "log.txt"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > LOG_TAIL_BYTES:
        text = text.split("\n", 1)[-1]  # the first line was cut by the seek
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ItemDetail:
    """Everything the item panel shows, read once."""

    n: int
    title: str
    status: str
    progress: float
    label: str
    chain: list[dict[str, Any]]
    error: dict[str, Any] | None = None  # type, message (whole), stage, attempts, retryable, hint
    log: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)  # what item_action allows for this status


def item_notes(item: dict[str, Any]) -> list[str]:
    """What a recipe recorded that a user should see next to the result: a fallback taken, a step skipped."""
    meta = item.get("meta") or {}
    notes = []
    if meta.get("tts_fallback"):
        why = meta["tts_fallback"]
        notes.append("Narration: espeak-ng stood in for edge-tts"
                     + (f" ({' '.join(str(why).split())})" if isinstance(why, str) else ""))
    if meta.get("upload") == "skipped":
        notes.append("Upload: skipped (upload was off for this batch)")
    if meta.get("script_fallback"):
        notes.append(f"Script: the offline writer stood in for the LLM ({meta['script_fallback']})")
    return notes


def live_segments(item: dict[str, Any], last: int = 12) -> tuple[int, list[dict[str, Any]]]:
    """While Whisper runs: how many segments it has found, and the last few (start, end, text), from the
    file the transcribe stage appends to (``.tmp/transcript.partial.jsonl``); (0, []) when there is none."""
    if not item.get("workdir"):
        return 0, []
    path = Path(item["workdir"]) / ".tmp" / "transcript.partial.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0, []
    out = []
    for line in lines[-last:]:
        try:
            seg = json.loads(line)
        except ValueError:  # the line being written
            continue
        if isinstance(seg, dict) and "text" in seg:
            out.append(seg)
    return len(lines), out


def item_detail(item: dict[str, Any], stages: list[str], batch_name: str = "BATCH") -> ItemDetail:
    """The item panel's content: whole error with its hint, log tail, per-stage timings, files, actions."""
    status = str(item.get("status") or "")
    err = item.get("error") or None
    error = None
    if err:
        error = {"type": err.get("type") or "Error", "message": str(err.get("message") or ""),
                 "stage": err.get("stage"), "attempts": int(item.get("attempts") or 0),
                 "retryable": err.get("retryable"), "hint": hint_for(err.get("type"), batch_name)}
    files = []
    wd = Path(item.get("workdir") or "")
    if item.get("workdir") and wd.is_dir():
        for p in sorted(wd.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                st = p.stat()
                files.append({"file": p.name, "size_kb": round(st.st_size / 1024, 1),
                              "modified": time.strftime("%H:%M:%S", time.localtime(st.st_mtime)), "path": str(p)})
    return ItemDetail(n=int(item["n"]), title=str(item.get("title") or item.get("source") or ""), status=status,
                      progress=item_progress(item, len(stages)), label=progress_label(item, stages),
                      chain=stage_chain(item, stages), error=error, log=log_tail(item.get("workdir")), files=files,
                      notes=item_notes(item), actions=list(ITEM_ACTIONS.get(status, ())))  # the rest greyed out


def player_source(item: dict[str, Any]) -> str | None:
    """What Results can play: the kept local media (``artifacts["media"]``, kept audio, the local file), else
    the resolved media URL; never the page URL (a page is HTML, and the origin may be gone)."""
    arts = item.get("artifacts") or {}
    meta = item.get("meta") or {}
    kept = kept_media.find(Path(item["workdir"])) if item.get("workdir") else None
    for path in (arts.get("media"), kept, arts.get("audio"), meta.get("local_path")):
        if path and Path(path).is_file():
            return str(path)
    for url in (item.get("media_url"), meta.get("media_url")):
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return url
    src = str(item.get("source") or "")
    if src.startswith(("http://", "https://")) and _suffix(src) in AUDIO_SUFFIXES + VIDEO_SUFFIXES:
        return src  # the source is the media file itself, not a page around it
    return None


def _suffix(source: str) -> str:
    from urllib.parse import urlparse

    path = urlparse(source).path if source.startswith(("http://", "https://")) else source
    return Path(path).suffix.lower()


def is_audio(source: str) -> bool:
    """Audio or video player: by the file's (or URL path's) suffix."""
    return _suffix(source) in AUDIO_SUFFIXES

"""One batch as the pages show it: its progress line (failures in colour), its picker label, and what
each stage can do per hour of wall time with the workers it has, so the bottleneck stands out.

Busy-time rates alone made export read 280k items/h beside a transcription sliver: a stage's capacity
is its pool's workers over the time that pool spends per item, shared by every stage of the pool.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pipeline.common.formats import fmt_timestamp
from pipeline.common.units import fmt_duration
from pipeline.engine.recipe import get_stage
from pipeline.errors import TubemillError
from pipeline.recipes.transcribe.options import WHISPER_MODEL
from state.models import BatchSummary

# Settings and New batch offer the same list, the bundled model first (it needs no download).
WHISPER_MODELS = [WHISPER_MODEL, "tiny", "base.en", "base", "small.en", "small", "medium", "large-v3",
                  "distil-large-v3"]


def model_label(name: str) -> str:
    return f"{name} (bundled, offline)" if name == WHISPER_MODEL else name


def model_choices(current: str | None) -> list[str]:
    """The dropdown's models; a configured model not in the list (a local folder) is offered too, after
    the bundled one."""
    if current and current not in WHISPER_MODELS:
        return [WHISPER_MODELS[0], current, *WHISPER_MODELS[1:]]
    return list(WHISPER_MODELS)


def picker_label(s: BatchSummary) -> str:
    """The batch picker's label; built from a summary read this run, so "· active" ends with the batch."""
    c = s.counts
    tail = s.state
    if s.state == "active" and not c.get("running") and c.get("pending", 0) + c.get("waiting", 0):
        tail = "active, nothing running"
    return f"{s.name} · {s.finished}/{s.total} · {tail}"


def progress_parts(s: BatchSummary) -> list[str]:
    c = s.counts
    parts = [f"{c.get('done', 0)} of {s.total} done"]
    if c.get("failed"):
        parts.append(f"{c['failed']} failed")
    parts.append(f"{c.get('running', 0)} running")
    for key, words in (("waiting", "waiting to retry"), ("parked", "waiting for the Batch API"),
                       ("skipped", "skipped"), ("cancelled", "cancelled")):
        if c.get(key):
            parts.append(f"{c[key]} {words}")
    parts.append(f"ETA {fmt_duration(s.eta_s)}" if s.state == "active" else s.state)
    return parts


def progress_text(s: BatchSummary) -> str:
    """Plain progress line (``12 of 20 done · 3 failed · 1 running · ETA 2m00s``)."""
    return " · ".join(progress_parts(s))


def progress_markdown(s: BatchSummary) -> str:
    """The progress line for ``st.progress``: failures in red behind an error icon, so a batch with failures
    never looks like a clean one."""
    parts = progress_parts(s)
    out = []
    for p in parts:
        if p.endswith(" failed"):
            out.append(f":red[:material/error: **{p}**]")
        elif p.endswith("waiting to retry"):
            out.append(f":orange[{p}]")
        else:
            out.append(p)
    return " · ".join(out)


def fraction(s: BatchSummary) -> float:
    return s.finished / s.total if s.total else 1.0


def capacity(summary: BatchSummary, pools: dict[str, int]) -> list[dict[str, Any]]:
    """Per stage: runs, mean seconds per run, its pool and workers, and items per hour of wall time.

    A stage's time per item is its busy time over the items that entered the batch's flow (a stage that
    ran on half of them, transcription for uncaptioned items, costs half a run per item); a pool's
    capacity is its workers × 3600 over the time its stages take per item, and each stage shows its
    pool's. The lowest pool is the bottleneck; its costliest stage is marked.
    """
    stats = {k: v for k, v in summary.stage_stats.items() if v.get("n")}
    if not stats:
        return []
    items_in = max(int(v["n"]) for v in stats.values())
    rows = []
    per_pool: dict[str, float] = {}
    for stage in summary.recipe:
        st = stats.get(stage)
        if not st:
            continue
        pool = _pool_of(stage, pools)
        per_item = float(st["total_s"]) / items_in
        per_pool[pool] = per_pool.get(pool, 0.0) + per_item
        rows.append({"stage": stage, "pool": pool, "workers": max(1, int(pools.get(pool) or 1)),
                     "runs": int(st["n"]), "mean_s": round(float(st["total_s"]) / st["n"], 3), "per_item_s": per_item})
    for r in rows:
        busy = per_pool[r["pool"]]
        r["items_per_hour"] = round(r["workers"] * 3600 / busy, 1) if busy > 0 else None
        r["bottleneck"] = False
    known = [r for r in rows if r["items_per_hour"]]
    if known:
        slowest = min(r["items_per_hour"] for r in known)
        worst = max((r for r in known if r["items_per_hour"] == slowest), key=lambda r: r["per_item_s"])
        worst["bottleneck"] = True
    for r in rows:
        r["per_item_s"] = round(r["per_item_s"], 3)
    return rows


def capacity_note(rows: list[dict[str, Any]]) -> str | None:
    b = next((r for r in rows if r["bottleneck"]), None)
    if b is None:
        return None
    return (f"Bottleneck: {b['stage']} ({b['pool']} pool, {b['workers']} worker(s), {b['mean_s']:g} s a run) — "
            f"about {b['items_per_hour']:,.0f} items per hour. Stages sharing a pool share its workers.")


def _pool_of(stage: str, pools: dict[str, int]) -> str:
    try:
        res = get_stage(stage).resource
    except TubemillError:  # a stage no recipe registers any more (an old batch)
        return "cpu"
    return "cpu" if res == "gpu" and not pools.get("gpu") else res


def wait_reasons(engine: Any, ref: str) -> tuple[dict[int, str], str | None]:
    """Why each pending item and the batch wait, when the engine can say (``waits`` / ``batch_wait``);
    empty otherwise, never an error on the page."""
    waits: dict[int, str] = {}
    batch: str | None = None
    try:
        if hasattr(engine, "waits"):
            waits = {int(k): str(v) for k, v in (engine.waits(ref) or {}).items()}
        if hasattr(engine, "batch_wait"):
            batch = engine.batch_wait(ref)
    except (TubemillError, KeyError, OSError, ValueError):
        pass
    return waits, batch


def latest_result(engine: Any, s: BatchSummary, lines: int = 3) -> dict[str, Any] | None:
    """The batch's most recently finished item and the first lines of its transcript (or its video), for
    the page Start lands on: the first result shows there within a second of existing, no page change.

    Reads only the last few finished items (items are numbered in submit order; finishing order is close
    to it), so a 7,000-item batch costs the same as a small one every refresh."""
    done = int(s.counts.get("done", 0))
    if not done:
        return None
    try:
        recent = engine.items(s.id, status=["done"], offset=max(0, done - 20), limit=20)
    except (TubemillError, KeyError, OSError, ValueError):
        return None
    if not recent:
        return None
    item = max(recent, key=lambda it: (it.get("finished_at") or 0.0, it["n"]))
    out: dict[str, Any] = {"n": int(item["n"]), "title": str(item.get("title") or item.get("source") or ""),
                           "lines": [], "segments": 0, "video": None}
    wd = Path(item.get("workdir") or "")
    if item.get("workdir"):
        path = wd / "transcript.json"
        try:
            st = path.stat()
        except OSError:
            st = None
        if st is not None:
            out["segments"], first = _first_lines(str(path), st.st_mtime_ns, st.st_size, lines)
            out["lines"] = list(first)
        video = wd / "video.mp4"
        out["video"] = str(video) if video.exists() else None
    return out


@functools.lru_cache(maxsize=64)
def _first_lines(path: str, mtime_ns: int, size: int, lines: int) -> tuple[int, tuple[str, ...]]:
    """(segments, the first ``lines`` as "MM:SS  text") of a transcript file, parsed once per version: the
    Batches page asks every second, and an hour's transcript with word times is megabytes of JSON."""
    try:
        segs = json.loads(Path(path).read_text(encoding="utf-8")).get("segments") or []
    except (OSError, ValueError, AttributeError):
        return 0, ()
    return len(segs), tuple(f"{fmt_timestamp(float(x.get('start') or 0))}  {str(x.get('text') or '').strip()}"
                            for x in segs[:lines] if isinstance(x, dict))

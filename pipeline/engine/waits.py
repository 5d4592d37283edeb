"""Why each item left in a batch is not running now, in a few words, for pages, followers and the CLI.

Why: "0 running" beside pending items, with the reason only on the System page, leaves a
user guessing. The owner knows exactly where each item waits — a pool's queue (the
governor, busy workers), a site's download queue (the pacing of each account there), the
durability gate — so it words that once per queue and publishes the groups (a reason and
its items' numbers as ranges) to ``<home>/waits.json`` with the runtime, about once a
second. A follower reads that file; what the items record themselves (a paused batch, a
retry time, a parked item) is read from the items, so it holds with no engine running.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config.settings import ANY_SITE
from pipeline.engine.pacing import on_site
from pipeline.engine.sites import shown
from pipeline.errors import CorruptStateFile
from state.lock import read_owner
from state.models import BatchState, ItemStatus
from state.reader import find_summary, read_batch
from state.storage import atomic_write_bytes, read_json_file

if TYPE_CHECKING:
    from pipeline.engine.core import Engine
    from pipeline.engine.scheduler import BatchRun, Scheduler

WAITS_FILE = "waits.json"
LEFT = (ItemStatus.PENDING, ItemStatus.WAITING, ItemStatus.PARKED)
NEXT = "queued: next to start"
NO_ENGINE = "not running: no engine owns this home (start `tubemill app` or `tubemill run`)"

Groups = list[tuple[str, list[int]]]


def clock_time(t: float, now: float) -> str:
    """A moment as people read it: the time of day, with the date when it is not within a day."""
    return time.strftime("%H:%M:%S" if abs(t - now) < 86400 else "%Y-%m-%d %H:%M", time.localtime(t))


# ---------------------------------------------------------------------- the owner: one reason per queue
def queue_groups(sched: Scheduler, run: BatchRun, now: float) -> Groups:
    """Each queue of the batch that holds items, worded (the engine's lock is held)."""
    out: Groups = []
    for pool, heap in run.ready.items():
        if heap:
            out.append((pool_reason(sched, pool), [n for _, n in heap]))
    for site, heap in run.paced.items():
        if heap:
            out.append((site_reason(sched, run, site, now), [n for _, n in heap]))
    if run.gated:
        out.append(("saving: its finished stage is being written to disk", [n for _, n in run.gated]))
    due = [n for t, bid, n in sched.timers if bid == run.batch_id and t <= now]
    if due:
        out.append((NEXT, due))
    return out


def pool_reason(sched: Scheduler, pool: str) -> str:
    e = sched.e
    held = e.governor.hold_reason(pool)
    if held:
        return f"governor: {held}"
    size, busy = e.pool_sizes.get(pool, 0), sched.busy.get(pool, 0)
    return f"queued: workers busy ({pool} {busy}/{size})" if busy >= size else NEXT


def site_reason(sched: Scheduler, run: BatchRun, site: str, now: float) -> str:
    """Why the batch's downloads from ``site`` wait: the pool's hold, or the account there that is ready
    soonest (who, until when, and a cooldown's cause), or the net pool."""
    pacing = sched.e.pacing
    names = pacing.of(run.accounts)
    if pacing.accounts.held:
        return f"downloads held: {pacing.accounts.held}"
    if not pacing.accounts.enabled(names):
        return "no usable download account (all disabled)"
    soon = pacing.accounts.soonest(on_site(names, site), now)
    where = shown(site)
    if soon is None:
        there = "" if site == ANY_SITE else f" from {where}"
        return f"queued: {', '.join(names)} already downloading{there} (one download at a time per account)"
    name, state, until, why, _ = soon
    if state == "waiting":
        return f"pacing: account {name} on {where} until {clock_time(until, now)}"
    if state == "cooling down":
        return f"pacing: account {name} cooling down on {where} until {clock_time(until, now)}" + (
            f" ({why})" if why else "")
    return pool_reason(sched, "net")


def batch_held(groups: Groups) -> str | None:
    """The batch-level hold a page shows when nothing of it runs: the reason most of its items share."""
    counts = Counter({r: len(ns) for r, ns in groups if r != NEXT})
    return counts.most_common(1)[0][0] if counts else None


def publish(home: Path, snapshot: dict[str, Groups], now: float, last: bytes | None) -> bytes | None:
    """Write the groups of every running batch for followers when they changed; returns what is on disk."""
    body = json.dumps({bid: [[r, ranges(ns)] for r, ns in g] for bid, g in sorted(snapshot.items())},
                      sort_keys=True).encode()
    if body != last:
        try:
            atomic_write_bytes(Path(home) / WAITS_FILE, b'{"saved_at": %.3f, "batches": %s}' % (now, body),
                               durable=False)
        except OSError:
            return last
    return body


# ---------------------------------------------------------------------- items: owner and follower alike
def item_waits(items: Iterable[dict[str, Any]], header: dict[str, Any], groups: Groups, now: float,
               *, owner: bool = True) -> dict[int, str]:
    """One reason per pending, waiting or parked item: the batch paused, its queue's reason, parked, or its
    retry time; ``owner``: an engine owns the home (else nothing moves until one starts)."""
    queued = {n: reason for reason, ns in groups for n in ns}
    paused = paused_reason(header) if header.get("state") == BatchState.PAUSED else None
    out: dict[int, str] = {}
    for it in items:
        status, n = it.get("status"), int(it["n"])
        if status not in LEFT:
            continue
        due = it.get("next_attempt_at")
        if paused:
            out[n] = paused
        elif status == ItemStatus.PARKED:
            out[n] = f"parked: {(it.get('parked') or {}).get('reason') or 'held by a service'}"
        elif owner and n in queued:
            out[n] = queued[n]
        elif status == ItemStatus.WAITING and due and float(due) > now:
            out[n] = retry_reason(it, float(due), now)
        else:
            out[n] = NEXT if owner else NO_ENGINE
    return out


def paused_reason(header: dict[str, Any]) -> str:
    stop = header.get("stopped_by") or {}
    if stop.get("item") is not None:
        kind = (stop.get("error") or {}).get("type") or "an error"
        return f"paused: item {stop['item']} failed ({kind}) and the batch stops on errors"
    return "paused"


def retry_reason(item: dict[str, Any], due: float, now: float) -> str:
    at = clock_time(due, now)
    kind = (item.get("error") or {}).get("type")
    if kind == "RateLimited":
        return f"rate limited: retry at {at} (no attempt spent)"
    if kind == "DiskFull":
        return f"disk full: retry at {at} (no attempt spent)"
    if kind == "NotYetLive":
        return f"not live yet: waiting until {at}"
    return f"retry at {at} (attempt {int(item.get('attempts') or 0) + 1})"


def summarise(waits: dict[int, str], running: int) -> str | None:
    """The batch-level reason: None while something runs (or nothing is left), else the reasons most items
    share, with their counts when there are several."""
    if running or not waits:
        return None
    top = Counter(waits.values()).most_common()
    if len(top) == 1:
        return top[0][0]
    parts = [f"{r} ({c} item{'s' if c != 1 else ''})" for r, c in top[:2]]
    if len(top) > 2:
        parts.append(f"{len(top) - 2} other reason(s)")
    return "; ".join(parts)


def live(engine: Engine, ref: str) -> tuple[dict[int, str], str | None]:
    """The owner's reasons, from its scheduler now."""
    store = engine.store
    assert store is not None
    bid = store.resolve(ref)
    now = engine.clock.now()
    with engine.lock:
        run = engine.scheduler.runs.get(bid)
        groups = queue_groups(engine.scheduler, run, now) if run is not None else []
    waits = item_waits(store.items(bid, status=list(LEFT)), store.header(bid), groups, now)
    return waits, summarise(waits, store.summary(bid).counts.get("running", 0))


def from_files(home: Path, ref: str, now: float | None = None) -> tuple[dict[int, str], str | None]:
    """A follower's (or ``tubemill status``'s) reasons: the batch file plus the owner's published groups."""
    now = time.time() if now is None else now
    s = find_summary(home, ref)
    header, items = read_batch(home, s.id)
    owner = read_owner(home) is not None
    groups = read_groups(home).get(s.id, []) if owner else []
    waits = item_waits(items, header, groups, now, owner=owner)
    return waits, summarise(waits, s.counts.get("running", 0) if owner else 0)


def read_groups(home: Path) -> dict[str, Groups]:
    try:
        data = read_json_file(Path(home) / WAITS_FILE)
    except (CorruptStateFile, OSError):
        return {}
    batches = data.get("batches") if isinstance(data, dict) else None
    if not isinstance(batches, dict):
        return {}
    return {bid: [(str(r), expand(text)) for r, text in g] for bid, g in batches.items() if isinstance(g, list)}


# ---------------------------------------------------------------------- item numbers as ranges
def ranges(ns: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` as ``"1-3,7"``: a queue of thousands of items stays a few bytes."""
    out: list[str] = []
    run: list[int] = []
    for n in sorted(set(ns)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def expand(text: str) -> list[int]:
    out: list[int] = []
    for part in str(text).split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            out.extend(range(int(lo), int(hi if hi.strip().isdigit() else lo) + 1))
    return out

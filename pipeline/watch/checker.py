"""One check of one subscription: list its source, keep what it has not seen, add that to its rolling batch.

The rolling batch is one per subscription **per day** (``watch <name> 2026-12-02``, UTC): a batch
per subscription alone would grow for ever (its manifest, ZIP and PDF rewritten whole at every
new video, a "batch done" notice that comes once), while one batch per day for all subscriptions
would mix recipes and options. Per subscription per day keeps each batch's options the
subscription's, its outputs a day's worth, and gives one "done" notice per day with news.

Order matters for "processed once": the items are submitted first (``resume=True``: an id already
in the day's batch is not added twice), then the ids go to the seen file. A crash between the two
makes the next check submit the same ids again, which the batch (and, for the transcribe recipe,
the library of finished videos) absorbs; the other order would lose them.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.recipes.transcribe.source_entries import Entry, Filters, apply_filters
from pipeline.watch import subs as store
from pipeline.watch.sources import Listing, list_source

log = logging.getLogger("tubemill.watch")

FILTER_KEYS = ("min_duration", "max_duration", "match_title")


def batch_name(sub: dict[str, Any], now: float) -> str:
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    return f"watch {sub['name']} {sub['id']} {day}"


def _library_ids(home: Path, recipe: str) -> set[str]:
    """Ids this home already finished (the transcribe recipe's library), so no batch does them again."""
    if recipe != "transcribe":
        return set()
    from pipeline.recipes.transcribe import library

    return set(library.load(home))


def filters_of(sub: dict[str, Any]) -> Filters:
    f = sub.get("filters") or {}
    return Filters(**{k: f[k] for k in FILTER_KEYS if f.get(k) is not None})


def new_entries(home: Path, sub: dict[str, Any], listing: Listing) -> tuple[list[Entry], list[str]]:
    """(entries to submit, oldest first; every listed id to remember). The first check of a subscription
    keeps only the ``backfill`` newest of what exists (a feed lists newest first; a folder's files count
    as new only with a backfill)."""
    seen = store.seen_ids(home, sub["id"]) | _library_ids(home, sub["recipe"])
    fresh = [e for e in dict((e.id, e) for e in listing.entries).values() if e.id not in seen]
    if not sub.get("baselined") and sub["kind"] != "folder":
        fresh = fresh[: sub.get("backfill", 0)]
    kept = apply_filters(fresh, filters_of(sub))
    return list(reversed(kept)), [e.id for e in listing.entries]


def check(engine: Any, sub: dict[str, Any], *, stable_s: float = 5.0, now: float | None = None) -> dict[str, Any]:
    """Check ``sub`` once through ``engine`` (an owner or a follower: ``submit`` reaches the owner either way).

    Returns what the check found (new, listed, requests, via, waiting, batch, state) or raises the
    listing's error (the service records it and backs off). ``state`` is the new stored source state.
    """
    home = Path(engine.home)
    now = time.time() if now is None else now
    state = dict(sub.get("state") or {})
    if sub["kind"] == "folder" and not sub.get("baselined") and not sub.get("backfill"):
        state["baseline"] = True
    listing = list_source(sub, state, stable_s=stable_s, now=now)
    if state.pop("baseline", None):  # first look at a folder: what is there now is old
        listing.entries = []
    fresh, ids = new_entries(home, sub, listing)
    name = sub.get("batch")
    if fresh:
        name = batch_name(sub, now)
        options = {**(sub.get("options") or {}), "subscription": sub["id"]}
        engine.submit(name, [e.to_item() for e in fresh], recipe=sub["recipe"], options=options, resume=True)
        _notify(home, sub, name, fresh)
    store.mark_seen(home, sub["id"], ids)
    log.info("watch %s: %d listed, %d new (%s)", sub["source"], len(listing.entries), len(fresh), listing.via)
    return {"new": len(fresh), "listed": len(listing.entries), "requests": listing.requests, "via": listing.via,
            "waiting": listing.waiting, "batch": name, "state": state, "note": listing.note}


def _notify(home: Path, sub: dict[str, Any], batch: str, fresh: list[Entry]) -> None:
    try:
        from pipeline import notify  # type: ignore[attr-defined]  # written by another part; absent is fine
    except ImportError:
        return
    try:
        notify.emit(home, "subscription.new_items", {
            "subscription": sub["id"], "source": sub["source"], "batch": batch, "count": len(fresh),
            "items": [{"id": e.id, "title": e.title, "url": e.url or e.local_path} for e in fresh[:20]],
        })  # fmt: skip
    except Exception:  # emit never raises by contract; a bug there must still not stop the watcher
        log.exception("notification for %s failed", sub["id"])

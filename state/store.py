"""The batch store: in-memory truth for the owning engine, group-committed to TinyDB.

Layout of a home::

    <home>/index.json          small: one summary per batch (counts, state, ETA) for readers
    <home>/batches/<id>.json   one TinyDB file per batch: table "batch" (header), table "items"
    <home>/batches/corrupt/    files that could not be read, moved aside, never overwritten

Why this shape: TinyDB rewrites the whole file on every write call (144 ms per update
at 7,000 items, NOTES), so transitions are queued in memory and written by one writer
thread in one storage write per flush, at most ``flush_delay`` seconds after the first
change. One file per batch keeps each rewrite proportional to one batch.
``durable_seq`` tells the engine which transitions are on disk, so it can hold an
item's next stage until its previous stage's completion is durable.

The file is a TinyDB database (tables "batch" and "items", string document ids), written
through our TinyDB storage (:class:`AtomicJSONStorage`). Item records are copy-on-write:
a change replaces an item's dict instead of mutating it, so a flush snapshots the batch
by copying pointers under the lock and serializes outside it. (TinyDB's table layer
would keep a second, cached copy of every item: for a 7,000-item batch that copy was
most of the ~3 KB per finished item a long run appeared to keep.)
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline.errors import BatchExists, UnknownBatch
from state.models import (
    LEGACY_STATUS,
    SCHEMA_VERSION,
    BatchState,
    BatchSummary,
    ItemStatus,
    check_transition,
)
from state.records import (
    BATCHES_DIR,
    INDEX_NAME,
    ITEM_FIELDS,
    _Batch,
    _count_in,
    _document,
    _stats_in,
    batch_file_problem,
    move_aside,
    new_item,
)
from state.storage import (
    AtomicJSONStorage,
    CorruptStateFile,
    atomic_write_bytes,
    clean_stray_temps,
    read_json_file,
)

log = logging.getLogger("tubemill.state")



class Store:
    """Owner-side store. Thread-safe: the scheduler, workers and UI threads share one.

    About 380 lines as one class on purpose: every method holds the same lock and keeps the same
    invariants (copy-on-write items, counters beside them, one writer thread); the pure parts are
    in :mod:`state.records`.
    """

    def __init__(
        self,
        home: Path,
        *,
        flush_delay: float = 0.25,
        durable: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.home = Path(home)
        self.dir = self.home / BATCHES_DIR
        self.flush_delay = flush_delay
        self.durable = durable
        self.clock = clock
        self.messages: list[str] = []
        self.last_flush_error: str | None = None
        self.flushes = 0
        self.transitions = 0
        self.index_bytes_written = 0
        self._lock = threading.RLock()
        self._io_lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._batches: dict[str, _Batch] = {}
        self._by_name: dict[str, str] = {}
        self._dirty_since: float | None = None
        self._urgent = False
        self._closing = False
        self._last_flush_end = 0.0
        self._last_flush_cost = 0.0
        self._flush_gen = 0
        self._writer: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> list[str]:
        """Load every batch, move unreadable files aside, recover items a dead process left running."""
        self.dir.mkdir(parents=True, exist_ok=True)
        clean_stray_temps(self.dir)
        clean_stray_temps(self.home)
        for path in sorted(self.dir.glob("*.json")):
            self._load_batch_file(path)
        index_path = self.home / INDEX_NAME
        try:
            read_json_file(index_path)
        except CorruptStateFile as exc:
            dest = move_aside(index_path, exc.reason)
            self.messages.append(f"index {index_path} was unreadable ({exc.reason}); moved to {dest}, rebuilt")
        with self._lock:
            rows = [self._index_row(b) for b in self._batches.values()]
        self._write_rows(rows)
        self._writer = threading.Thread(target=self._writer_loop, name="tubemill-store-writer", daemon=True)
        self._writer.start()
        return list(self.messages)

    def _load_batch_file(self, path: Path) -> None:
        try:
            data = read_json_file(path)
            problem = batch_file_problem(data)
        except CorruptStateFile as exc:
            data, problem = None, exc.reason
        if problem:
            dest = move_aside(path, problem)
            self.messages.append(f"state file {path} is unreadable ({problem}); moved to {dest}")
            return
        assert data is not None
        storage = AtomicJSONStorage(path, durable=self.durable, cache=False)
        header = dict(data["batch"]["1"])
        items = {int(k): dict(v) for k, v in data.get("items", {}).items()}
        b = _Batch(header=header, items=items, storage=storage)
        recovered = 0
        for item in items.values():
            if item["status"] in LEGACY_STATUS:  # a status an older version wrote, under its new name
                status, parked = LEGACY_STATUS[item["status"]]
                item["status"], item["parked"] = status, dict(parked)
                b.dirty.add(item["n"])
            if item["status"] == ItemStatus.RUNNING.value:
                # The process that ran it died: the attempt was not the item's fault.
                item["status"] = ItemStatus.PENDING.value
                item["progress"] = 0.0
                b.dirty.add(item["n"])
                recovered += 1
            _count_in(b, item, +1)
            _stats_in(b, item.get("timings") or {})
        if b.dirty:
            with self._lock:
                self._mark_dirty()
        if recovered:
            self.messages.append(f"batch {header['name']!r}: {recovered} interrupted item(s) back to pending")
        with self._lock:
            self._batches[b.id] = b
            self._by_name[header["name"]] = b.id

    def close(self) -> None:
        """Flush everything and stop the writer."""
        with self._lock:
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout=30)
            self._writer = None
        self._flush_once()
        for b in self._batches.values():
            b.storage.close()

    def add_listener(self, fn: Callable[[], None]) -> None:
        """Called (from the writer thread) after each flush, so the engine can release gated items."""
        self._listeners.append(fn)

    # ------------------------------------------------------------------ batches
    def create_batch(
        self,
        name: str,
        recipe: list[str],
        sources: Iterable[str | dict[str, Any]],
        *,
        options: dict[str, Any] | None = None,
        output_dir: str = "",
    ) -> str:
        """Create a batch and make it durable before returning: a new batch is never lost."""
        # Lock order everywhere: _io_lock before _lock (the writer thread flushes that way).
        with self._io_lock:
            with self._lock:
                if name in self._by_name:
                    raise BatchExists(f"a batch named {name!r} already exists")
            batch_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
            header = {
                "schema": SCHEMA_VERSION,
                "id": batch_id,
                "name": name,
                "recipe": list(recipe),
                "options": dict(options or {}),
                "state": BatchState.ACTIVE.value,
                "created_at": self.clock(),
                "finished_at": None,
                "output_dir": output_dir,
            }
            path = self.dir / f"{batch_id}.json"
            b = _Batch(header=header, items={}, storage=AtomicJSONStorage(path, durable=self.durable, cache=False))
            for i, src in enumerate(sources, start=1):
                item = new_item(i, src) if isinstance(src, str) else new_item(i, **src)
                b.items[i] = item
                _count_in(b, item, +1)
            b.storage.write(_document(dict(header), b.items))
            with self._lock:
                self._batches[batch_id] = b
                self._by_name[name] = batch_id
                rows = [self._index_row(x) for x in self._batches.values()]
            # Readers in other processes find a new batch by name at once.
            self._write_rows(rows)
            return batch_id

    def add_items(self, batch_id: str, sources: Iterable[str | dict[str, Any]]) -> list[int]:
        """Append items (a resumed batch given new lines); durable on the next flush."""
        with self._lock:
            b = self._get(batch_id)
            start = max(b.items, default=0) + 1
            added = []
            for i, src in enumerate(sources, start=start):
                item = new_item(i, src) if isinstance(src, str) else new_item(i, **src)
                b.items[i] = item
                b.new.add(i)
                _count_in(b, item, +1)
                added.append(i)
            if added:
                if b.header["state"] == BatchState.DONE.value:
                    b.header.update(state=BatchState.ACTIVE.value, finished_at=None)
                    b.header_dirty = True
                b.seq += 1
                self._mark_dirty()
            return added

    def resolve(self, ref: str) -> str:
        """A batch id from a name or an id (or a unique id prefix)."""
        with self._lock:
            if ref in self._batches:
                return ref
            if ref in self._by_name:
                return self._by_name[ref]
            matches = [bid for bid in self._batches if bid.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        raise UnknownBatch(ref)

    def batch_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._batches, key=lambda bid: self._batches[bid].header["created_at"])

    def header(self, batch_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._get(batch_id).header)

    def set_batch(self, batch_id: str, **fields: Any) -> None:
        """Change header fields (state, finished_at, options); durable on the next flush."""
        with self._lock:
            b = self._get(batch_id)
            if "state" in fields:
                fields["state"] = BatchState(fields["state"]).value
            b.header.update(fields)
            b.header_dirty = True
            b.seq += 1
            self._mark_dirty()

    def set_runtime(self, batch_id: str, **fields: Any) -> None:
        """Engine-computed, not persisted per item: ETA, active steps, governor hold."""
        with self._lock:
            b = self._batches.get(batch_id)
            if b is not None and b.runtime != {**b.runtime, **fields}:
                b.runtime.update(fields)
                self._mark_dirty()

    def summary(self, batch_id: str) -> BatchSummary:
        with self._lock:
            return self._summary(self._get(batch_id))

    def summaries(self) -> list[BatchSummary]:
        with self._lock:
            return [self._summary(self._batches[bid]) for bid in self.batch_ids()]

    def remaining_by_stage(self, batch_id: str) -> dict[int, int]:
        with self._lock:
            return {k: v for k, v in self._get(batch_id).at_stage.items() if v}

    # ------------------------------------------------------------------ items
    def item(self, batch_id: str, n: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._get(batch_id).items[n])

    def items(
        self,
        batch_id: str,
        *,
        status: Iterable[str] | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Copies of items in order, optionally filtered by status and paged."""
        wanted = {ItemStatus(s).value for s in status} if status else None
        with self._lock:
            b = self._get(batch_id)
            out = []
            skipped = 0
            for n in sorted(b.items):
                item = b.items[n]
                if wanted and item["status"] not in wanted:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(dict(item))
                if limit is not None and len(out) >= limit:
                    break
            return out

    def item_numbers(self, batch_id: str, status: Iterable[str]) -> list[int]:
        wanted = {ItemStatus(s).value for s in status}
        with self._lock:
            b = self._get(batch_id)
            return [n for n in sorted(b.items) if b.items[n]["status"] in wanted]

    def transition(self, batch_id: str, n: int, status: ItemStatus | str, **fields: Any) -> int:
        """The one writer of item status: validates the move, updates counts, returns the change's seq."""
        status = ItemStatus(status)
        bad = set(fields) - ITEM_FIELDS
        if bad:
            raise ValueError(f"unknown item fields: {sorted(bad)}")
        with self._lock:
            b = self._get(batch_id)
            item = b.items[n]
            check_transition(item["status"], status)
            old_timings = item.get("timings") or {}
            _count_in(b, item, -1)
            item = b.items[n] = {**item, **fields, "status": status.value}  # copy-on-write (see the module doc)
            _count_in(b, item, +1)
            if "timings" in fields:
                skip = set(item.get("unmeasured") or ())
                _stats_in(b, {k: v for k, v in fields["timings"].items() if k not in old_timings and k not in skip},
                          item.get("duration"))
            b.dirty.add(n)
            b.seq += 1
            self.transitions += 1
            self._mark_dirty()
            return b.seq

    def update_item(self, batch_id: str, n: int, **fields: Any) -> None:
        """Non-status fields (progress, meta); coalesced into the next flush, no seq bump."""
        bad = set(fields) - ITEM_FIELDS
        if bad:
            raise ValueError(f"unknown item fields: {sorted(bad)}")
        with self._lock:
            b = self._get(batch_id)
            b.items[n] = {**b.items[n], **fields}
            b.dirty.add(n)
            self._mark_dirty()

    def reopen_items(self, batch_id: str, statuses: Iterable[str]) -> int:
        """Failed/cancelled items back to pending with a fresh attempt budget (retry failed)."""
        wanted = {ItemStatus(s).value for s in statuses}
        with self._lock:
            b = self._get(batch_id)
            count = 0
            for n, item in list(b.items.items()):
                if item["status"] in wanted:
                    self.transition(
                        batch_id, n, ItemStatus.PENDING, attempts=0, next_attempt_at=None, error=None, progress=0.0
                    )
                    count += 1
            return count

    def reopen_at_stage(self, batch_id: str, numbers: Iterable[int], stage_index: int) -> int:
        """Done items back to pending at ``stage_index`` (an enrichment asked again); earlier stages stay done."""
        with self._lock:
            b = self._get(batch_id)
            count = 0
            for n in numbers:
                if b.items[n]["status"] != ItemStatus.DONE.value:
                    continue
                self.transition(batch_id, n, ItemStatus.PENDING, stage_index=stage_index, stage=None, attempts=0,
                                next_attempt_at=None, error=None, progress=0.0, finished_at=None)
                count += 1
            return count

    def remove_item(self, batch_id: str, n: int) -> dict[str, Any]:
        """Take an item out of its batch (a user's "remove"); returns the record. The batch file is written
        whole on each flush, so the item is gone from disk with the next one; its files are not touched."""
        with self._lock:
            b = self._get(batch_id)
            item = b.items.pop(n)
            _count_in(b, item, -1)
            b.dirty.discard(n)
            b.new.discard(n)
            b.header_dirty = True
            b.seq += 1
            self._mark_dirty()
            return item

    # ------------------------------------------------------------------ durability
    def durable_seq(self, batch_id: str) -> int:
        with self._lock:
            return self._get(batch_id).durable_seq

    def seq(self, batch_id: str) -> int:
        with self._lock:
            return self._get(batch_id).seq

    def request_flush(self) -> None:
        """Flush now rather than at the end of the delay (something is waiting on durability)."""
        with self._lock:
            if self._dirty_since is not None:
                self._urgent = True
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Block until everything changed so far is on disk."""
        if self._writer is None:
            self._flush_once()
            return
        with self._lock:
            if self._dirty_since is None:
                return
            target = self._flush_gen + 1
            self._urgent = True
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while self._flush_gen < target and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("store flush timed out")
                self._cond.wait(left)
            if self.last_flush_error:
                raise OSError(self.last_flush_error)

    def _mark_dirty(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
            self._cond.notify_all()

    def _writer_loop(self) -> None:
        backoff = 0.0
        while True:
            with self._lock:
                while self._dirty_since is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                deadline = self._dirty_since + self.flush_delay + backoff
                while not self._closing:
                    target = deadline
                    if self._urgent:
                        # Early, but never spending more than ~20% of the time writing: a big batch's
                        # flush costs ~100 ms, a small one's ~1 ms.
                        target = min(deadline, self._last_flush_end + 4 * self._last_flush_cost)
                    left = target - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closing:
                    return
            ok = self._flush_once()
            backoff = 0.0 if ok else min(5.0, backoff * 2 + 0.5)

    def _flush_once(self) -> bool:
        """Apply every queued change: per dirty batch one TinyDB update call, then the index."""
        t0 = time.monotonic()
        try:
            return self._flush_work()
        finally:
            self._last_flush_end = time.monotonic()
            self._last_flush_cost = self._last_flush_end - t0

    def _flush_work(self) -> bool:
        """Write every batch with queued changes (one storage write each), then the index."""
        with self._io_lock:
            with self._lock:
                self._urgent = False
                if self._dirty_since is None:
                    self._flush_gen += 1
                    self._cond.notify_all()
                    return True
                self._dirty_since = None
                work = []
                for b in self._batches.values():
                    if not (b.dirty or b.new or b.header_dirty):
                        continue
                    # Pointers only: items are replaced, not mutated, so this is a consistent snapshot.
                    work.append((b, dict(b.header), dict(b.items), set(b.dirty), set(b.new), b.header_dirty,
                                 b.seq))
                    b.dirty, b.new, b.header_dirty = set(), set(), False
                summaries = [self._index_row(b) for b in self._batches.values()]
            try:
                for b, header, items, _d, _n, _h, _seq in work:
                    b.storage.write(_document(header, items))
                self._write_rows(summaries)
            except OSError as exc:
                log.error("could not write state (%s); will retry", exc)
                with self._lock:
                    self.last_flush_error = str(exc)
                    for b, _header, _items, dirty, new, header_dirty, _seq in work:
                        b.dirty |= dirty
                        b.new |= new
                        b.header_dirty |= header_dirty
                    self._mark_dirty()
                return False
            with self._lock:
                self.last_flush_error = None
                for b, *_rest, seq in work:
                    b.durable_seq = max(b.durable_seq, seq)
                self.flushes += 1
                self._flush_gen += 1
                self._cond.notify_all()
        for fn in self._listeners:
            fn()
        return True

    # ------------------------------------------------------------------ index
    def _index_row(self, b: _Batch) -> dict[str, Any]:
        row = self._summary(b).to_dict()
        row["file"] = f"{BATCHES_DIR}/{b.id}.json"
        return row

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        """The index is derived (rebuilt from batch files at open) and small: plain JSON, replaced whole."""
        payload = json.dumps({"schema": SCHEMA_VERSION, "batches": rows}, ensure_ascii=False).encode()
        self.index_bytes_written += atomic_write_bytes(self.home / INDEX_NAME, payload, durable=self.durable)

    def bytes_written(self) -> int:
        """Every byte this store has written to disk (batch files and index): what group commit saves."""
        with self._lock:
            return self.index_bytes_written + sum(b.storage.bytes_written for b in self._batches.values())

    def _summary(self, b: _Batch) -> BatchSummary:
        h = b.header
        return BatchSummary(
            id=h["id"],
            name=h["name"],
            recipe=list(h["recipe"]),
            state=h["state"],
            counts=dict(b.counts),
            total=len(b.items),
            created_at=h["created_at"],
            finished_at=h.get("finished_at"),
            output_dir=h.get("output_dir", ""),
            options=dict(h.get("options", {})),
            eta_s=b.runtime.get("eta_s"),
            active=list(b.runtime.get("active", [])),
            stage_stats={k: dict(v) for k, v in b.stage_stats.items()},
            held=b.runtime.get("held"),
        )

    def _get(self, batch_id: str) -> _Batch:
        try:
            return self._batches[batch_id]
        except KeyError:
            raise UnknownBatch(batch_id) from None

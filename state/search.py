"""Full-text search over every batch's transcripts: one SQLite FTS5 file, ``<home>/search.sqlite``.

Why it is built this way (``bench/search.py`` measures it at 7,000 one-hour items):

- **Rows are chunks of consecutive segments (≤ 60 s), not segments**: a one-hour transcript is ~60 rows, not
  ~600, so a common word matches ten times fewer rows (bm25 scores every match) and per-row overhead shrinks.
  A hit still starts at the *segment* holding the match: a chunk's text has one segment a line and keeps
  their start offsets (``starts``), so the first match marker's line names the segment.
- **Rowids encode the item** (``item_key << 20 | chunk``): replacing or removing an item deletes one rowid
  range, which FTS5 seeks. **The batch is an indexed token** (``b<key>``, weight 0 in bm25): a batch filter
  is a doclist intersection inside FTS5, not a filter over every match.
- **Ranking is bounded**: when :data:`RANK_CAP` chunks match in the newest eighth of the items, bm25 ranks
  the newest ``RANK_CAP`` matches (``Hits.capped`` says so); otherwise the ranking is exact over all.
- **User text never reaches the query syntax**: each term becomes a double-quoted FTS5 string, ``word*`` a
  quoted prefix, ``"a b"`` a phrase; ``AND``, ``NEAR(``, ``-``, ``:`` are searched as words or dropped.
  Three-letter prefixes, the shortest allowed, have their own index (``prefix='3'``): no merging of the
  lists of every word they start.
- **WAL mode**: readers in other processes never block on the writer nor see half a write; a crash mid-write
  leaves the last commit. One lock per process for writes; SQLite's lock and a busy timeout between them.
- **A missing or damaged file is rebuilt** from the batch files, the bad one moved to ``<home>/corrupt/``,
  and the caller told (``Hits.messages``), never a crash.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from state.reader import read_batch, read_summaries
from state.records import move_aside
from state.search_query import (
    ITEM_BITS,
    Hit,
    Hits,
    IndexStats,
    chunk_segments,
    fts_query,
    marked,
    pieces,
    segment_time,
    transcript_segments,
)

__all__ = ["Hit", "Hits", "IndexStats", "Indexer", "bulk", "chunk_segments", "fts_query", "index_item",
           "index_path", "index_stats", "reindex", "remove_item", "search", "transcript_segments"]

log = logging.getLogger("tubemill.state")

INDEX_NAME = "search.sqlite"
SCHEMA_VERSION = "1"
RANK_CAP = 5_000  # queries matching more chunks are ranked among the newest RANK_CAP
PROBE_SHARE = 8  # ... when that many match in the newest 1/PROBE_SHARE of the items
BUSY_S = 15.0
WAL_LIMIT = 64 << 20
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)",
    "CREATE TABLE IF NOT EXISTS batches(key INTEGER PRIMARY KEY, batch_id TEXT UNIQUE NOT NULL, name TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items(key INTEGER PRIMARY KEY, batch INTEGER NOT NULL, n INTEGER NOT NULL, "
    "item_id TEXT, title TEXT, source TEXT, workdir TEXT, language TEXT, segments INTEGER, chunks INTEGER, "
    "indexed_at REAL, UNIQUE(batch, n))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(text, batch, start UNINDEXED, end UNINDEXED, "
    "starts UNINDEXED, tokenize='unicode61 remove_diacritics 2', prefix='3')",
)
_write_locks: dict[str, threading.Lock] = {}
_anchors: dict[str, tuple[tuple[int, int], sqlite3.Connection]] = {}
_locks_guard = threading.Lock()


# ---------------------------------------------------------------------- the file
def index_path(home: Path | str) -> Path:
    return Path(home) / INDEX_NAME


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _write_locks.setdefault(str(path.resolve()), threading.Lock())


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    """Damage (not a database, malformed, a schema we do not know), as opposed to a busy or full disk."""
    return (getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
            or not isinstance(exc, sqlite3.OperationalError) or "no such table" in str(exc))


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_S, isolation_level=None, check_same_thread=False)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"journal_size_limit={WAL_LIMIT}"):
            conn.execute(f"PRAGMA {pragma}")  # the size limit: a bulk load's WAL shrinks back after it
        version = None
        try:
            version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc) or conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise
        if version is None:
            with _lock_for(path):
                conn.execute("BEGIN IMMEDIATE")
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute("INSERT OR IGNORE INTO meta VALUES('schema', ?)", (SCHEMA_VERSION,))
                conn.execute("INSERT INTO chunks(chunks, rank) VALUES('rank', 'bm25(1.0, 0.0)')")
                conn.execute("COMMIT")
        elif version[0] != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"search index schema {version[0]}, this Tubemill reads {SCHEMA_VERSION}")
        return conn
    except BaseException:
        conn.close()
        raise


def _move_aside(path: Path, reason: str) -> str:  # the WAL goes too: replayed onto a fresh file it would corrupt it
    dest = move_aside(path, reason) if path.exists() else None
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.replace(dest.with_name(dest.name + suffix)) if dest is not None else side.unlink()
    return f"the search index {path} was unreadable ({reason}); moved to {dest}, rebuilt from the batches"


def _anchor(path: Path) -> None:
    """Hold one idle connection per index file open in this process: when the last connection to a WAL file
    closes, SQLite deletes the WAL and the next open (each search) makes it again, 10-15 ms a query. A file
    replaced since (moved aside, rebuilt) gets a new anchor, found by its inode."""
    st = path.stat()
    key, ident = str(path.resolve()), (st.st_dev, st.st_ino)
    with _locks_guard:
        old = _anchors.get(key)
        if old is not None and old[0] == ident:
            return
        conn = sqlite3.connect(path, timeout=BUSY_S, check_same_thread=False)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL and its index
        _anchors[key] = (ident, conn)
    if old is not None:
        old[1].close()


@contextmanager
def _opened(home: Path | str, messages: list[str], build: bool = True) -> Iterator[sqlite3.Connection]:
    """A connection to a usable index: made (and filled from the batches) when missing, rebuilt when damaged."""
    path = index_path(home)
    try:
        conn = _connect(path)
    except sqlite3.DatabaseError as exc:
        if not _is_corrupt(exc):
            raise
        messages.append(_move_aside(path, str(exc)))
        conn = _connect(path)
    try:
        # "built" is written when a whole build commits: a first build that died half way runs again
        if build and conn.execute("SELECT 1 FROM meta WHERE key='built'").fetchone() is None:
            stats = _reindex(conn, Path(home))
            if not messages:
                messages.append(f"no search index yet: built {path} from {stats.items} item(s)")
        _anchor(path)
        yield conn
    finally:
        conn.close()


# ---------------------------------------------------------------------- writing
class Indexer:
    """Writes items into the index, many per transaction (reindex, the benchmark); one writer per process."""

    def __init__(self, conn: sqlite3.Connection, path: Path, group: int = 50) -> None:
        self.conn, self.path, self.group = conn, path, group
        self._pending = 0
        self._lock = _lock_for(path)

    def __enter__(self) -> Indexer:
        self._lock.acquire()
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self._lock.release()

    def _tick(self) -> None:
        self._pending += 1
        if self._pending >= self.group:
            self.conn.execute("COMMIT")
            self.conn.execute("BEGIN IMMEDIATE")
            self._pending = 0

    def _batch_key(self, batch_id: str, name: str) -> int:
        row = self.conn.execute("INSERT INTO batches(batch_id, name) VALUES(?, ?) ON CONFLICT(batch_id) "
                                "DO UPDATE SET name=excluded.name RETURNING key", (batch_id, name)).fetchone()
        return int(row[0])

    def add(self, *, batch_id: str, batch_name: str, n: int, item_id: str | None, title: str | None,
            source: str, workdir: str | Path, segments: Iterable[dict[str, Any]], language: str | None = None) -> int:
        """Replace the item's rows with its transcript's chunks; returns how many chunks it has now."""
        segs = list(segments)
        chunks = chunk_segments(segs)[: (1 << ITEM_BITS) - 1]
        bkey = self._batch_key(batch_id, batch_name)
        key = int(self.conn.execute(
            "INSERT INTO items(batch, n, item_id, title, source, workdir, language, segments, chunks, indexed_at) "
            "VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(batch, n) DO UPDATE SET item_id=excluded.item_id, "
            "title=excluded.title, source=excluded.source, workdir=excluded.workdir, language=excluded.language, "
            "segments=excluded.segments, chunks=excluded.chunks, indexed_at=excluded.indexed_at RETURNING key",
            (bkey, n, item_id, title or source, source, str(workdir), language, len(segs), len(chunks),
             time.time())).fetchone()[0])
        self._delete_rows(key)
        base = key << ITEM_BITS
        self.conn.executemany(
            "INSERT INTO chunks(rowid, text, batch, start, end, starts) VALUES(?,?,?,?,?,?)",
            ((base + i, text, f"b{bkey}", start, end, " ".join(str(round((s - start) * 10)) for s in starts))
             for i, (text, start, end, starts) in enumerate(chunks)))
        self._tick()
        return len(chunks)

    def _delete_rows(self, key: int) -> None:
        base = key << ITEM_BITS
        self.conn.execute("DELETE FROM chunks WHERE rowid >= ? AND rowid < ?", (base, base + (1 << ITEM_BITS)))

    def remove(self, batch_id: str, n: int) -> bool:
        row = self.conn.execute("SELECT i.key FROM items i JOIN batches b ON b.key = i.batch "
                                "WHERE b.batch_id = ? AND i.n = ?", (batch_id, n)).fetchone()
        if row is not None:
            self._delete_rows(int(row[0]))
            self.conn.execute("DELETE FROM items WHERE key = ?", (row[0],))
            self._tick()
        return row is not None

    def optimize(self) -> None:
        """Merge FTS5's segments into one b-tree: smaller and faster to query, after a bulk load."""
        self.conn.execute("INSERT INTO chunks(chunks) VALUES('optimize')")


@contextmanager
def bulk(home: Path | str, group: int = 200) -> Iterator[Indexer]:
    """An :class:`Indexer` committing every ``group`` items, for loading many at once (reindex, the benchmark)."""
    messages: list[str] = []
    with _opened(home, messages) as conn:
        with Indexer(conn, index_path(home), group=group) as ix:
            yield ix
        _checkpoint(conn)
    for m in messages:
        log.info("%s", m)


def index_item(home: Path | str, *, batch_id: str, batch_name: str, n: int, item_id: str | None, title: str | None,
               source: str, workdir: str | Path, segments: Iterable[dict[str, Any]],
               language: str | None = None) -> int:
    """Index (or re-index: idempotent) one item's transcript segments; returns its number of chunks."""
    messages: list[str] = []
    with _opened(home, messages) as conn, Indexer(conn, index_path(home)) as ix:
        count = ix.add(batch_id=batch_id, batch_name=batch_name, n=n, item_id=item_id, title=title, source=source,
                       workdir=workdir, segments=segments, language=language)
    for m in messages:
        log.info("%s", m)
    return count


def remove_item(home: Path | str, batch_id: str, n: int) -> bool:
    """Take one item out of the index (it left its batch); ``False`` when it was not there (or no index is)."""
    if not index_path(home).exists():
        return False  # nothing to take out of, and a control action must not start a whole build
    with _opened(home, []) as conn, Indexer(conn, index_path(home)) as ix:
        return ix.remove(batch_id, n)


def _reindex(conn: sqlite3.Connection, home: Path) -> IndexStats:
    t0 = time.perf_counter()
    stats = IndexStats(path=str(index_path(home)))
    seen: set[tuple[str, int]] = set()
    with Indexer(conn, index_path(home)) as ix:
        for summary in read_summaries(home):
            try:
                _, items = read_batch(home, summary.id)
            except Exception as exc:  # noqa: BLE001 - a torn or corrupt batch file: skip it, say so
                stats.messages.append(f"batch {summary.name}: not read ({exc})")
                continue
            for it in items:
                found = transcript_segments(it["workdir"]) if it.get("workdir") else None
                if found is None:
                    stats.skipped += 1 if it.get("workdir") else 0
                    continue
                segs, lang = found
                meta = it.get("meta") or {}
                stats.chunks += ix.add(batch_id=summary.id, batch_name=summary.name, n=it["n"], item_id=it.get("id"),
                                       title=it.get("title") or meta.get("title"), source=it["source"],
                                       workdir=it["workdir"], segments=segs, language=meta.get("language") or lang)
                stats.items += 1
                stats.segments += len(segs)
                seen.add((summary.id, it["n"]))
        stale = [r for r in conn.execute("SELECT b.batch_id, i.n FROM items i JOIN batches b ON b.key = i.batch")
                 if (r[0], r[1]) not in seen]
        for batch_id, n in stale:
            ix.remove(batch_id, n)
        stats.removed = len(stale)
        conn.execute("DELETE FROM batches WHERE key NOT IN (SELECT DISTINCT batch FROM items)")
        ix.optimize()
        conn.execute("INSERT OR REPLACE INTO meta VALUES('built', ?)", (str(time.time()),))
    stats.batches = conn.execute("SELECT count(*) FROM batches").fetchone()[0]
    _checkpoint(conn)
    stats.bytes = _size(index_path(home))
    stats.seconds = round(time.perf_counter() - t0, 3)
    return stats


def reindex(home: Path | str) -> IndexStats:
    """Rebuild from every batch's item folders (``transcript.json``): items gone from the batches leave, the
    rest are replaced. The index stays searchable throughout (items are swapped in committed groups)."""
    messages: list[str] = []
    with _opened(home, messages, build=False) as conn:
        stats = _reindex(conn, Path(home))
    stats.messages = messages + stats.messages
    return stats


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Fold the WAL into the file and truncate it (after a bulk load it is as big as what was written)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:
        pass  # busy: the next automatic checkpoint does it


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def index_stats(home: Path | str) -> IndexStats:
    """What the index holds and its size on disk (the file and its write-ahead log)."""
    messages: list[str] = []
    with _opened(home, messages) as conn:
        items, segs, chunks, batches = conn.execute("SELECT count(*), coalesce(sum(segments), 0), coalesce(sum("
                                                    "chunks), 0), (SELECT count(*) FROM batches) FROM items").fetchone()
    path = index_path(home)
    return IndexStats(items=items, chunks=chunks, segments=segs, batches=batches, bytes=_size(path), path=str(path),
                      messages=messages)


# ---------------------------------------------------------------------- searching
def _run(conn: sqlite3.Connection, expr: str, limit: int, offset: int) -> Hits:
    # The cap is probed in the newest items only: sparse matches would pay a whole scan to learn they are few.
    lo, hi = conn.execute("SELECT coalesce(min(key), 0), coalesce(max(key), 0) FROM items").fetchone()
    window = (hi - (hi - lo) // PROBE_SHARE) << ITEM_BITS
    floor = conn.execute("SELECT rowid FROM chunks WHERE chunks MATCH ? AND rowid >= ? ORDER BY rowid DESC "
                         "LIMIT 1 OFFSET ?", (expr, window, RANK_CAP)).fetchone()
    where, args = ("AND rowid > ?", (floor[0],)) if floor else ("", ())
    # One statement: FTS5 sorts by rank itself and keeps each row's matches, so snippets are made for the rows
    # returned only, from one evaluation of the query (a prefix's word lists merged once, not once a hit).
    top = conn.execute(
        "SELECT rowid, rank, snippet(chunks, 0, char(2), char(3), '…', 24), highlight(chunks, 0, char(2), char(3)), "
        f"start, end, starts FROM chunks WHERE chunks MATCH ? {where} ORDER BY rank LIMIT ? OFFSET ?",
        (expr, *args, limit, offset)).fetchall()
    keys = sorted({rowid >> ITEM_BITS for rowid, *_ in top})
    items = {r[0]: r[1:] for r in conn.execute(
        "SELECT i.key, b.name, b.batch_id, i.n, i.item_id, i.title, i.workdir, i.source FROM items i JOIN batches b "
        f"ON b.key = i.batch WHERE i.key IN ({','.join('?' * len(keys))})", keys)}
    hits = Hits(capped=floor is not None)
    for rowid, score, snippet, highlighted, start, end, starts in top:
        item = items.get(rowid >> ITEM_BITS)
        if item is None:
            continue  # not expected inside one snapshot; a hit without its item is left out, not an error
        t0, t1 = segment_time(highlighted, float(start), starts, float(end))
        parts = pieces(snippet)
        hits.append(Hit(batch=item[0], batch_id=item[1], n=item[2], item_id=item[3], title=item[4] or item[6],
                        start=t0, end=t1, score=round(float(score), 4), workdir=item[5] or "", source=item[6],
                        snippet=marked(parts), parts=parts))
    return hits


def search(home: Path | str, query: str, *, batch: str | None = None, limit: int = 20, offset: int = 0) -> Hits:
    """The best chunks for ``query`` across every batch (or one: its id or name), by bm25, best first."""
    expr = fts_query(query)
    messages: list[str] = []
    if expr is None or limit <= 0:
        return Hits()
    for attempt in (1, 2):
        try:
            with _opened(home, messages) as conn:
                full = "{text} : (" + expr + ")"
                if batch:
                    row = conn.execute("SELECT key FROM batches WHERE batch_id = ? OR name = ? ORDER BY "
                                       "batch_id = ? DESC LIMIT 1", (batch, batch, batch)).fetchone()
                    full += f' AND {{batch}} : "b{row[0] if row else 0}"'  # no batch key 0: no hits
                conn.execute("BEGIN")  # one snapshot for the ranking and the rows it names
                try:
                    hits = _run(conn, full, max(1, int(limit)), max(0, int(offset)))
                finally:
                    conn.execute("COMMIT")
                hits.messages = messages
                return hits
        except sqlite3.DatabaseError as exc:
            if attempt == 2 or not _is_corrupt(exc):
                raise
            messages.append(_move_aside(index_path(home), str(exc)))  # damage found mid-query: rebuild once
    raise AssertionError("not reached")

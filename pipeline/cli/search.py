"""``tubemill search``: full-text search over every batch's transcripts, and ``--reindex`` to rebuild the index.

Hits print as ``batch · title · HH:MM:SS · #n`` with the snippet below (the match in ``[brackets]``);
``--json`` prints one JSON object as the last line. The index is ``<home>/search.sqlite``
(:mod:`state.search`); a missing or damaged one is rebuilt from the batches, and stderr says so.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

from pipeline.app.search_view import HELP, clock
from pipeline.cli.base import EXIT_OK, CliError
from state import search as index
from state.reader import find_summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``search`` command and its flags."""
    s = sub.add_parser("search", help="search every batch's transcripts", description=HELP)
    s.add_argument("query", nargs="?", help='words, "an exact phrase", or a prefix like tide*')
    s.add_argument("--batch", help="only this batch (name, id or id prefix)")
    s.add_argument("--limit", type=int, default=20, help="hits to show (default 20)")
    s.add_argument("--offset", type=int, default=0, help="skip this many of the best hits first")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")
    s.add_argument("--reindex", action="store_true", help="rebuild the index from every batch's item folders")


def _say(messages: list[str]) -> None:
    for m in messages:
        print(f"tubemill: {m}", file=sys.stderr)


def cmd_search(args: argparse.Namespace, home: Path) -> int:
    """Reindex and/or search; one line per problem a user can cause (no query, an unknown batch)."""
    if not args.reindex and not (args.query or "").strip():
        raise CliError("give a QUERY to search for (or --reindex to rebuild the index)")
    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    if not home.is_dir():
        raise CliError(f"no Tubemill home at {home} (pass --home DIR or set TUBEMILL_HOME)")
    out: dict[str, object] = {}
    try:
        if args.reindex:
            stats = index.reindex(home)
            _say(stats.messages)
            out["reindex"] = {k: v for k, v in stats.to_dict().items() if k != "messages"}
            if not args.json:
                print(f"indexed {stats.items} item(s) from {stats.batches} batch(es): {stats.segments} segments in "
                      f"{stats.chunks} chunks, {stats.bytes / 1e6:.1f} MB, {stats.seconds:.1f} s"
                      + (f"; {stats.skipped} without a readable transcript" if stats.skipped else "")
                      + (f"; {stats.removed} no longer in any batch removed" if stats.removed else ""))
        if (args.query or "").strip():
            batch_id = find_summary(home, args.batch).id if args.batch else None
            hits = index.search(home, args.query, batch=batch_id, limit=args.limit, offset=args.offset)
            _say(hits.messages)
            out.update(query=args.query, batch=batch_id, capped=hits.capped,
                       hits=[{**h.to_dict(), "timestamp": clock(h.start)} for h in hits])
            if not args.json:
                for h in hits:
                    print(f"{h.batch} · {h.title} · {clock(h.start)} · #{h.n}")
                    print(f"    {h.snippet}")
                if not hits:
                    print(f"no matches for {args.query!r}" + (f" in batch {args.batch}" if args.batch else ""))
                elif hits.capped:
                    print(f"(a common term: ranked among the newest {index.RANK_CAP} matching passages)")
    except sqlite3.Error as exc:  # busy past the timeout, a full disk: the environment, not the query
        raise CliError(f"search index {index.index_path(home)}: {exc}") from exc
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    return EXIT_OK

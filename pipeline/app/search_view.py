"""The Search page's logic, without Streamlit: run a query over every batch, label and mark up its hits, find
what a hit can play, and the hint that opens the hit's item in Results.

The page (``pages/screens/search.py``) only draws what these return, so the behaviour is tested here and in
``tests/test_search_page.py`` without a browser.
"""

from __future__ import annotations

import sqlite3
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from pipeline.app import item_view, views
from pipeline.common.transcript_text import finite
from state import search as index
from state.models import BatchSummary

PAGE_SIZE = 20
HELP = 'Words (all must occur), "an exact phrase", or a prefix like tide* (three letters or more).'


def clock(seconds: float | None) -> str:
    """``HH:MM:SS`` always (``00:04:05``): hit times line up in a column and read the same in every hit."""
    total = int(max(0.0, finite(seconds)))  # missing, NaN or infinite: 0
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def run_query(home: Path | str, query: str, batch_id: str | None = None, limit: int = PAGE_SIZE) -> index.Hits:
    """The hits for ``query`` (best first); a file the index cannot open becomes a message, not an exception."""
    if not (query or "").strip():
        return index.Hits()
    try:
        return index.search(home, query, batch=batch_id, limit=limit)
    except (sqlite3.Error, OSError) as exc:
        return index.Hits(messages=[f"Search is unavailable: {exc}"])


def _md_piece(text: str) -> str:
    """``views.md_text`` trims; a snippet's pieces keep the spaces between them."""
    core = text.strip()
    if not core:
        return " " if text else ""
    lead = " " if text[:1].isspace() else ""
    trail = " " if text[-1:].isspace() else ""
    return lead + views.md_text(core) + trail


def snippet_markdown(hit: index.Hit) -> str:
    """The snippet as Markdown: transcript text escaped (it is data, never markup), matches in bold."""
    parts = hit.parts or ((hit.snippet, False),)
    return "".join(f"**{_md_piece(t).strip()}**" if matched and t.strip() else _md_piece(t) for t, matched in parts)


def hit_heading(hit: index.Hit) -> str:
    """Title, batch and item number as Markdown (titles come from the internet: escaped)."""
    return f"**{views.md_text(hit.title)}** · {views.md_text(hit.batch)} · #{hit.n}"


def hit_key(hit: index.Hit) -> tuple[str, int, float]:
    """What identifies a hit across reruns (the page remembers the chosen one by it, not by position)."""
    return (hit.batch_id, hit.n, hit.start)


def batch_choices(summaries: list[BatchSummary]) -> dict[str, str]:
    """Batch id → label for the filter, newest first."""
    return {s.id: s.name for s in reversed(summaries)}


def item_for_hit(engine: Any, hit: index.Hit) -> dict[str, Any]:
    """The hit's item as the batch holds it now (artifacts and meta say what can play); a stand-in from the
    index when the batch or item is gone."""
    try:
        for it in engine.items(hit.batch_id):
            if it["n"] == hit.n:
                return it
    except (KeyError, LookupError, OSError, ValueError):
        pass
    return {"n": hit.n, "source": hit.source, "workdir": hit.workdir or None, "title": hit.title}


def play_target(item: dict[str, Any]) -> tuple[str | None, bool]:
    """What the player gets and whether it is audio (else video): ``item_view.player_source``'s choice."""
    source = item_view.player_source(item)
    return source, bool(source and item_view.is_audio(source))


def open_in_results(state: MutableMapping[str, Any], hit: index.Hit) -> None:
    """Point Results at the hit's batch and item (it takes the hint once, as from Batches)."""
    views.point_results_at(state, hit.batch_id, hit.n)

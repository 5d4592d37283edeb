"""What the Subscriptions page shows and does, kept out of the page so it is plain, testable Python.

Rows come from the stored subscriptions (a file read, never the engine's store), so the page
shows the same whether this app's engine runs the checks or ``tubemill watch run`` does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline.common.units import fmt_duration
from pipeline.watch import subs

ACTIONS = ("check now", "pause", "resume", "remove")


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "never"
    d = ts - now
    if abs(d) < 1:
        return "now"
    return f"in {fmt_duration(d)}" if d > 0 else f"{fmt_duration(-d)} ago"


def rows(home: Path, now: float | None = None) -> list[dict[str, Any]]:
    """One row per subscription: what, how often, last and next check, new items found, the last error."""
    now = time.time() if now is None else now
    out = []
    for s in subs.list_subs(home):
        status = "paused" if s.get("paused") else f"failing ({s.get('failures', 0)}x)" if s.get("last_error") else "ok"
        out.append({
            "id": s["id"], "source": s["source"], "kind": s["kind"], "recipe": s["recipe"],
            "every": fmt_duration(s["every_s"]), "status": status,
            "last check": _when(s.get("last_check"), now),
            "next check": "-" if s.get("paused") else _when(s.get("next_check"), now),
            "new (last)": int(s.get("last_new") or 0), "new (total)": int(s.get("new_items_total") or 0),
            "batch": s.get("batch") or "", "error": s.get("last_error") or "",
        })  # fmt: skip
    return out


def add(home: Path, source: str, every_min: float, backfill: int, recipe: str) -> dict[str, Any]:
    """Subscribe from the form (raises TubemillError with the reason, which the page shows)."""
    from pipeline import errors

    if every_min < 1:
        raise errors.ConfigError("check at most once a minute")
    return subs.add(home, source, every_s=every_min * 60, backfill=int(backfill), recipe=recipe)


def act(home: Path, sub_id: str, action: str) -> str:
    """Apply one row action; returns the line the page confirms it with."""
    if action == "check now":
        subs.check_now(home, sub_id)
        return "asked the engine to check it now"
    if action in ("pause", "resume"):
        subs.set_paused(home, sub_id, action == "pause")
        return f"{action}d"
    if action == "remove":
        subs.remove(home, sub_id)
        return "removed (its batches stay)"
    raise ValueError(f"unknown action {action!r}")

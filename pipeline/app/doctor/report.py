"""The doctor's rows as the CLI prints them (table, JSON, exit code) and as the System page shows them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.app.doctor.check import WARN, Check


def exit_code(checks: Iterable[Check]) -> int:
    """0: all ok; 1: warnings only; 2: at least one error."""
    oks = [c.ok for c in checks]
    if any(o is False for o in oks):
        return 2
    return 1 if any(o == WARN for o in oks) else 0



def to_json(checks: Iterable[Check]) -> dict[str, dict[str, Any]]:
    """``{check name: {"ok", "detail", "fix"}}`` (names are unique: cookie accounts are ``account:NAME``)."""
    return {c.name: c.to_dict() for c in checks}



def format_table(checks: list[Check]) -> list[str]:
    """The report as lines: one per check, its fix indented under it, then a one-line summary."""
    width = max((len(c.name) for c in checks), default=10) + 2
    out = []
    for c in checks:
        mark = "ok" if c.ok is True else "WARN" if c.ok == WARN else "FAIL"
        out.append(f"{mark:<5} {c.name:<{width}} {c.detail}")
        if c.fix and c.ok is not True:
            out.append(f"{'':<5} {'':<{width}} fix: {c.fix}")
    errors = sum(1 for c in checks if c.ok is False)
    warns = sum(1 for c in checks if c.ok == WARN)
    out.append(f"{len(checks) - errors - warns} ok, {warns} warning(s), {errors} error(s)")
    return out



def rows_for_page(checks: list[Check]) -> list[dict[str, str]]:
    """The table the System page shows (same content as the CLI's)."""
    return [{"check": c.name, "status": "ok" if c.ok is True else "warning" if c.ok == WARN else "error",
             "detail": c.detail, "fix": c.fix if c.ok is not True else ""} for c in checks]

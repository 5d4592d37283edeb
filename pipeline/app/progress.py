"""Terminal progress: a live panel on a terminal, plain throttled lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from pipeline.common.units import fmt_duration, short_title
from state.models import BatchSummary

__all__ = ["ProgressView", "active_lines", "fmt_duration", "summary_line"]


def summary_line(s: BatchSummary) -> str:
    c = s.counts
    parts = [f"{s.name}: {c.get('done', 0)} of {s.total} done"]
    for key in ("failed", "running", "waiting", "cancelled", "skipped"):
        if c.get(key):
            parts.append(f"{c[key]} {key}")
    parts.append(f"ETA {fmt_duration(s.eta_s)}" if s.state == "active" else s.state)
    if s.held:
        parts.append(f"held ({s.held})")
    return ", ".join(parts)


def active_lines(s: BatchSummary, limit: int = 8) -> list[str]:
    out = []
    for a in s.active[:limit]:
        title = short_title(a["title"])
        out.append(f"  #{a['n']:<5} {a['stage']:<14} {a.get('progress', 0) * 100:5.1f}%  {title}")
    if len(s.active) > limit:
        out.append(f"  … and {len(s.active) - limit} more")
    return out


class ProgressView:
    """Call ``update(summary)`` as often as you like; it redraws or prints at a sane rate."""

    def __init__(self, stream: IO[str] | None = None, *, plain_every_s: float = 5.0) -> None:
        self.stream = stream or sys.stdout
        self.live_mode = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_every_s = plain_every_s
        self._last_line = ""
        self._last_at = 0.0
        self._live: Any = None

    def __enter__(self) -> ProgressView:
        if self.live_mode:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, s: BatchSummary) -> None:
        line = summary_line(s)
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text("\n".join([line, *active_lines(s)])))
            return
        now = time.monotonic()
        if line != self._last_line and (now - self._last_at >= self.plain_every_s or not self._last_line):
            print(line, file=self.stream, flush=True)
            self._last_line, self._last_at = line, now

    def final(self, s: BatchSummary) -> None:
        self.__exit__()
        line = summary_line(s)
        if line != self._last_line or self.live_mode:
            print(line, file=self.stream, flush=True)
        self._last_line = line

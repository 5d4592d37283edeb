"""Human units shared by every layer: the engine's wait reasons, the CLI and the pages print the same
durations, so one formatter lives below all of them."""

from __future__ import annotations


def fmt_duration(seconds: float | None) -> str:
    """``3725`` → ``1h02m``: two units at most, because a person reading an ETA wants its size, not its digits."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s" if m else f"{s}s"

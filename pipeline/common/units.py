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


TITLE_WIDTH = 60


def short_title(text: str | None, width: int = TITLE_WIDTH) -> str:
    """A title cut at a word boundary for a table cell or a status line (``"How tides work and why …"``);
    one word longer than the cell (a URL, a file name) is cut inside it. The full title stays in the item
    panel and the manifest."""
    text = " ".join(str(text or "").split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    head = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return head.rstrip(" ,;:-–") + " …" if " " in cut else cut + "…"

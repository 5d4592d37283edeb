"""Lines of user input as both recipes take them: a refused line says its number, why, and what it held,
printed so that no control character or direction override can disguise it."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

# Direction overrides and isolates: in a line or a title they make the text display as something else.
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: str) -> str:
    r"""``text`` safe to show anywhere: undecodable bytes as U+FFFD, controls as ``\xNN`` escapes."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join(c if not (c in BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp")) else
                   repr(c)[1:-1] for c in text)


@dataclass(frozen=True)
class InvalidLine:
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        # printable(), not repr(): the text is already escaped where it came from sources, and a
        # second escaping would show "\\x0b"; topics hand in raw text, which this escapes once.
        return f"line {self.line_no}: {self.reason}: '{printable(self.text[:120])}'"

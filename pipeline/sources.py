"""Input parsing: text with one source per line.

Blank lines and ``#`` comments are skipped; a line that cannot be a source is
reported with its line number and skipped, and the rest of the batch runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidInput


@dataclass(frozen=True)
class InvalidLine:
    line_no: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.reason}: {self.text[:120]!r}"


def parse_lines(text: str) -> tuple[list[str], list[InvalidLine]]:
    """Sources in order (first occurrence wins) and the lines that were rejected."""
    sources: list[str] = []
    invalid: list[InvalidLine] = []
    seen: set[str] = set()
    for no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if any(ord(c) < 32 for c in line):
            invalid.append(InvalidLine(no, line, "control characters in line"))
            continue
        if len(line) > 4096:
            invalid.append(InvalidLine(no, line, "line longer than 4096 characters"))
            continue
        if line in seen:
            continue
        seen.add(line)
        sources.append(line)
    return sources, invalid


def read_input(spec: str, stdin_text: str | None = None) -> str:
    """The text of an input: ``-`` for stdin, a URL given directly, or a file of sources."""
    if spec == "-":
        return stdin_text or ""
    if "://" in spec and not Path(spec).exists():
        return spec + "\n"
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            raise InvalidInput(f"cannot read input file {spec!r}: it is a directory")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"cannot read input file {spec!r}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read input file {spec!r}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read input file {spec!r}: {exc.strerror or exc}") from None

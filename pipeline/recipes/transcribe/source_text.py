r"""The text of a sources input: read (stdin, a file, a URL or path given directly), decoded, and split into
numbered candidate lines, each refused with its number when no source could be written that way.

Lines are split on ``\n`` only (``\r\n`` is one break), because ``str.splitlines()`` also breaks on
``\v \f \x1c-\x1e \x85 \u2028 \u2029`` and a lone ``\r``, and every line number after such a character
would be wrong. Bytes that are not UTF-8 stay as surrogate escapes until a line is judged, so one bad byte
costs one line, not the whole file.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from pipeline.common.lines import BIDI, InvalidLine, printable
from pipeline.errors import InvalidInput
from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS

MAX_LINE_CHARS = 4096
MAX_INPUT_BYTES = 64 << 20  # a list of 7,000 URLs is under 1 MB; /dev/zero must not fill memory
# A byte that was not UTF-8, kept by ``surrogateescape``: shown as U+FFFD, never stored.
SURROGATE = re.compile("[\ud800-\udfff]")


def unsafe_char(c: str) -> bool:
    """A character no source, title or id may hold: C0/C1 controls, line and paragraph separators, and
    direction overrides and isolates (see common.lines): echoed to a terminal or a page they can rewrite
    what the user sees."""
    return c in BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp")


def bad_char(text: str) -> tuple[int, str] | None:
    r"""The first character no source can contain (column from 1, its code point), or ``None``.

    C0/C1 controls (NUL, ESC, ``\v``, ``\x85`` …), line and paragraph separators and
    direction overrides: a URL or path never needs them.
    """
    for col, c in enumerate(text, start=1):
        if unsafe_char(c):
            return col, f"U+{ord(c):04X}"
    return None


def numbered_lines(text: str) -> tuple[list[tuple[int, str]], list[InvalidLine]]:
    r"""Every candidate source with its true line number (repeats kept), and the lines refused as text.

    Splits on ``\n`` only: see the module docstring. A line holding bytes that were not
    UTF-8 (``read_input`` keeps them as surrogate escapes) is refused here with its
    number, so one bad byte costs one line, not the whole file.
    """
    lines: list[tuple[int, str]] = []
    invalid: list[InvalidLine] = []
    for no, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip().lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        if SURROGATE.search(line):
            invalid.append(InvalidLine(no, printable(line), "not valid UTF-8 text (bad bytes shown as \ufffd)"))
            continue
        bad = bad_char(line)
        if bad is not None:
            invalid.append(InvalidLine(no, printable(line), f"control characters in line ({bad[1]} at column "
                                                            f"{bad[0]})"))
            continue
        if len(line) > MAX_LINE_CHARS:
            invalid.append(InvalidLine(no, line[:120], f"line longer than {MAX_LINE_CHARS} characters"))
            continue
        lines.append((no, line))
    return lines, invalid


def parse_lines(text: str) -> tuple[list[str], list[InvalidLine]]:
    """Sources in order (first occurrence wins) and the lines that were rejected."""
    lines, invalid = numbered_lines(text)
    sources: list[str] = []
    seen: set[str] = set()
    for _, line in lines:
        if line not in seen:
            seen.add(line)
            sources.append(line)
    return sources, invalid


def drop_undecodable(text: str) -> tuple[str, list[InvalidLine]]:
    """``text`` with every line that held non-UTF-8 bytes blanked (numbering kept), and those lines reported.

    For readers of ``read_input``'s text other than :func:`numbered_lines` (topics): a
    surrogate escape must never reach the store, whose JSON is written as UTF-8.
    """
    out: list[str] = []
    invalid: list[InvalidLine] = []
    for no, raw in enumerate(text.split("\n"), start=1):
        if SURROGATE.search(raw):
            invalid.append(InvalidLine(no, printable(raw.strip()), "not valid UTF-8 text (bad bytes shown as \ufffd)"))
            raw = ""
        out.append(raw)
    return "\n".join(out), invalid


def decode_input(data: bytes, name: str = "input") -> str:
    """The text of a sources file; bytes that are not UTF-8 stay as surrogate escapes for the line report.

    Only a file that is mostly not UTF-8 text (no good line at all, or more bad lines than
    good past ten) is refused as a whole, UTF-16 with the hint to save it as UTF-8: that
    is a binary file, not a list with a typo, and a report per line would bury the point.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidInput(f"cannot read input file {name!r}: not UTF-8 text (looks like UTF-16; save it as UTF-8)")
    text = data.decode("utf-8", "surrogateescape")
    if SURROGATE.search(text):
        lines = [ln for ln in text.split("\n") if ln.strip()]
        bad = sum(1 for ln in lines if SURROGATE.search(ln))
        if bad == len(lines) or (bad >= 10 and bad * 2 > len(lines)):  # a picture, an archive: not a typo
            raise InvalidInput(f"cannot read input file {name!r}: not UTF-8 text (is it a binary file?)")
    return text


def exists(path: Path) -> bool:
    """``Path.exists`` that never raises: a path we may not even ``stat`` is no source of ours."""
    try:
        return path.exists()
    except (OSError, ValueError, RuntimeError):
        return False


def read_input(spec: str, stdin_text: str | bytes | None = None) -> str:
    """The text of an input: ``-`` for stdin, a URL or media path given directly, or a file of sources.

    Read as bytes and decoded here (not by ``read_text``), so one bad byte is reported
    on its line by :func:`numbered_lines` instead of refusing the file.
    """
    if spec == "-":
        if isinstance(stdin_text, bytes):
            if len(stdin_text) > MAX_INPUT_BYTES:
                raise InvalidInput(f"stdin is larger than {MAX_INPUT_BYTES >> 20} MB (is it a list of sources?)")
            return decode_input(stdin_text, "stdin")
        return stdin_text or ""
    try:
        path = Path(spec).expanduser()
    except RuntimeError:  # "~nosuchuser/…"
        return spec + "\n"  # the line report says why it is not a source
    if "://" in spec and not exists(path):
        return spec + "\n"
    try:
        if path.is_dir() or (path.is_file() and path.suffix.lower().lstrip(".") in MEDIA_EXTS):
            return str(path.resolve()) + "\n"  # a folder or a media file is itself the source
        with open(path, "rb") as f:  # a FIFO (`<(grep …)`) is fine; /dev/zero stops at the cap
            data = f.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInput(f"cannot read input file {spec!r}: no such file") from None
    except (RuntimeError, ValueError) as exc:  # a symlink loop; a NUL in the name
        raise InvalidInput(f"cannot read input file {spec!r}: {exc}") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read input file {spec!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InvalidInput(f"cannot read input file {spec!r}: larger than {MAX_INPUT_BYTES >> 20} MB "
                           "(is it a list of sources?)")
    return decode_input(data, spec)

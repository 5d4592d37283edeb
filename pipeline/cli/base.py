"""What every ``tubemill`` command shares: the exit codes, the one-line error, a batch name as typed.

Kept apart from the package's ``__init__`` so the command modules can import it without importing
the parser that imports them.
"""

from __future__ import annotations

import sys
from typing import Any

EXIT_OK, EXIT_FAILED_ITEMS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(Exception):
    """One line for the user, then exit ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def quoted(name: str) -> str:
    """A batch name as the user would type it after a command: bare when it is safe, else ``repr``."""
    return name if name.replace("-", "").replace("_", "").replace(".", "").isalnum() else repr(name)


def say_dask(dx: Any) -> None:
    """Say on stderr that cpu/gpu stages run on Dask (``dx`` from ``engine_executors``; None: they don't)."""
    if dx is not None:
        print(f"tubemill: cpu/gpu stages on Dask ({dx.pool_sizes['cpu']} worker thread(s), "
              f"{dx.pool_sizes['gpu']} GPU(s))", file=sys.stderr)

"""``run --cookies`` and ``--cookies-from-browser``: the user's specs turned into named download accounts.

Each file or browser spec is checked before anything is listed or started, with a one-line error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import errors
from pipeline.cli.base import CliError


def cookie_accounts(specs: list[str]) -> dict[str, str]:
    """``--cookies`` values → {account name: absolute path}; each file checked now, with a one-line error."""
    from pipeline.config.secrets import cookie_problems, validate_cookie_file

    files: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
            if not found:
                raise CliError(f"--cookies {spec}: no .txt cookie files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CliError(f"--cookies {spec}: no such file or folder")
    out: dict[str, str] = {}
    for path in files:
        try:
            data = path.read_bytes()
            validate_cookie_file(data)
        except errors.InvalidInput as exc:
            raise CliError(f"--cookies {path}: {exc}") from None
        for problem in cookie_problems(data):  # line numbers and what is wrong, never a value
            print(f"tubemill: warning: --cookies {path}: {problem} (line left out)", file=sys.stderr)
        name, i = path.stem, 2
        while name in out:
            name, i = f"{path.stem}-{i}", i + 1
        out[name] = str(path.resolve())
    return out



def browser_accounts(specs: list[str], taken: set[str] | None = None) -> dict[str, str]:
    """``--cookies-from-browser`` values → {account name: spec}; each spec checked now, with a one-line error.

    The browser's cookie store is read by yt-dlp at each download (never copied by us)."""
    from pipeline.recipes.transcribe.ytdlp import browser_account_name

    out: dict[str, str] = {}
    taken = set(taken or ())
    for spec in specs:
        try:
            base = browser_account_name(spec)
        except errors.InvalidInput as exc:
            raise CliError(str(exc)) from None
        name, i = base, 2
        while name in out or name in taken:
            name, i = f"{base}-{i}", i + 1
        out[name] = spec.strip()
    return out

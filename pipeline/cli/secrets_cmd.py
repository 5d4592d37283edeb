"""``tubemill secrets``: store, list or remove the API keys batches use (0600 files under ``<home>/secrets``).

The value is read from a prompt (or ``--stdin``), never from the command line, so it stays out of
the shell's history and the process list; ``list`` shows masked values and where each comes from.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from pipeline.cli.base import EXIT_OK, CliError

NAMES = ("openai_api_key", "pexels_api_key", "pixabay_api_key")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``secrets`` command and its flags."""
    sp = sub.add_parser("secrets", help="store, list or remove API keys (OpenAI, Pexels, Pixabay), mode 0600")
    sp.add_argument("action", choices=("list", "set", "remove"))
    sp.add_argument("name", nargs="?", choices=NAMES)
    sp.add_argument("--stdin", action="store_true", help="read the value from standard input instead of a prompt")


def cmd_secrets(args: argparse.Namespace, home: Path) -> int:
    """List (masked), set (prompted) or remove one stored key; the environment variable still wins."""
    from pipeline.config import secrets

    if args.action == "list":
        for name in NAMES:
            source = secrets.secret_source(home, name)
            shown = secrets.mask(secrets.get_secret(home, name)) if source else "not set"
            print(f"{name:16} {shown:10} {source or '-':12} (env {secrets.ENV_VARS[name]})")
        return EXIT_OK
    if not args.name:
        raise CliError(f"secrets {args.action} needs a name: {', '.join(NAMES)}")
    if args.action == "remove":
        print("removed" if secrets.delete_secret(home, args.name) else "no stored value to remove")
        return EXIT_OK
    value = sys.stdin.readline() if args.stdin else getpass.getpass(f"{args.name}: ")
    print(f"stored in {secrets.set_secret(home, args.name, value)} (mode 0600)")
    return EXIT_OK

"""``tubemill``: the command line on the same engine as the app.

This package's root holds the entry point (``main``, the ``tubemill`` script and ``python -m
pipeline.cli``) and assembles the parser; each command lives in its own module with the flags it
reads (``run``, ``status``, ``control``, ``plan``, ``llm_batch``, ``youtube_auth``, ``doctor``,
``app_server``), and ``base`` holds what they share (exit codes, :class:`CliError`).

Errors users can cause (a missing file, an unknown batch, a corrupt state file, a
busy home) print one line and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline import errors
from pipeline.cli import app_server, control, doctor, llm_batch, plan, run, search, secrets_cmd, status, youtube_auth
from pipeline.cli import watch as watch_cmd
from pipeline.cli.accounts import browser_accounts, cookie_accounts
from pipeline.cli.app_server import cmd_app
from pipeline.cli.base import EXIT_FAILED_ITEMS, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError
from pipeline.cli.control import cmd_control
from pipeline.cli.doctor import cmd_doctor
from pipeline.cli.llm_batch import cmd_llm_batch
from pipeline.cli.plan import cmd_plan
from pipeline.cli.run import cmd_run
from pipeline.cli.serve import add_parser as add_serve_parser
from pipeline.cli.serve import cmd_serve
from pipeline.cli.status import STATUS_ITEM_FIELDS, account_lines, cmd_status, summary_counts, summary_lines
from pipeline.cli.youtube_auth import cmd_youtube_auth
from pipeline.config.settings import default_home
from pipeline.errors import BatchExists, CorruptStateFile, UnknownBatch

__all__ = [
    "COMMANDS", "EXIT_FAILED_ITEMS", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "STATUS_ITEM_FIELDS", "CliError",
    "account_lines", "browser_accounts", "build_parser", "cmd_app", "cmd_control", "cmd_doctor", "cmd_llm_batch",
    "cmd_plan", "cmd_run", "cmd_status", "cmd_youtube_auth", "cookie_accounts", "main", "os_error_line",
    "summary_counts", "summary_lines",
]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the global flags, then each command's subparser in the order ``--help`` lists."""
    p = argparse.ArgumentParser(prog="tubemill", description="Batch video mill: transcribe, summarize, generate.")
    p.add_argument("--home", help="state folder (default: $TUBEMILL_HOME or ~/.tubemill)")
    p.add_argument("-v", "--verbose", action="store_true", help="log engine events to stderr")
    sub = p.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    status.add_parser(sub)
    search.add_parser(sub)
    control.add_parsers(sub)
    youtube_auth.add_parser(sub)
    secrets_cmd.add_parser(sub)
    llm_batch.add_parser(sub)
    plan.add_parser(sub)
    doctor.add_parser(sub)
    app_server.add_parser(sub)
    watch_cmd.add_parser(sub)
    add_serve_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command, and turn the errors a user can cause into one line and an exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    home = Path(args.home).expanduser() if args.home else default_home()
    try:
        handler = COMMANDS[args.command]
        return handler(args, home)
    except CliError as exc:
        print(f"tubemill: error: {exc}", file=sys.stderr)
        return exc.code
    except (errors.TubemillError, UnknownBatch, BatchExists, ValueError) as exc:
        print(f"tubemill: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CorruptStateFile as exc:
        print(f"tubemill: error: state file {exc.path} is unreadable ({exc.reason})", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `tubemill status | head`: the reader went away. Quiet, as in the Python docs' recipe: point
        # stdout at devnull so the interpreter's final flush does not print a second error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED_ITEMS
    except OSError as exc:
        # The disk said no (an unwritable home or batches folder, a full disk): the environment, not a bug.
        print(f"tubemill: error: {os_error_line(exc, home)}", file=sys.stderr)
        return EXIT_USAGE


def os_error_line(exc: OSError, home: Path) -> str:
    """One line for a failed file operation: what, where, and for the home how to pick another one."""
    import errno

    where = str(exc.filename) if exc.filename is not None else ""
    why = {errno.ENOTDIR: "a file is in the way (a folder is needed there)",
           errno.EEXIST: "a file of that name is in the way (a folder is needed there)"}.get(
        exc.errno or 0, exc.strerror or str(exc))
    text = f"cannot use {where}: {why}" if where else why
    try:
        w, h = Path(where).resolve(), home.resolve()
        in_home = where != "" and (w == h or h in w.parents or w in h.parents)
    except (OSError, RuntimeError, ValueError):
        in_home = False
    if in_home:
        text += f"; the state folder {home} must be a writable folder (pass --home DIR or set TUBEMILL_HOME)"
    return text


COMMANDS: dict[str, Callable[[argparse.Namespace, Path], int]] = {
    "doctor": cmd_doctor,
    "plan": cmd_plan,
    "run": cmd_run,
    "status": cmd_status,
    "search": search.cmd_search,
    "pause": cmd_control,
    "resume": cmd_control,
    "cancel": cmd_control,
    "retry-failed": cmd_control,
    "retry-summaries": cmd_control,
    "retry-translations": cmd_control,
    "retry-extras": cmd_control,
    "llm-batch": cmd_llm_batch,
    "youtube-auth": cmd_youtube_auth,
    "secrets": secrets_cmd.cmd_secrets,
    "app": cmd_app,
    "watch": watch_cmd.cmd_watch,
    "serve": cmd_serve,
}

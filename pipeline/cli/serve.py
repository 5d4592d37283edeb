"""``tubemill serve``: the REST API (:mod:`pipeline.api`) on this home, on loopback unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.base import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``serve`` command and its flags."""
    s = sub.add_parser("serve", help="serve the REST API (bearer token; loopback unless --address is given)")
    s.add_argument("--address", help="listen here (default 127.0.0.1; anything beyond loopback only when given)")
    s.add_argument("--port", type=int, default=8600)
    s.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests whose Host header is NAME (repeatable; the bound address and "
                        "loopback names always are)")
    s.add_argument("--rotate-token", action="store_true",
                   help="make a new API token (printed once; the old one stops working, also on a running server)")


def cmd_serve(args: argparse.Namespace, home: Path) -> int:
    """Serve until interrupted (Ctrl-C is a normal stop)."""
    from pipeline import errors
    from pipeline.api.server import DEFAULT_ADDRESS, serve

    try:
        return serve(home, address=args.address or DEFAULT_ADDRESS, port=args.port, explicit=args.address is not None,
                     allow_hosts=tuple(args.allow_host), rotate=args.rotate_token)
    except errors.ConfigError as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        print("tubemill: stopped", file=sys.stderr)
        return 0

"""``tubemill youtube-auth``: authorize uploads once (the generate recipe's ``--upload``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.base import EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``youtube-auth`` command and its flags."""
    ya = sub.add_parser("youtube-auth", help="authorize uploads once (browser consent); stores a 0600 token")
    ya.add_argument("client_secrets", help="the OAuth client file downloaded from the Google Cloud console")
    ya.add_argument("--no-browser", action="store_true", help="print the URL instead of opening a browser")
    ya.add_argument("--playlists", action="store_true",
                    help="also allow adding videos to playlists (--playlist-id): asks for the whole-account "
                         "YouTube scope instead of upload-only")


def cmd_youtube_auth(args: argparse.Namespace, home: Path) -> int:
    """The browser consent once; uploads then use the stored token."""
    from pipeline.recipes.generate import youtube

    youtube.authorize(home, Path(args.client_secrets).expanduser(), open_browser=not args.no_browser,
                      playlists=args.playlists)
    print(f"authorized; token stored in {youtube.token_path(home)} (mode 0600)")
    return EXIT_OK

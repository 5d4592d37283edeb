"""``tubemill watch add|list|remove|pause|resume|check|run``: subscriptions from the command line.

``add``/``list``/``remove``/``pause``/``resume``/``check`` change the stored list (a locked file in
the home, never TinyDB), so they work the same whether the app, ``watch run`` or nothing owns the
home; ``check`` asks the owner to look now. ``watch run`` is the owner loop in the foreground: it
owns the home (or waits to take it over) and checks until Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from pipeline.cli.base import EXIT_OK, CliError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval(text: str) -> float:
    """``30m``, ``2h``, ``1d``, ``90s`` or plain seconds; at least a minute."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not an interval: {text!r} (try 30m, 2h, 1d)")
    seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 60:
        raise argparse.ArgumentTypeError("the interval must be at least 1 minute")
    return seconds


def add_parser(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("watch", help="subscriptions: channels, playlists, feeds and folders checked on a schedule")
    ws = w.add_subparsers(dest="watch_command", required=True)
    a = ws.add_parser("add", help="subscribe to a URL or folder")
    a.add_argument("source", help="YouTube channel/playlist URL, RSS/Atom feed URL, or a folder")
    a.add_argument("--every", type=interval, default=1800.0, help="check interval (default 30m)")
    a.add_argument("--backfill", type=int, default=0, help="also process the N newest entries there now")
    a.add_argument("--recipe", default="transcribe", help="recipe for the new entries (default transcribe)")
    a.add_argument("--min-duration", type=float, help="skip entries shorter than this (seconds)")
    a.add_argument("--max-duration", type=float, help="skip entries longer than this (seconds)")
    a.add_argument("--match-title", help="only entries whose title matches this regular expression")
    a.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a batch option for the new entries (repeatable), as the batch header stores it")
    ws.add_parser("list", help="every subscription with its last and next check")
    for name, text in (("remove", "forget a subscription (batches stay)"), ("pause", "stop checking"),
                       ("resume", "check again"), ("check", "ask the engine to check now")):
        ws.add_parser(name, help=text).add_argument("id")
    r = ws.add_parser("run", help="run the subscription loop in the foreground (owns the home)")
    r.add_argument("--once", action="store_true", help="one round of due checks, then exit")


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    d = ts - now
    if abs(d) < 60:
        return "now" if d <= 0 else f"in {d:.0f}s"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def cmd_watch(args: argparse.Namespace, home: Path) -> int:
    from pipeline.watch import subs

    cmd = args.watch_command
    if cmd == "add":
        options = {}
        for pair in args.option:
            key, eq, value = pair.partition("=")
            if not eq or not key:
                raise CliError(f"--option wants KEY=VALUE, not {pair!r}")
            options[key.strip()] = _value(value.strip())
        from pipeline.engine.recipe import get_recipe

        get_recipe(args.recipe)  # an unknown recipe is one line now, not a failed check later
        s = subs.add(home, args.source, every_s=args.every, backfill=args.backfill, recipe=args.recipe,
                     options=options)
        filters = {k: getattr(args, k) for k in ("min_duration", "max_duration", "match_title")
                   if getattr(args, k) is not None}
        if filters:
            subs.update(home, s["id"], lambda d: d.update(filters=filters))
        print(f"subscribed {s['id']}: {s['kind']} {s['source']} every {s['every_s'] / 60:g} min")
        return EXIT_OK
    if cmd == "list":
        now = time.time()
        rows = subs.list_subs(home)
        if not rows:
            print("no subscriptions (add one with `tubemill watch add URL`)")
        for s in rows:
            state = "paused" if s.get("paused") else "failing" if s.get("last_error") else "ok"
            print(f"{s['id']}  {s['kind']:<8} {state:<7} every {s['every_s'] / 60:g}m"
                  f"  last {_when(s.get('last_check'), now)}  next {_when(s.get('next_check'), now)}"
                  f"  new {s.get('new_items_total', 0)}  {s['source']}")
            if s.get("last_error"):
                print(f"          error: {s['last_error']} ({s.get('failures', 0)} in a row)")
        return EXIT_OK
    if cmd == "run":
        return _run(home, once=args.once)
    if cmd == "remove":
        if not subs.remove(home, args.id):
            raise CliError(f"no subscription {args.id!r}")
        print(f"removed {args.id}")
    elif cmd in ("pause", "resume"):
        s = subs.set_paused(home, args.id, cmd == "pause")
        print(f"{'paused' if s['paused'] else 'resumed'} {s['id']}")
    elif cmd == "check":
        subs.check_now(home, args.id)
        print(f"asked for a check of {args.id}")
    return EXIT_OK


def _run(home: Path, *, once: bool) -> int:
    from pipeline.engine.core import Engine
    from pipeline.watch.service import WatchService

    engine = Engine(home, role="tubemill watch run")
    owner = engine.start()
    service = WatchService(engine)
    try:
        if not owner:
            print(f"another process owns {home}; waiting to take over (Ctrl-C to stop)", file=sys.stderr)
        if once:
            while engine.store is None:
                time.sleep(0.5)
            r = service.run_round()
            print(f"checked {r['checked']}, {r['new']} new item(s), {r['errors']} error(s)")
            return EXIT_OK
        service.start()
        print("watching subscriptions (Ctrl-C to stop)", file=sys.stderr)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        service.stop()
        engine.shutdown(interrupt=True, timeout=10)

"""``tubemill plan``: simulate a batch on virtual time (makespan, bottleneck, finish date) from the command line.

The simulation itself is the transcribe recipe's :mod:`~pipeline.recipes.transcribe.plan`; this module
turns flags, settings and saved accounts into its ``PlanSpec`` and prints the report.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.cli.base import EXIT_OK, CliError
from pipeline.config.settings import load_settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``plan`` command and its flags."""
    pl = sub.add_parser("plan", help="simulate a batch on virtual time: makespan, bottleneck, finish date")
    pl.add_argument("--videos", type=int, required=True)
    pl.add_argument("--accounts", type=int, help="cookie accounts (0: anonymous; default: the accounts saved here)")
    pl.add_argument("--delay", metavar="MIN-MAX", help="seconds between one account's downloads, e.g. 180-300 "
                                                       "(default: settings)")
    pl.add_argument("--transcribe-workers", type=int, help="default: the cpu pool (gpu pool when there is a GPU)")
    pl.add_argument("--download-workers", type=int)
    pl.add_argument("--llm-workers", type=int)
    pl.add_argument("--audio-minutes", type=float, help="length of each video (default 60)")
    pl.add_argument("--transcribe-rtf", type=float,
                    help="transcription seconds per audio second, per worker (default: measured here, else 0.03)")
    pl.add_argument("--download-seconds", type=float, help="transfer time of one video (default: measured, else 30)")
    pl.add_argument("--summarize-seconds", type=float, help="default: measured, else 15")
    pl.add_argument("--captions-fraction", type=float, default=0.0, help="share of videos with usable captions")
    pl.add_argument("--buffer", metavar="MIN/TARGET/MAX|off", help="queue-aware pacing (default: settings)")
    pl.add_argument("--fast-start", type=int, metavar="N", help="first N downloads per account at a shorter delay")
    pl.add_argument("--stats", action="append", default=[], metavar="FILE",
                    help="stats.json of earlier batches to take stage durations from (default: those in the output "
                         "folder)")
    pl.add_argument("--start", help="start time (ISO 8601; default: now)")
    pl.add_argument("--seed", type=int, default=1)
    pl.add_argument("--json", action="store_true", help="the last line is a JSON object")
    pl.add_argument("--plot", metavar="FILE.png", help="buffer and progress over time")


def cmd_plan(args: argparse.Namespace, home: Path) -> int:
    """Print the simulated plan (and with ``--json`` its JSON as the last line); nothing real is started."""
    from datetime import UTC, datetime

    from pipeline.config.secrets import list_cookie_files
    from pipeline.recipes.transcribe import plan, plan_report

    settings = load_settings(home)
    pacing = _pacing(args, settings.pacing)
    stats = [Path(p) for p in args.stats] or plan.find_stats(settings.output_root(home))
    model = plan.model_from_stats(stats)
    overrides = {"audio_minutes": args.audio_minutes, "transcribe_rtf": args.transcribe_rtf,
                 "download_s": args.download_seconds, "summarize_s": args.summarize_seconds}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        model = replace(model, **given, source=model.source + " + command line")
    pools = settings.pools
    try:
        delay = plan.parse_delay(args.delay) if args.delay else None
        start = datetime.fromisoformat(args.start) if args.start else datetime.now(UTC)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    spec = plan.PlanSpec(
        videos=args.videos,
        accounts=args.accounts if args.accounts is not None else len(list_cookie_files(home, count=False)),
        delay=delay,
        transcribe_workers=args.transcribe_workers or (pools.get("gpu") or pools.get("cpu") or 1),
        download_workers=args.download_workers or pools.get("net") or 4,
        llm_workers=args.llm_workers or pools.get("llm") or 4,
        model=model, pacing=pacing, captions_fraction=args.captions_fraction, seed=args.seed, start=start,
    )
    try:
        result = plan.simulate(spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for line in plan_report.format_report(result):
        print(line)
    doc = result.to_dict()
    if args.plot:
        doc["plot"] = str(plan_report.plot(result, Path(args.plot)))
        print(f"plot: {doc['plot']}")
    if args.json:
        print(json.dumps(doc))
    return EXIT_OK


def _pacing(args: argparse.Namespace, pacing: Any) -> Any:
    """The settings' pacing with ``--buffer`` and ``--fast-start`` applied."""
    if args.buffer:
        if args.buffer.lower() == "off":
            pacing = replace(pacing, queue_aware=False)
        else:
            try:
                lo, mid, hi = (int(x) for x in args.buffer.split("/"))
                pacing = replace(pacing, queue_aware=True, min_buffer=lo, target_buffer=mid, max_buffer=hi)
            except ValueError as exc:
                raise CliError(f"--buffer expects MIN/TARGET/MAX (e.g. 20/50/100) or off: {exc}") from None
    if args.fast_start is not None:
        pacing = replace(pacing, fast_start_items=max(0, args.fast_start))
    return pacing

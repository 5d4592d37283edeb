"""``tubemill doctor``: the setup checks of :mod:`pipeline.app.doctor` as a table (and ``--json``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``doctor`` command and its flags."""
    d = sub.add_parser("doctor", help="check the setup (yt-dlp, JS runtime, ffmpeg, models, GPU, LLM, accounts, "
                                      "disk) and say how to fix each problem")
    d.add_argument("--json", action="store_true", help="the last line is one JSON object: {check: {ok, detail, fix}}")
    d.add_argument("--cookies", action="append", default=[], metavar="FILE",
                   help="also check this cookie file (repeatable)")
    d.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="bound of each network probe (default 5)")


def cmd_doctor(args: argparse.Namespace, home: Path) -> int:
    """Check the setup; exit 0 when all is well, 1 with warnings, 2 with errors."""
    from pipeline.app import doctor

    checks = doctor.run_checks(home, extra_cookies=[Path(p).expanduser() for p in args.cookies],
                               timeout=args.timeout)
    for line in doctor.format_table(checks):
        print(line)
    if args.json:
        print(json.dumps(doctor.to_json(checks)))
    return doctor.exit_code(checks)

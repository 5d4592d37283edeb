"""Plan simulator: the users' pacing arithmetic vs the real scheduler on virtual time.

For 7,000 one-hour videos and 1, 3 and 5 accounts at 180-300 s: the arithmetic
(videos x mean delay / accounts) next to the simulated makespan with plain pacing and
with the default queue-aware pacing, the bottleneck, and how long each simulation took.
The last line is a JSON object of the figures.

    python bench/plan.py [--videos 7000] [--transcribe-rtf 0.03]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.engine.ratelimit import PacingSettings  # noqa: E402
from pipeline.recipes.transcribe.plan import PlanSpec, StageModel, simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=7000)
    ap.add_argument("--transcribe-rtf", type=float, default=0.03)
    args = ap.parse_args()
    model = StageModel(transcribe_rtf=args.transcribe_rtf)
    rows = []
    print(f"{args.videos:,} videos of 60 min, 2 transcription workers, rtf {args.transcribe_rtf}")
    print(f"{'accounts':>8} {'arithmetic d':>13} {'plain d':>8} {'ratio':>6} {'queue-aware d':>14} "
          f"{'bottleneck':>11} {'sim s':>6}")
    for accounts in (1, 3, 5):
        plain = simulate(PlanSpec(videos=args.videos, accounts=accounts, delay=(180, 300), model=model,
                                  pacing=PacingSettings(queue_aware=False)))
        aware = simulate(PlanSpec(videos=args.videos, accounts=accounts, delay=(180, 300), model=model))
        arith = (plain.arithmetic_s or 0) / 86400
        row = {"accounts": accounts, "arithmetic_days": round(arith, 3),
               "plain_makespan_days": round(plain.makespan_s / 86400, 3),
               "plain_downloads_days": round(plain.downloads_done_s / 86400, 3),
               "plain_vs_arithmetic": round(plain.downloads_done_s / 86400 / arith, 4),
               "queue_aware_makespan_days": round(aware.makespan_s / 86400, 3),
               "bottleneck": plain.bottleneck, "bottleneck_queue_aware": aware.bottleneck,
               "max_buffer_plain": max(b for _, b in plain.buffer),
               "max_buffer_queue_aware": max(b for _, b in aware.buffer),
               "sim_seconds": round(plain.sim_seconds + aware.sim_seconds, 2)}
        rows.append(row)
        print(f"{accounts:>8} {arith:>13.2f} {row['plain_makespan_days']:>8.2f} {row['plain_vs_arithmetic']:>6.3f} "
              f"{row['queue_aware_makespan_days']:>14.2f} {plain.bottleneck:>11} {row['sim_seconds']:>6.1f}")
    print(json.dumps({"videos": args.videos, "transcribe_rtf": args.transcribe_rtf, "rows": rows}))


if __name__ == "__main__":
    main()

"""Generate figures: the whole recipe for one 60 s video as a DAG vs the same stages one after another.

    python bench/generate.py [--seconds 60] [--rounds 2] [--size 1080x1920]

Both runs go through the real engine on a throw-away home, offline (template script,
espeak-ng narration, Pillow frames, subtitles, our ffmpeg render, metadata; upload off),
from a clean item folder each time:

1. dag: the ``generate`` recipe, whose stages name what they need, so narration runs
   beside the frames and the metadata;
2. sequential: the same stage list given explicitly, which the engine runs one stage after
   another (a list without needs is a chain).

The visuals stage fetches a stock picture per scene (``--media``, default openverse; ``none``
leaves it out) from the loopback fake of the provider APIs in ``tests/fake_stock.py``, which
serves real JPEG/PNG pictures and answers after ``--latency-ms`` (default 150, a real round
trip); each run has its own home, so the media cache starts cold every time.

Rounds alternate the two so machine noise falls on both. The last line printed is a JSON
object: ``dag_vs_sequential`` (median dag wall ÷ median sequential wall; target ≤ 0.7),
the walls, and each stage's seconds from the sequential run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config.settings import GovernorSettings, Settings  # noqa: E402
from pipeline.engine.core import Engine  # noqa: E402
from pipeline.engine.recipe import get_recipe  # noqa: E402


def run_once(home: Path, name: str, recipe: str | list[str], options: dict[str, object]) -> tuple[float, dict]:
    settings = Settings(governor=GovernorSettings(min_free_ram_mb=0, min_free_disk_mb=0, min_free_gpu_mb=0),
                        flush_delay_s=0.05)
    with Engine(home, settings=settings) as engine:
        t0 = time.perf_counter()
        bid = engine.submit(name, ["How tides work"], recipe=recipe, options=dict(options))
        s = engine.wait(bid, timeout=600)
        wall = time.perf_counter() - t0
        item = engine.items(bid)[0]
    if s.counts.get("done") != 1:
        raise SystemExit(f"{name}: the video did not finish: {item.get('error')}")
    return wall, item.get("timings") or {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--size", default="", help="WxH for a quick draft (default: the 9:16 full size)")
    ap.add_argument("--media", default="openverse", choices=("none", "openverse", "pexels", "pixabay"),
                    help="stock pictures per scene from the loopback fake provider (none: no visuals stage work)")
    ap.add_argument("--media-kind", default="photo", choices=("photo", "video", "any"))
    ap.add_argument("--latency-ms", type=float, default=150.0, help="the fake provider's delay per answer")
    args = ap.parse_args()
    options: dict[str, object] = {"length_s": args.seconds, "script_engine": "offline", "tts": "espeak"}
    if args.size:
        options["size"] = args.size
    stages = list(get_recipe("generate").stages)
    dag_walls, seq_walls, seq_timings, dag_timings = [], [], {}, {}
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-generate-") as tmp, ExitStack() as stack:
        if args.media != "none":
            from tests.fake_stock import PEXELS_KEY, PIXABAY_KEY, FakeStock

            stock = stack.enter_context(FakeStock(Path(tmp) / "stock", per_query=15,
                                                  latency_s=args.latency_ms / 1000))
            os.environ.update(PEXELS_API_KEY=PEXELS_KEY, PIXABAY_API_KEY=PIXABAY_KEY)  # the fake's keys
            options.update(media_provider=args.media, media_kind=args.media_kind,
                           **{f"{args.media}_base_url": stock.base_url})
        # Warm-up, not timed: imports, fonts and the encoder probe are paid here, not by the first timed run.
        run_once(Path(tmp) / "warm", "warm", "generate", {**options, "length_s": 10, "size": "180x320"})
        for r in range(args.rounds):
            wall, seq_timings = run_once(Path(tmp) / f"seq{r}", f"seq{r}", stages, options)
            seq_walls.append(wall)
            print(f"round {r + 1}: sequential {wall:6.2f} s  " +
                  " ".join(f"{k} {v:.2f}" for k, v in seq_timings.items()), flush=True)
            wall, dag_timings = run_once(Path(tmp) / f"dag{r}", f"dag{r}", "generate", options)
            dag_walls.append(wall)
            print(f"round {r + 1}: dag        {wall:6.2f} s  " +
                  " ".join(f"{k} {v:.2f}" for k, v in dag_timings.items()), flush=True)
    dag, seq = statistics.median(dag_walls), statistics.median(seq_walls)
    ratio = dag / seq
    print(f"whole recipe, one {args.seconds:.0f} s video: dag {dag:.2f} s vs sequential {seq:.2f} s "
          f"-> {ratio:.3f} (target <= 0.7)")
    print(json.dumps({"video_s": args.seconds, "dag_wall_s": round(dag, 3), "sequential_wall_s": round(seq, 3),
                      "dag_vs_sequential": round(ratio, 3), "rounds": args.rounds,
                      "dag_walls_s": [round(w, 3) for w in dag_walls],
                      "sequential_walls_s": [round(w, 3) for w in seq_walls],
                      "stage_s": {k: round(v, 3) for k, v in seq_timings.items()},
                      "media": args.media, "media_kind": args.media_kind, "media_latency_ms": args.latency_ms,
                      "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()

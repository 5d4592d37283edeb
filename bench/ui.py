"""Server-side render time of the Batches and Results pages with a 7,000-item batch.

    python bench/ui.py [--items 7000] [--runs 5]

Seeds a home with one batch of N items (most done, some failed, some running), then
renders the pages with Streamlit's AppTest (the same script run a browser triggers) and
times each run: the first (cold: the engine opens the store) and the median of the
following warm runs, which is what every refresh and every ``run_every`` tick costs.
The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from state.store import Store  # noqa: E402


def seed(home: Path, n: int) -> None:
    """A batch the size our users run, written through the real store."""
    store = Store(home, flush_delay=0.05)
    store.open()
    out = home / "output" / "lectures"
    recipe = ["captions", "download", "transcribe", "summarize", "export"]
    sources = [{"source": f"https://example.org/lectures/{i:05d}.mp3", "id": f"lecture-{i:05d}",
                "title": f"Lecture {i}: a long enough title to look real", "duration": 3600.0}
               for i in range(n)]
    bid = store.create_batch("lectures", recipe, sources, options={"recipe_name": "transcribe"},
                             output_dir=str(out))
    transcript = {"language": "en", "duration": 3600.0, "source": "whisper", "model": "tiny.en",
                  "segments": [{"start": i * 6.0, "end": i * 6.0 + 5.5, "text": f"Sentence number {i} of the talk."}
                               for i in range(600)]}
    for k in range(1, n + 1):
        wd = out / f"{k:04d}-lecture-{k:05d}"
        if k <= 20:
            wd.mkdir(parents=True, exist_ok=True)
            (wd / "transcript.json").write_text(json.dumps(transcript))
            (wd / "summary.md").write_text(f"# Lecture {k}\n\n## TL;DR\n\nA talk.\n")
        timings = {s: 1.0 + (k % 7) for s in recipe}
        if k % 50 == 0:
            store.transition(bid, k, "running", stage="captions", workdir=str(wd))
            store.transition(bid, k, "failed", error={"type": "NotFound", "message": "HTTP 404", "stage": "download",
                                                      "retryable": False, "attempt": 1, "at": 0}, attempts=1)
        elif k > n - 8:
            store.transition(bid, k, "running", stage="transcribe", stage_index=2, progress=0.4, workdir=str(wd))
        else:
            store.transition(bid, k, "running", stage="export", stage_index=4, workdir=str(wd))
            store.transition(bid, k, "done", stage=None, stage_index=5, timings=timings, workdir=str(wd),
                             artifacts={"json": str(wd / "transcript.json")})
    store.close()


def time_page(page: str | None, runs: int) -> tuple[float, float]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    if page:
        at.switch_page(page).run()
    cold = time.perf_counter() - t0
    assert not at.exception, at.exception
    warm = []
    for _ in range(runs):
        t0 = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t0)
        assert not at.exception, at.exception
    from pages.screens._engine import get_engine

    get_engine().shutdown(interrupt=True)
    st.cache_resource.clear()
    return cold, statistics.median(warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=7000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-ui-") as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        seed(home, args.items)
        seed_s = time.perf_counter() - t0
        os.environ["TUBEMILL_HOME"] = str(home)
        os.chdir(ROOT)
        b_cold, b_warm = time_page(None, args.runs)
        r_cold, r_warm = time_page("pages/screens/results.py", args.runs)
    result = {
        "items": args.items,
        "batches_page_s": round(b_warm, 3),
        "results_page_s": round(r_warm, 3),
        "batches_page_cold_s": round(b_cold, 3),
        "results_page_cold_s": round(r_cold, 3),
        "seed_s": round(seed_s, 1),
        "cpus": os.cpu_count(),
    }
    print(f"{args.items}-item batch: Batches page {result['batches_page_s']} s per run "
          f"(first run {result['batches_page_cold_s']} s, opening the store), Results page "
          f"{result['results_page_s']} s (first {result['results_page_cold_s']} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

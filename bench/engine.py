"""Engine + store throughput against TinyDB's default storage, side by side in one run.

    python bench/engine.py [--items 10000] [--sample 200]

Runs N items x 4 no-op stages through the real engine and store (on disk, fsync on),
then applies the same kind of single-item transitions through TinyDB's default
``JSONStorage`` one update at a time on a database of the same size, for a sample,
and extrapolates. The last line printed is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config.settings import Settings  # noqa: E402
from pipeline.engine.core import Engine  # noqa: E402


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_engine(home: Path, items: int) -> dict[str, float]:
    settings = Settings(pools={"net": 4, "cpu": 2, "gpu": 0, "llm": 4})
    engine = Engine(home, settings=settings)
    engine.start()
    t0 = time.perf_counter()
    engine.submit("bench", [f"item-{i:06d}" for i in range(items)], recipe="noop")
    summary = engine.wait("bench", poll=0.1)
    wall = time.perf_counter() - t0
    store = engine.store
    assert store is not None
    transitions = store.transitions
    flushes = store.flushes
    engine.shutdown()  # the final flush is counted in bytes_written below
    return {
        "done": summary.counts["done"],
        "wall_s": wall,
        "transitions": transitions,
        "flushes": flushes,
        "bytes_written": store.bytes_written(),
        "batch_file_bytes": sum(p.stat().st_size for p in (home / "batches").glob("*.json")),
    }


def run_tinydb_default(path: Path, items: int, sample: int) -> dict[str, float]:
    """The naive path: TinyDB(path) with JSONStorage, one update per transition."""
    from tinydb import TinyDB
    from tinydb.storages import JSONStorage

    written = {"bytes": 0}

    class CountingJSON(JSONStorage):
        def write(self, data):  # type: ignore[no-untyped-def]
            super().write(data)
            written["bytes"] += self._handle.tell()

    docs = [
        {"n": i + 1, "source": f"item-{i:06d}", "id": None, "title": None, "status": "pending", "stage_index": 0,
         "stage": None, "attempts": 0, "next_attempt_at": None, "error": None, "timings": {}, "artifacts": {},
         "meta": {}, "progress": 0.0}
        for i in range(items)
    ]
    db = TinyDB(path, storage=CountingJSON)
    db.table("items").insert_multiple(docs)
    written["bytes"] = 0
    table = db.table("items")
    t0 = time.perf_counter()
    for i in range(sample):
        n = (i * 7919) % items + 1
        table.update({"status": "running", "stage": "noop_cpu", "progress": 0.0}, doc_ids=[n])
    per = (time.perf_counter() - t0) / sample
    db.close()
    return {"s_per_transition": per, "bytes_per_transition": written["bytes"] / sample}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--sample", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-") as tmp:
        ours = run_engine(Path(tmp) / "home", args.items)
        peak = rss_peak_mb()
        naive = run_tinydb_default(Path(tmp) / "default.json", args.items, args.sample)
    tps = ours["transitions"] / ours["wall_s"]
    bpt = ours["bytes_written"] / ours["transitions"]
    naive_total_s = naive["s_per_transition"] * ours["transitions"]
    result = {
        "items": args.items,
        "stages": 4,
        "transitions": int(ours["transitions"]),
        "wall_s": round(ours["wall_s"], 2),
        "transitions_per_s": round(tps, 1),
        "flushes": int(ours["flushes"]),
        "bytes_written_per_transition": round(bpt, 1),
        "tinydb_default_bytes_per_transition": round(naive["bytes_per_transition"], 1),
        "bytes_ratio_vs_tinydb_default": round(naive["bytes_per_transition"] / bpt, 1),
        "tinydb_default_ms_per_transition": round(naive["s_per_transition"] * 1000, 2),
        "tinydb_default_extrapolated_s": round(naive_total_s, 1),
        "speedup_vs_tinydb_default": round(naive_total_s / ours["wall_s"], 1),
        "peak_rss_mb": round(peak, 1),
        "cpus": os.cpu_count(),
    }
    print(f"engine: {args.items} items x 4 no-op stages, {result['transitions']} transitions in "
          f"{result['wall_s']} s = {result['transitions_per_s']} transitions/s, {result['flushes']} flushes")
    print(f"bytes written per transition: ours {result['bytes_written_per_transition']}, TinyDB default "
          f"{result['tinydb_default_bytes_per_transition']} ({result['bytes_ratio_vs_tinydb_default']}x fewer)")
    print(f"TinyDB default: {result['tinydb_default_ms_per_transition']} ms per transition, "
          f"{result['tinydb_default_extrapolated_s']} s extrapolated for the same transitions "
          f"({result['speedup_vs_tinydb_default']}x slower than the engine)")
    print(f"peak RSS {result['peak_rss_mb']} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

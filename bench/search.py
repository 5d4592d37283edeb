"""Search across every batch at scale: 7,000 one-hour transcripts in ``state.search``'s FTS5 index.

    python bench/search.py [--items N] [--queries N] [--naive-items N] [--seed S] [--keep DIR]

The transcripts are synthetic but shaped like real ones: ~150 words a minute, Whisper-like segments of
5–30 words (2–12 s), a vocabulary of 5,000 pronounceable pseudo-words drawn with a Zipf–Mandelbrot
distribution (short words frequent, as in speech), sentences capitalised and ended. They go through the
same ``Indexer`` the reindex uses (chunks, one transaction per 200 items, FTS5 ``optimize`` at the end).

Queries are timed through the public ``state.search.search`` (a connection opened per call, as the CLI and
the page do), after a short warm-up, over a fixed mix:

- ``word``: a vocabulary word chosen uniformly by rank (mostly mid-frequency and rare words);
- ``common``: one of the 100 most frequent words (bm25 over a capped candidate set);
- ``phrase``: two or three consecutive words taken from a generated transcript (so they exist);
- ``prefix``: the first 3–5 letters of a vocabulary word and ``*``;
- ``and``: two words from one transcript segment.

Side by side on a subset (``--naive-items``, default 300): the same queries against an FTS5 index of only
that subset and a naive ``LIKE '%…%'`` scan over a plain table of the same chunks; the ratio is the naive
median over ours. Target: query p95 < 100 ms at full size. The last line printed is a JSON object of the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from state import search as S  # noqa: E402

VOCAB = 5000
WPM = 150
MINUTES = 60
P95_TARGET_MS = 100.0
ONSETS = tuple("bcdfghjklmnprstvwz") + ("br", "ch", "cl", "dr", "fl", "gr", "pl", "sh", "st", "th", "tr")
VOWELS = (*"aeiou", "ai", "ea", "ee", "oo", "ou")
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck"]


def vocabulary(rng: np.random.Generator, size: int = VOCAB) -> list[str]:
    """Unique pseudo-words, shortest first (rank 1 is the most frequent: short words are common in speech)."""
    words: set[str] = set()
    while len(words) < size:
        syllables = int(rng.choice([1, 1, 2, 2, 2, 3, 3, 4]))
        words.add("".join(ONSETS[rng.integers(len(ONSETS))] + VOWELS[rng.integers(len(VOWELS))]
                          + CODAS[rng.integers(len(CODAS))] for _ in range(syllables)))
    return sorted(words, key=lambda w: (len(w), w))


def zipf_cdf(size: int = VOCAB, s: float = 1.0, q: float = 2.7) -> np.ndarray:
    weights = 1.0 / (np.arange(1, size + 1) + q) ** s
    return np.cumsum(weights / weights.sum())


def transcript(rng: np.random.Generator, vocab: np.ndarray, cdf: np.ndarray, minutes: int = MINUTES) -> list[dict]:
    """One item's segments: word counts 5–30, timed at WPM with short pauses between segments."""
    n_words = int(minutes * WPM)
    idx = np.minimum(np.searchsorted(cdf, rng.random(n_words)), len(vocab) - 1)
    words = vocab[idx].tolist()
    lengths = rng.integers(5, 31, size=n_words // 5 + 1)
    segs, at, t = [], 0, 0.0
    for k in lengths:
        if at >= n_words:
            break
        chunk = words[at:at + int(k)]
        at += int(k)
        dur = len(chunk) * 60.0 / WPM
        text = " ".join(chunk)
        segs.append({"start": round(t, 2), "end": round(t + dur, 2), "text": text[0].upper() + text[1:] + "."})
        t += dur + float(rng.uniform(0.0, 0.4))
    return segs


def build(home: Path, items: int, seed: int, sample_every: int = 97) -> tuple[float, list[list[dict]]]:
    """Index ``items`` transcripts; returns the seconds it took and a few transcripts to draw queries from."""
    rng = np.random.default_rng(seed)
    vocab = np.array(vocabulary(rng), dtype=object)
    cdf = zipf_cdf()
    samples: list[list[dict]] = []
    t0 = time.perf_counter()
    with S.bulk(home) as ix:
        for i in range(items):
            segs = transcript(rng, vocab, cdf)
            batch = i // 1000  # 1,000 items a batch, as a big archive would be split
            ix.add(batch_id=f"bench-{batch}", batch_name=f"archive {batch}", n=i % 1000 + 1, item_id=f"v{i:05d}",
                   title=f"Episode {i}", source=f"https://example.invalid/v{i:05d}", workdir=f"/nowhere/{i}",
                   segments=segs)
            if i % sample_every == 0 and len(samples) < 40:
                samples.append(segs)
            if (i + 1) % 500 == 0:
                print(f"  indexed {i + 1}/{items} items ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
                      flush=True)
        ix.conn.execute("COMMIT")  # optimize outside the last group's transaction, so it is timed on its own
        ix.conn.execute("BEGIN IMMEDIATE")
        ix.optimize()
    return time.perf_counter() - t0, samples


def query_mix(n: int, seed: int, samples: list[list[dict]]) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed + 1)
    vocab = vocabulary(np.random.default_rng(seed))  # the build's vocabulary (same seed, same first draws)
    kinds = ["word"] * 4 + ["common"] + ["phrase"] * 2 + ["prefix"] * 2 + ["and"]
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        segs = samples[int(rng.integers(len(samples)))]
        seg = segs[int(rng.integers(len(segs)))]
        words = seg["text"].rstrip(".").lower().split()
        if kind == "word":
            q = vocab[int(rng.integers(len(vocab)))]
        elif kind == "common":
            q = vocab[int(rng.integers(100))]
        elif kind == "phrase":
            k = int(rng.integers(2, 4))
            at = int(rng.integers(0, max(1, len(words) - k)))
            q = '"' + " ".join(words[at:at + k]) + '"'
        elif kind == "prefix":
            w = vocab[int(rng.integers(200, len(vocab)))]
            q = w[: int(rng.integers(3, 6))] + "*"
        else:
            a, b = rng.choice(len(words), size=2, replace=False)
            q = f"{words[int(a)]} {words[int(b)]}"
        out.append((kind, q))
    return out


def pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(p / 100 * len(v) + 0.5) - 1))]


def time_queries(home: Path, mix: list[tuple[str, str]]) -> dict[str, list[float]]:
    for _, q in mix[:10]:  # warm-up: the page cache, SQLite's schema parse
        S.search(home, q)
    by_kind: dict[str, list[float]] = {}
    for kind, q in mix:
        t0 = time.perf_counter()
        S.search(home, q, limit=20)
        by_kind.setdefault(kind, []).append((time.perf_counter() - t0) * 1000)
    return by_kind


def like_scan(conn: sqlite3.Connection, table: str, column: str, q: str) -> list[tuple]:
    """The naive search: every chunk whose text contains each term (LIKE), ranked by how often they occur —
    ranking needs every match, so the whole table is read."""
    terms = [t.strip('"').rstrip("*").lower() for t in (q.split() if not q.startswith('"') else [q])]
    where = " AND ".join(f"{column} LIKE ?" for _ in terms)
    rows = conn.execute(f"SELECT rowid, {column} FROM {table} WHERE {where}", [f"%{t}%" for t in terms]).fetchall()
    return sorted(rows, key=lambda r: -sum(r[1].lower().count(t) for t in terms))[:20]


def naive_side_by_side(tmp: Path, items: int, seed: int, mix: list[tuple[str, str]]) -> dict[str, float]:
    """Ours vs a LIKE scan, on the same ``items`` transcripts: the same chunks in an FTS5 index and a plain table."""
    home = tmp / "subset"
    home.mkdir()
    build(home, items, seed)
    plain = sqlite3.connect(home / "plain.sqlite")
    plain.execute("CREATE TABLE chunks(item INTEGER, start REAL, text TEXT)")
    src = sqlite3.connect(S.index_path(home))
    plain.executemany("INSERT INTO chunks VALUES(?,?,?)", src.execute("SELECT rowid >> 20, start, text FROM chunks"))
    plain.commit()
    src.close()
    ours, naive = [], []
    for _, q in mix:
        t0 = time.perf_counter()
        S.search(home, q, limit=20)
        ours.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        like_scan(plain, "chunks", "text", q)
        naive.append((time.perf_counter() - t0) * 1000)
    plain.close()
    return {"items": items, "queries": len(mix), "ours_p50_ms": round(statistics.median(ours), 2),
            "naive_like_p50_ms": round(statistics.median(naive), 2),
            "naive_over_ours": round(statistics.median(naive) / max(1e-6, statistics.median(ours)), 1)}


def full_size_like(home: Path, mix: list[tuple[str, str]]) -> float:
    """The LIKE scan over the full index's own stored text (FTS5's content table), median ms of a few queries."""
    conn = sqlite3.connect(S.index_path(home))
    times = []
    for _, q in mix:
        t0 = time.perf_counter()
        like_scan(conn, "chunks_content", "c0", q)
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return round(statistics.median(times), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=7000, help="one-hour transcripts to index (default 7000)")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--naive-items", type=int, default=300, help="subset for the LIKE side by side (0: skip)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--keep", help="build in this folder and keep it (default: a temporary folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tubemill-bench-search-") as tmp_name:
        tmp = Path(args.keep) if args.keep else Path(tmp_name)
        home = tmp / "home"
        home.mkdir(parents=True)
        print(f"building the index of {args.items} one-hour transcripts in {home}", file=sys.stderr, flush=True)
        build_s, samples = build(home, args.items, args.seed)
        stats = S.index_stats(home)
        mix = query_mix(args.queries, args.seed, samples)
        by_kind = time_queries(home, mix)
        every = [ms for v in by_kind.values() for ms in v]
        capped = sum(1 for _, q in mix if S.search(home, q).capped)
        side = naive_side_by_side(tmp, min(args.naive_items, args.items), args.seed, mix[:60]) \
            if args.naive_items else None
        if side:
            side["full_size_like_p50_ms"] = full_size_like(home, mix[:5])
            side["full_size_like_over_ours_p50"] = round(side["full_size_like_p50_ms"] / pct(every, 50), 1)
        figures = {
            "items": args.items, "minutes_each": MINUTES, "segments": stats.segments, "chunks": stats.chunks,
            "words": args.items * MINUTES * WPM, "index_mb": round(stats.bytes / 1e6, 1),
            "build_s": round(build_s, 1), "queries": len(every),
            "query_p50_ms": round(pct(every, 50), 2), "query_p95_ms": round(pct(every, 95), 2),
            "query_max_ms": round(max(every), 2),
            "by_kind": {k: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2)}
                        for k, v in by_kind.items()},
            "capped_queries": capped, "rank_cap": S.RANK_CAP, "p95_target_ms": P95_TARGET_MS,
            "p95_ok": pct(every, 95) < P95_TARGET_MS, "naive": side, "cpus": os.cpu_count(),
            "sqlite": sqlite3.sqlite_version,
        }
        print(f"index: {figures['index_mb']} MB for {args.items} items ({stats.chunks} chunks, {stats.segments} "
              f"segments), built in {figures['build_s']} s")
        print(f"queries: p50 {figures['query_p50_ms']} ms, p95 {figures['query_p95_ms']} ms over {len(every)} "
              f"(target p95 < {P95_TARGET_MS:.0f} ms); {capped} ranked among the newest {S.RANK_CAP} matches")
        for k, v in figures["by_kind"].items():
            print(f"  {k:<7} n={v['n']:<4} p50 {v['p50_ms']:>7} ms  p95 {v['p95_ms']:>7} ms")
        if side:
            print(f"side by side on {side['items']} items: FTS5 p50 {side['ours_p50_ms']} ms, LIKE scan p50 "
                  f"{side['naive_like_p50_ms']} ms -> {side['naive_over_ours']}x; LIKE over all {args.items} items "
                  f"p50 {side['full_size_like_p50_ms']} ms -> {side['full_size_like_over_ours_p50']}x ours")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

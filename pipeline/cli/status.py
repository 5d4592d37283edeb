"""``tubemill status``: every batch of the home, or one batch's items, as lines or one JSON object."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipeline.app.progress import fmt_duration
from pipeline.cli.base import EXIT_OK, quoted
from state.lock import read_owner
from state.reader import find_summary, read_batch, read_summaries

STATUS_ITEM_FIELDS = ("n", "source", "id", "title", "status", "stage", "attempts", "error", "flags")
WAIT_LINES = 50  # items shown one per line with their wait reason; the rest are counted per reason


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``status`` command and its flags."""
    s = sub.add_parser("status", help="show batches, or one batch's items")
    s.add_argument("batch", nargs="?")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout")


def account_lines(rows: list[dict[str, Any]], held: str | None) -> list[str]:
    """Download accounts for ``tubemill status``: state, wait, delay multiplier, downloads, failures."""
    if not rows:
        return []
    out = ["download accounts:"]
    for r in rows:
        state = r["state"] + (f" {fmt_duration(r['wait_s'])}" if r.get("wait_s") else "")
        if r.get("disabled"):
            state += f" ({r['disabled']})"
        out.append(f"  {r['account']:<20} {state:<24} x{r['multiplier']:<5.2f} {r['downloads']:>6} downloaded  "
                   f"{r['failures']} failed ({r['rate_limits']} rate-limited)")
    if held:
        out.append(f"  downloads held: {held}")
    return out



def summary_counts(items: list[dict[str, Any]]) -> dict[str, int]:
    """Items per summary outcome (llm, repaired, offline, fallback)."""
    out: dict[str, int] = {}
    for it in items:
        outcome = (it.get("meta") or {}).get("summary_outcome")
        if outcome:
            out[outcome] = out.get(outcome, 0) + 1
    return out



def summary_lines(name: str, items: list[dict[str, Any]]) -> list[str]:
    """How the batch's summaries came out, and which fell back (why), with the command that asks again."""
    counts = summary_counts(items)
    if not counts:
        return []
    out = ["  summaries: " + ", ".join(f"{counts[k]} {k}" for k in ("llm", "repaired", "offline", "fallback")
                                       if counts.get(k))]
    fell = [it for it in items if (it.get("meta") or {}).get("summary_outcome") == "fallback"]
    for it in fell[:20]:
        reason = (it.get("meta") or {}).get("summary_reason") or ""
        out.append(f"  #{it['n']:<5} summary fell back: {(it.get('title') or it['source'])[:50]}: {reason[:120]}")
    if len(fell) > 20:
        out.append(f"  … and {len(fell) - 20} more")
    if fell:
        out.append(f"  ask the LLM again for these (transcripts are kept): tubemill retry-summaries {quoted(name)}")
    return out



def wait_lines(items: list[dict[str, Any]], waits: dict[int, str], limit: int = WAIT_LINES) -> list[str]:
    """Why each item left is not running ("why waiting"): the first ``limit`` one per line, the rest per reason."""
    left = [it for it in items if it["n"] in waits]
    out = []
    for it in left[:limit]:
        err = it.get("error") or {}
        last = (f" (last error {err['type']}: {str(err.get('message', ''))[:80]})"
                if it["status"] == "waiting" and err.get("type") else "")
        out.append(f"  #{it['n']:<5} {it['status']:<8} {(it.get('title') or it['source'])[:50]}: why waiting: "
                   f"{waits[it['n']]}{last}")
    rest: dict[str, int] = {}
    for it in left[limit:]:
        rest[waits[it["n"]]] = rest.get(waits[it["n"]], 0) + 1
    out += [f"  … and {c} more: {r}" for r, c in sorted(rest.items(), key=lambda kv: -kv[1])]
    return out


def cmd_status(args: argparse.Namespace, home: Path) -> int:
    """Every batch (with the download accounts), or one batch: its counts, summaries and the items to look at."""
    from pipeline.engine.ratelimit import read_account_rows

    rows, held = read_account_rows(home, time.time())
    if not args.batch:
        summaries = read_summaries(home)
        if args.json:
            print(json.dumps({"batches": [s.to_dict() for s in summaries], "owner": read_owner(home),
                              "accounts": rows, "downloads_held": held}))
            return EXIT_OK
        if not summaries:
            print(f"no batches in {home}")
        for s in summaries:
            c = s.counts
            print(f"{s.name:<30} {s.state:<9} {c.get('done', 0):>6}/{s.total:<6} done  "
                  f"{c.get('failed', 0)} failed  {c.get('running', 0)} running  ETA {fmt_duration(s.eta_s)}")
        for line in account_lines(rows, held):
            print(line)
        return EXIT_OK
    s = find_summary(home, args.batch)
    header, items = read_batch(home, s.id)
    from pipeline.engine.outputs import _redact
    from pipeline.engine.waits import from_files
    from pipeline.recipes.transcribe.report import summary_outcome

    waits, batch_wait = from_files(home, s.id)
    if args.json:
        batch = _redact({**header, **{k: v for k, v in s.to_dict().items() if k not in ("counts",)},
                         "download_accounts": rows, "downloads_held": held})
        print(json.dumps({
            "batch": batch,
            "counts": s.counts,
            "summaries": summary_counts(items),
            "wait": batch_wait,
            "items": [{**{k: it.get(k) for k in STATUS_ITEM_FIELDS}, "summary": summary_outcome(it),
                       "wait": waits.get(it["n"])} for it in items],
        }))
        return EXIT_OK
    from pipeline.app.progress import active_lines, summary_line

    print(summary_line(s))
    print(f"  recipe: {' → '.join(s.recipe)}   output: {s.output_dir}")
    if batch_wait:
        print(f"  nothing runs: {batch_wait}")
    for line in active_lines(s):
        print(line)
    for line in summary_lines(s.name, items):
        print(line)
    for it in items:
        if it["status"] == "failed":
            err = it.get("error") or {}
            print(f"  #{it['n']:<5} {it['status']:<8} {it.get('title') or it['source'][:50]}: "
                  f"{err.get('type', '')}: {err.get('message', '')}")
    for line in wait_lines(items, waits):
        print(line)
    for line in account_lines(rows, held):
        print(line)
    return EXIT_OK

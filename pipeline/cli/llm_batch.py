"""``tubemill llm-batch``: summaries of finished items through the Batch API, one step per call."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.cli.base import EXIT_OK, CliError
from pipeline.config.settings import load_settings
from state.reader import find_summary, read_batch, read_summaries


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``llm-batch`` command and its flags."""
    lb = sub.add_parser("llm-batch", help="summaries of finished items through the Batch API, step by step")
    lb.add_argument("action", choices=("prepare", "submit", "status", "ingest"))
    lb.add_argument("batches", nargs="*", help="batches to take finished items from (prepare)")
    lb.add_argument("--all", action="store_true", help="every batch (prepare)")
    lb.add_argument("--job", help="the job to act on (default: the newest)")
    lb.add_argument("--force", action="store_true", help="also items that already have an LLM summary")


def cmd_llm_batch(args: argparse.Namespace, home: Path) -> int:
    """One step of a Batch API job: prepare, submit, status or ingest (each a separate call: jobs take hours)."""
    from pipeline.config.secrets import llm_config_for
    from pipeline.recipes.transcribe import llm_batch

    config = llm_config_for(home, load_settings(home))
    if not config.configured():
        raise CliError("no LLM configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for another server)")
    if args.action == "prepare":
        if not args.batches and not args.all:
            raise CliError("name batches or pass --all")
        refs = [s.name for s in read_summaries(home)] if args.all else args.batches
        items = []
        for ref in refs:
            s = find_summary(home, ref)
            items += [{**it, "batch_id": s.id} for it in read_batch(home, s.id)[1] if it["status"] == "done"]
        folder, state = llm_batch.prepare_job(home, items, config, name=args.job, force=args.force)
        total = sum(f["requests"] for f in state["files"])
        print(f"prepared {total} request(s) in {len(state['files'])} file(s): {folder}")
        return EXIT_OK
    folder, state = llm_batch.load_job(home, args.job)
    api = llm_batch.BatchAPI(config)
    if args.action == "submit":
        llm_batch.submit_job(folder, state, api)
        for f in state["files"]:
            print(f"{f['path']}: {f['batch_id']} {f.get('status')}")
    elif args.action == "status":
        llm_batch.refresh_job(folder, state, api)
        for f in state["files"]:
            c = f.get("request_counts") or {}
            print(f"{f['path']}: {f.get('batch_id') or 'not submitted'} {f.get('status', '')} "
                  f"{c.get('completed', 0)}/{c.get('total', f['requests'])} done, {c.get('failed', 0)} failed"
                  + (" (ingested)" if f.get("ingested") else ""))
    else:
        res = llm_batch.ingest_job(folder, state, api)
        waiting = [f["path"] for f in state["files"] if not f.get("ingested")]
        print(f"ingested {res['ingested']} summary(ies), {res['failed']} failed"
              + (f"; still running: {', '.join(waiting)}" if waiting else ""))
    return EXIT_OK

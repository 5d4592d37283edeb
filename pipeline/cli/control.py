"""``pause``, ``resume``, ``cancel``, ``retry-failed``, ``retry-summaries``: one batch or every batch.

Sent to the engine that owns the home; when none does, ``resume`` and the retries make this
process the engine and follow the batch here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.cli.base import EXIT_OK, CliError, say_dask
from pipeline.cli.follow import follow
from pipeline.config.settings import load_settings
from pipeline.engine.core import Engine
from state.lock import read_owner

RETRIES = ("retry_failed", "retry_summaries", "retry_translations", "retry_extras")  # reopen items: they name one batch
RUNS_HERE = ("resume", *RETRIES)  # with no engine on the home, this process runs the batch


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The control commands: the retries name one batch, the others one batch or ``--all``."""
    for name, text in (("pause", "start nothing new; running stages finish"), ("resume", "resume a paused batch"),
                       ("cancel", "cancel a batch"), ("retry-failed", "run failed items again"),
                       ("retry-summaries", "ask the LLM again for summaries that fell back to the offline "
                                           "summarizer (transcripts are kept)"),
                       ("retry-translations", "ask the LLM again for --translate-to translations that failed or "
                                              "are partial (transcripts and summaries are kept)"),
                       ("retry-extras", "set the custom thumbnails and playlist entries YouTube refused (the "
                                        "videos are not uploaded again)")):
        c = sub.add_parser(name, help=text)
        if name.replace("-", "_") in RETRIES:
            c.add_argument("batch")
        else:
            c.add_argument("batch", nargs="?")
            c.add_argument("--all", action="store_true", help="every batch")


def cmd_control(args: argparse.Namespace, home: Path) -> int:
    """Pause, resume, cancel or reopen one batch or ``--all``; on the settings' cluster when it may run here."""
    op = args.command.replace("-", "_")
    ref = args.batch
    if not ref and not getattr(args, "all", False):
        raise CliError(f"name a batch or pass --all to {args.command} every batch")
    settings, dx = load_settings(home), None
    if op in RUNS_HERE and settings.executor and not read_owner(home):
        # This process may end up running the batch: on the cluster the settings name, like `run`.
        from pipeline.engine.distributed import engine_executors

        settings, dx = engine_executors(settings.executor, settings, settings.output_root(home))
        say_dask(dx)
    try:
        engine = Engine(home, settings=settings, role=f"tubemill {args.command}", takeover=False,
                        executors=dx.executors if dx else None)
        return _control(engine, args, op, ref)
    finally:
        if dx is not None:
            dx.close()



def _control(engine: Engine, args: argparse.Namespace, op: str, ref: str | None) -> int:
    owner = engine.start(run_scheduler=False)
    try:
        for msg in engine.messages:
            print(f"tubemill: warning: {msg}", file=sys.stderr)
        name = engine.summary(ref).name if ref else None  # an unknown batch is one clear line
        count = engine.control(op, ref)
    except BaseException:
        engine.shutdown()
        raise
    if op in RETRIES and name and not count:
        engine.shutdown()
        why = {"retry_summaries": " (no summary fell back)", "retry_translations": " (no translation failed)",
               "retry_extras": " (no thumbnail or playlist insert failed)"}
        print(f"nothing to retry in {name!r}" + why.get(op, ""))
        return EXIT_OK
    if owner and op in RUNS_HERE and name:
        # Nobody else runs this home: this process becomes the engine and runs the batch here.
        engine.run_scheduler()
        s = engine.summary(name)
        if op == "retry_summaries":
            print(f"asking the LLM again for {count} summary(ies) of {s.name!r}; transcripts are kept",
                  file=sys.stderr)
        elif op == "retry_translations":
            print(f"asking the LLM again for {count} translation(s) of {s.name!r}; transcripts are kept",
                  file=sys.stderr)
        print(f"running {s.name!r} ({s.total - s.finished} item(s) left)", file=sys.stderr)
        return follow(engine, s.id, True)
    engine.shutdown()
    what = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}.get(op, "reopened")
    target = repr(name) if name else "every batch"
    print(f"{what} {target}" + (f" ({count} item(s))" if op in RETRIES else ""))
    if owner and op == "resume":
        print("no engine is running this home; start one with `tubemill app` or `tubemill resume NAME`")
    return EXIT_OK

"""Following a batch in the foreground: the progress view until it ends, Ctrl-C and SIGTERM.

Shared by ``run`` and by ``resume`` / ``retry-*`` when this process becomes the engine.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.app.progress import ProgressView
from pipeline.cli.base import EXIT_FAILED_ITEMS, EXIT_INTERRUPTED, EXIT_OK, quoted
from pipeline.engine.core import Engine
from state.lock import describe_owner, read_owner
from state.models import BatchState


def follow(engine: Engine, bid: str, owner: bool) -> int:
    """Show progress until the batch ends; Ctrl-C pauses it (or detaches when another process runs it)."""
    _sigterm_as_interrupt()
    s = engine.summary(bid)
    try:
        with ProgressView() as view:
            while True:
                s = engine.summary(bid)
                view.update(s)
                if s.state in (BatchState.DONE, BatchState.CANCELLED) and not s.counts.get("running"):
                    break
                if s.state == BatchState.PAUSED and not s.counts.get("running"):
                    view.final(s)
                    print(f"batch {s.name!r} is paused; continue with: tubemill resume {quoted(s.name)}")
                    engine.shutdown()
                    return EXIT_FAILED_ITEMS if s.counts.get("failed") else EXIT_OK
                time.sleep(0.2)
            view.final(s)
    except KeyboardInterrupt:
        return _interrupted(engine, bid, s.name)
    engine.shutdown()
    if s.counts.get("failed"):
        print(f"{s.counts['failed']} item(s) failed; see tubemill status {quoted(s.name)} "
              f"or {Path(s.output_dir) / 'manifest.json'}", file=sys.stderr)
        return EXIT_FAILED_ITEMS
    return EXIT_OK


def _interrupted(engine: Engine, bid: str, name: str) -> int:
    """Ctrl-C (or SIGTERM) while following: detach, stop a finished batch, or pause a running one."""
    signal.signal(signal.SIGINT, _hard_exit)
    if not engine.owner:
        print(f"\ndetached; the batch keeps running in {describe_owner(read_owner(engine.home))}. "
              f"Watch it with: tubemill status {quoted(name)}", file=sys.stderr)
        engine.shutdown()
        return EXIT_INTERRUPTED
    state = engine.summary(bid).state
    if state in (BatchState.CANCELLED, BatchState.DONE):
        # Say what really happened: a cancelled batch is not paused, and resuming it is a choice.
        print(f"\nbatch {name!r} is {state}; stopping running stages…", file=sys.stderr)
        engine.shutdown(interrupt=True, timeout=15)
        print(f"{state}." + (f" To run it again: tubemill resume {quoted(name)}" if state == BatchState.CANCELLED
                             else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    print("\npausing: stopping running stages…", file=sys.stderr)
    engine.pause(bid)
    t0 = time.monotonic()
    engine.shutdown(interrupt=True, timeout=15)
    print(f"paused (running stages stopped in {time.monotonic() - t0:.1f}s). "
          f"Resume with: tubemill resume {quoted(name)}", file=sys.stderr)
    return EXIT_INTERRUPTED


def _hard_exit(signum: int, frame: Any) -> None:
    print("\nstopped hard; interrupted items resume at the next start", file=sys.stderr)
    os._exit(EXIT_INTERRUPTED)


def _sigterm_as_interrupt() -> None:
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (tests calling main() from a thread)
        pass

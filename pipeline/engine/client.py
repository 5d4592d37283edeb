"""Submit, control and read batches, from the process that owns the home or from any other.

An owner applies a request directly; a follower (the app while the CLI runs a batch, a
second CLI) posts it as a control request file and waits for the owner's reply, and reads
snapshots from the state files. Both go through the same methods, so a page never needs
to know which it is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.engine.outputs import export_batch
from pipeline.engine.recipe import recipe_of
from pipeline.engine.stage import safe_name
from state import control
from state.lock import read_owner
from state.models import BatchState, BatchSummary
from state.reader import find_summary, read_batch, read_summaries
from state.store import Store

CONTROL_OPS = ("pause", "resume", "cancel", "retry_failed")


class EngineClient:
    """The engine's public face; ``store`` is set only while this process owns the home."""

    home: Path
    output_root: Path
    store: Store | None

    @property
    def owner(self) -> bool:
        return self.store is not None

    def _ask_owner(self, op: str, timeout: float, **args: Any) -> dict[str, Any]:
        req = control.post_request(self.home, op, **args)
        reply = control.wait_reply(self.home, req, timeout=timeout)
        if reply is None:
            raise errors.TubemillError(f"the engine owning {self.home} did not answer")
        if not reply["ok"]:
            raise errors.TubemillError(reply["message"])
        return reply

    # ------------------------------------------------------------------ control
    def pause(self, ref: str | None = None) -> None:
        """Start nothing new in the batch (or all batches); running stages finish."""
        self.control("pause", ref)

    def resume(self, ref: str | None = None) -> None:
        self.control("resume", ref)

    def cancel(self, ref: str | None = None) -> None:
        """Stop the batch: waiting items are cancelled, running stages stop at their next check."""
        self.control("cancel", ref)

    def retry_failed(self, ref: str) -> int:
        """Failed items get a fresh attempt budget and run again from the stage that failed."""
        return self.control("retry_failed", ref)

    def reopen(self, ref: str, action: str) -> int:
        """Run one of the batch recipe's reopen actions (``retry_summaries``): finished items carrying its
        flag run again from its stage, every earlier stage kept. Returns the number of items reopened."""
        return self.control(f"reopen:{action}", ref)

    def control(self, op: str, ref: str | None) -> int:
        """Apply ``pause|resume|cancel|retry_failed`` or a recipe action (``retry_summaries``, also spelled
        ``reopen:retry_summaries``) to one batch, or to all with ``ref=None``."""
        if op not in CONTROL_OPS and not op.startswith("reopen:"):
            op = f"reopen:{op}"
        if not self.owner:
            return int(self._ask_owner(op, 10.0, batch=ref).get("count", 0))
        return self._control_here(op, ref)

    def _control_here(self, op: str, ref: str | None) -> int:
        raise NotImplementedError  # the owning Engine applies it

    def item_action(self, ref: str, n: int, action: str) -> None:
        """One item by hand: ``retry`` (now, from its stage), ``skip`` (the batch goes on without it) or
        ``remove`` (out of the batch, files kept). Raises TubemillError saying why when it is not allowed."""
        if not self.owner:
            self._ask_owner("item_action", 10.0, batch=ref, n=n, action=action)
            return
        self._item_action_here(ref, n, action)

    def _item_action_here(self, ref: str, n: int, action: str) -> None:
        raise NotImplementedError  # the owning Engine applies it

    def _finishing_state(self, bid: str) -> str | None:
        return None  # the owning Engine knows which batches it is finishing

    # ------------------------------------------------------------------ reads
    def summaries(self) -> list[BatchSummary]:
        if self.store is not None:
            return self.store.summaries()
        return read_summaries(self.home)

    def summary(self, ref: str) -> BatchSummary:
        if self.store is not None:
            return self.store.summary(self.store.resolve(ref))
        return find_summary(self.home, ref)

    def batch_header(self, ref: str) -> dict[str, Any]:
        """The batch's stored header (options, Batch API jobs, notes), from memory or the file."""
        if self.store is not None:
            return self.store.header(self.store.resolve(ref))
        return read_batch(self.home, find_summary(self.home, ref).id)[0]

    def items(self, ref: str, **kw: Any) -> list[dict[str, Any]]:
        if self.store is not None:
            return self.store.items(self.store.resolve(ref), **kw)
        s = find_summary(self.home, ref)
        _, items = read_batch(self.home, s.id)
        wanted = set(kw.get("status") or ())
        items = [i for i in items if not wanted or i["status"] in wanted]
        off, lim = kw.get("offset", 0), kw.get("limit")
        return items[off : off + lim if lim is not None else None]

    def export(self, ref: str) -> dict[str, Path]:
        """(Re)write the batch outputs: manifest.json/.csv, errors.md, stats.json, and the recipe's own
        (the transcribe recipe's PDF and ZIP)."""
        s = self.summary(ref)
        header = {k: v for k, v in s.to_dict().items() if k not in ("active", "held", "eta_s")}
        final = self._finishing_state(s.id)
        if final:  # written as the batch finishes: the manifest records the state it ends in, not "active"
            header["state"] = final
        extra = s.options.get("output_manifest")
        folder = Path(s.output_dir or self.output_root / safe_name(s.name))
        items = self.items(s.id)
        recipe = recipe_of(s.options)
        return export_batch(header, items, folder, extra_manifest=Path(extra) if extra else None,
                            extras=recipe.outputs if recipe is not None else None)

    # ------------------------------------------------------------------ wait reasons (pipeline/engine/waits.py)
    def waits(self, ref: str) -> dict[int, str]:
        """For each pending, waiting or parked item of the batch, one short reason why it is not running now
        ("pacing: account anonymous on youtube.com until 14:02:11", "retry at 14:03:00 (attempt 2)", "paused")."""
        return self._waits(ref)[0]

    def batch_wait(self, ref: str) -> str | None:
        """Why the batch runs nothing although items are left; None while something runs (or nothing is left)."""
        return self._waits(ref)[1]

    def _waits(self, ref: str) -> tuple[dict[int, str], str | None]:
        from pipeline.engine import waits

        if self.store is not None:
            return waits.live(self, ref)  # type: ignore[arg-type]  # only an Engine owns a store
        clock = getattr(self, "clock", None)
        return waits.from_files(self.home, ref, clock.now() if clock is not None else None)

    # ------------------------------------------------------------------ more reads
    def owner_info(self) -> dict[str, Any] | None:
        return read_owner(self.home)

    def wait(self, ref: str, timeout: float | None = None, poll: float = 0.05) -> BatchSummary:
        """Block until the batch has nothing left to run (done, cancelled) or ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.summary(ref)
            if s.state in (BatchState.DONE, BatchState.CANCELLED) and not s.counts.get("running"):
                return s
            if deadline is not None and time.monotonic() >= deadline:
                return s
            time.sleep(poll)

"""Pause, resume, cancel, retry and reopen as the owner applies them, and parked items coming back.

Followers reach these through control request files (``pipeline.engine.client``); here
they change the store and the scheduler's queues under the engine's lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.engine.client import CONTROL_OPS
from pipeline.engine.recipe import recipe_of
from pipeline.engine.stage import safe_name
from pipeline.engine.worker import item_log
from state import control
from state.models import BatchState, ItemStatus

if TYPE_CHECKING:
    from pipeline.engine.core import Engine


class Controls:
    """The owner's side of every control request."""

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    def create(self, name: str, stage_names: list[str], sources: list[str | dict[str, Any]], opts: dict[str, Any],
               output_dir: str | None, *, resume: bool, paused: bool) -> str:
        """The owner's side of ``submit``: a new batch stored and activated, or with ``resume`` the old one."""
        assert self.e.store is not None
        with self.e.lock:
            try:
                existing = self.e.store.resolve(name)
            except errors.UnknownBatch:
                existing = None
            if existing and not resume:
                raise errors.BatchExists(f"a batch named {name!r} already exists; add --resume to continue it")
            if existing:
                self.add_to(existing, sources)
                return existing
            from pipeline.config.secrets import save_private_options, split_private_options

            out = Path(output_dir).expanduser() if output_dir else self.e.output_root
            public, private = split_private_options(opts)  # a proxy password never reaches the state file
            batch_id = self.e.store.create_batch(name, stage_names, sources, options=public,
                                                 output_dir=str(out / safe_name(name, default="batch")))
            save_private_options(self.e.home, batch_id, private)
            if paused:
                self.e.store.set_batch(batch_id, state=BatchState.PAUSED)
            self.e.activate(batch_id)
        self.e.kick()
        return batch_id

    def add_to(self, bid: str, sources: list[str | dict[str, Any]]) -> None:
        """``--resume``: the sources not in the batch yet join it, and the batch runs again."""
        assert self.e.store is not None
        known = {it.get("id") or it["source"] for it in self.e.store.items(bid)}
        self.e.store.add_items(bid, [s for s in sources if _item_key(s) not in known])
        if self.e.store.header(bid)["state"] in (BatchState.PAUSED, BatchState.CANCELLED):
            self.resume(bid)
        elif bid not in self.e.scheduler.runs:
            self.e.store.set_batch(bid, state=BatchState.ACTIVE)
            self.e.activate(bid)
        else:
            self.e.scheduler.enqueue_new(bid)
        self.e.kick()

    def apply(self, op: str, ref: str | None) -> int:
        assert self.e.store is not None
        with self.e.lock:
            ids = [self.e.store.resolve(ref)] if ref else self.e.store.batch_ids()
            count = sum(self._apply(op, bid, explicit=ref is not None) for bid in ids)
        self.e.kick()
        return count

    def _apply(self, op: str, bid: str, explicit: bool) -> int:
        assert self.e.store is not None
        state = self.e.store.header(bid)["state"]
        if op == "pause" and state == BatchState.ACTIVE:
            self.e.store.set_batch(bid, state=BatchState.PAUSED)
            if bid in self.e.scheduler.runs:
                self.e.scheduler.runs[bid].pause.set()
        elif op == "resume" and (state == BatchState.PAUSED or (explicit and state == BatchState.CANCELLED)):
            self.resume(bid)
        elif op == "cancel" and state in (BatchState.ACTIVE, BatchState.PAUSED):
            self._cancel(bid)
        elif op == "retry_failed" or op.startswith("reopen:"):
            n = (self.e.store.reopen_items(bid, [ItemStatus.FAILED]) if op == "retry_failed"
                 else self._reopen(bid, op.partition(":")[2]))
            if n:
                self.e.store.set_batch(bid, state=BatchState.ACTIVE, finished_at=None)
                if bid in self.e.scheduler.runs:
                    self.e.scheduler.enqueue_new(bid)
                else:
                    self.e.activate(bid)
            return n
        elif op not in CONTROL_OPS:
            raise errors.ConfigError(f"unknown control {op!r}")
        return 1

    def _reopen(self, bid: str, action: str) -> int:
        """Reopen done items carrying the action's flag at its stage (the files it names removed first)."""
        assert self.e.store is not None
        header = self.e.store.header(bid)
        recipe = recipe_of(header.get("options") or {})
        spec = recipe.actions.get(action) if recipe is not None else None
        if spec is None:
            raise errors.ConfigError(f"this batch's recipe has no {action!r}")
        stages = header.get("recipe") or []
        if spec.stage not in stages:
            return 0
        if spec.before is not None:
            spec.before()
        numbers = []
        for item in self.e.store.items(bid, status=[ItemStatus.DONE]):
            if spec.flag not in (item.get("flags") or []) or not item.get("workdir"):
                continue
            wd = Path(item["workdir"])
            for name in spec.remove:
                (wd / name).unlink(missing_ok=True)
            item_log(str(wd), f"{spec.stage}: {spec.note or action}")
            numbers.append(item["n"])
        return self.e.store.reopen_at_stage(bid, numbers, stages.index(spec.stage))

    def item_action(self, bid: str, n: int, action: str) -> None:
        """One item, by hand: ``retry`` (run again now, from its stage, with a fresh attempt budget), ``skip``
        (the batch goes on without it) or ``remove`` (out of the batch; its files stay). What each status
        allows is :data:`ITEM_ACTIONS`; a running item allows nothing: its stage would finish into a record
        that changed under it."""
        assert self.e.store is not None
        store = self.e.store
        if action not in ("retry", "skip", "remove"):
            raise errors.ConfigError(f"unknown item action {action!r} (retry, skip or remove)")
        with self.e.lock:
            try:
                item = store.item(bid, n)
            except KeyError:
                raise errors.TubemillError(f"the batch has no item {n}") from None
            status = item["status"]
            run = self.e.scheduler.runs.get(bid)
            if status == ItemStatus.RUNNING or (run is not None and n in run.running):
                raise errors.TubemillError(f"item {n} is running; wait for its stage to finish, or pause the batch")
            if action == "retry" and status == ItemStatus.PENDING:
                return  # already next in line for its stage
            if action not in ITEM_ACTIONS.get(status, ()):
                raise errors.TubemillError(_refusal(n, status, action))
            if action == "retry":
                fresh = {} if status == ItemStatus.WAITING else {"attempts": 0, "error": None, "progress": 0.0}
                store.transition(bid, n, ItemStatus.PENDING, next_attempt_at=None, **fresh)
                item_log(item.get("workdir"), "retry now, asked by hand")
                if store.header(bid)["state"] in (BatchState.DONE, BatchState.CANCELLED):
                    store.set_batch(bid, state=BatchState.ACTIVE, finished_at=None)
                if run is not None:
                    self.e.scheduler.ready(run, store.item(bid, n))
                else:
                    self.e.activate(bid)
            elif action == "skip":
                store.transition(bid, n, ItemStatus.SKIPPED, next_attempt_at=None, stage=None)
                item_log(item.get("workdir"), "skipped by hand")
                self.e.outcomes.check_finished(bid)
            else:
                self.e.scheduler.forget(bid, n)
                store.remove_item(bid, n)
                _unindex(self.e.home, bid, n)
                item_log(item.get("workdir"), "removed from the batch by hand (files kept)")
                self.e.outcomes.check_finished(bid)
        self.e.kick()

    def release(self, bid: str, n: int) -> None:
        """A parked item goes back to the stage that parked it (which finds what its service prepared)."""
        assert self.e.store is not None
        with self.e.lock:
            if self.e.store.item(bid, n)["status"] != ItemStatus.PARKED:
                return
            self.e.store.transition(bid, n, ItemStatus.PENDING, stage=None, parked=None)
            run = self.e.scheduler.runs.get(bid)
            if run is not None and not run.cancel.is_set():
                self.e.scheduler.ready(run, self.e.store.item(bid, n))
        self.e.kick()

    def fail_parked(self, bid: str, n: int, exc: errors.TubemillError) -> None:
        assert self.e.store is not None
        with self.e.lock:
            item = self.e.store.item(bid, n)
            if item["status"] != ItemStatus.PARKED:
                return
            self.e.outcomes.fail_item(bid, item, exc, item.get("stage") or "?", self.e.clock.now())
            self.e.outcomes.check_finished(bid)
        self.e.kick()

    def resume(self, bid: str) -> None:
        assert self.e.store is not None
        reopened = 0
        if self.e.store.header(bid)["state"] == BatchState.CANCELLED:
            reopened = self.e.store.reopen_items(bid, [ItemStatus.CANCELLED])
        self.e.store.set_batch(bid, state=BatchState.ACTIVE, finished_at=None)
        if bid not in self.e.scheduler.runs:
            self.e.activate(bid)
        else:
            self.e.scheduler.runs[bid].pause.clear()
            if reopened:
                self.e.scheduler.enqueue_new(bid)

    def _cancel(self, bid: str) -> None:
        assert self.e.store is not None
        self.e.store.set_batch(bid, state=BatchState.CANCELLED)
        run = self.e.scheduler.drop(bid)
        for n in self.e.store.item_numbers(bid, [ItemStatus.PENDING, ItemStatus.WAITING, ItemStatus.PARKED]):
            if run is None or n not in run.running:
                self.e.store.transition(bid, n, ItemStatus.CANCELLED, next_attempt_at=None)
        for service in self.e.services.values():
            service.cancel_batch(bid)
        self.e.outcomes.check_finished(bid)

    def take_requests(self) -> None:
        """Apply what other processes asked for (submit, pause, …) and answer each request."""
        for req in control.take_requests(self.e.home):
            op, args, rid = req["op"], req.get("args", {}), req.get("id", "")
            try:
                if op == "submit":
                    bid = self.e.submit(
                        args["name"], args["sources"], recipe=args.get("recipe"),
                        options=args.get("options"), output_dir=args.get("output_dir"),
                        resume=bool(args.get("resume")), paused=bool(args.get("paused")),
                    )
                    control.put_reply(self.e.home, rid, ok=True, batch_id=bid)
                elif op == "item_action":
                    self.e.item_action(str(args["batch"]), int(args["n"]), str(args["action"]))
                    control.put_reply(self.e.home, rid, ok=True)
                elif op in CONTROL_OPS or op.startswith("reopen:"):
                    count = self.e.control(op, args.get("batch"))
                    control.put_reply(self.e.home, rid, ok=True, count=count)
                else:
                    control.put_reply(self.e.home, rid, ok=False, message=f"unknown request {op!r}")
            except (errors.TubemillError, errors.UnknownBatch, errors.BatchExists, ValueError) as exc:
                control.put_reply(self.e.home, rid, ok=False, message=str(exc))


# What a user may do to an item of each status (the app greys out the rest). Retrying a pending item is a
# no-op, not a refusal (it is next in line already); a running item allows nothing.
ITEM_ACTIONS: dict[str, tuple[str, ...]] = {
    ItemStatus.FAILED: ("retry", "skip", "remove"),
    ItemStatus.WAITING: ("retry", "skip", "remove"),
    ItemStatus.CANCELLED: ("retry", "skip", "remove"),
    ItemStatus.PENDING: ("skip", "remove"),
    ItemStatus.PARKED: ("skip", "remove"),
    ItemStatus.RUNNING: (),
    ItemStatus.DONE: ("remove",),
    ItemStatus.SKIPPED: ("remove",),
}


def _refusal(n: int, status: str, action: str) -> str:
    if action == "retry":
        return (f"item {n} was skipped; add its source to the batch again" if status == ItemStatus.SKIPPED
                else f"item {n} is {status}: nothing to retry")
    return f"item {n} is already {status}"


def _item_key(src: str | dict[str, Any]) -> str:
    return src if isinstance(src, str) else (src.get("id") or src["source"])


def _unindex(home: Path, bid: str, n: int) -> None:
    """A removed item leaves the search index too (no index file: nothing to do, nothing built)."""
    import sqlite3

    from state import search

    try:
        search.remove_item(home, bid, n)
    except (sqlite3.Error, OSError):
        pass  # `tubemill search --reindex` drops it later

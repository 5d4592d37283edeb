"""Status values, the legal moves between them, and the shapes readers get.

Statuses are ``str`` Enums stored by value, so a state file stays readable JSON and
another tool (or a person with ``jq``) can make sense of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1


class ItemStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # Waiting for a recipe's service (the Batch API) without a worker or a timer; ``item["parked"]`` says
    # which service and why. Batches written before this status had "awaiting_llm_batch" (read as parked).
    PARKED = "parked"


LEGACY_STATUS = {"awaiting_llm_batch": ("parked", {"by": "llm_batch", "reason": "waiting for the Batch API"})}


class BatchState(StrEnum):
    """What the user wants of a batch; ``done`` is set by the engine when nothing is left."""

    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


TERMINAL = frozenset({ItemStatus.DONE, ItemStatus.FAILED, ItemStatus.SKIPPED, ItemStatus.CANCELLED})

_S = ItemStatus
ALLOWED: dict[ItemStatus, frozenset[ItemStatus]] = {
    _S.PENDING: frozenset({_S.RUNNING, _S.CANCELLED, _S.SKIPPED, _S.PARKED, _S.FAILED, _S.DONE}),
    # running -> pending: a stage finished and the next one is due (or a crash was recovered).
    _S.RUNNING: frozenset(
        {_S.PENDING, _S.WAITING, _S.DONE, _S.FAILED, _S.SKIPPED, _S.CANCELLED, _S.PARKED}
    ),
    _S.WAITING: frozenset({_S.RUNNING, _S.PENDING, _S.CANCELLED, _S.FAILED, _S.SKIPPED}),
    _S.PARKED: frozenset({_S.PENDING, _S.RUNNING, _S.DONE, _S.FAILED, _S.CANCELLED, _S.SKIPPED}),
    # "retry failed" and "resume a cancelled batch" reopen items; finished work is never redone. A user may
    # skip an item that failed or was cancelled (its batch then finishes without it).
    _S.FAILED: frozenset({_S.PENDING, _S.SKIPPED}),
    _S.CANCELLED: frozenset({_S.PENDING, _S.SKIPPED}),
    # "retry summaries" reopens a done item at its summarize stage; the stages before it stay done.
    _S.DONE: frozenset({_S.PENDING}),
    _S.SKIPPED: frozenset(),
}


class IllegalTransition(Exception):
    """A caller asked for a move the status machine does not allow: a bug, never user input."""


def check_transition(old: ItemStatus | str, new: ItemStatus | str) -> None:
    old, new = ItemStatus(old), ItemStatus(new)
    if old == new:
        return
    if new not in ALLOWED[old]:
        raise IllegalTransition(f"item cannot go from {old.value} to {new.value}")


def empty_counts() -> dict[str, int]:
    return {s.value: 0 for s in ItemStatus}


@dataclass(frozen=True)
class ItemError:
    type: str
    message: str
    stage: str | None
    retryable: bool
    attempt: int = 0
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "stage": self.stage,
            "retryable": self.retryable,
            "attempt": self.attempt,
            "at": self.at,
        }


@dataclass
class BatchSummary:
    """What a progress bar needs; built from the index, never from scanning items."""

    id: str
    name: str
    recipe: list[str]
    state: str
    counts: dict[str, int]
    total: int
    created_at: float
    finished_at: float | None = None
    output_dir: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    eta_s: float | None = None
    active: list[dict[str, Any]] = field(default_factory=list)
    stage_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    held: str | None = None

    @property
    def finished(self) -> int:
        return sum(self.counts.get(s.value, 0) for s in TERMINAL)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "recipe": list(self.recipe),
            "state": self.state,
            "counts": dict(self.counts),
            "total": self.total,
            "finished": self.finished,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "output_dir": self.output_dir,
            "options": dict(self.options),
            "eta_s": self.eta_s,
            "active": list(self.active),
            "stage_stats": dict(self.stage_stats),
            "held": self.held,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchSummary:
        return cls(
            id=d["id"],
            name=d["name"],
            recipe=list(d.get("recipe", [])),
            state=d.get("state", BatchState.ACTIVE.value),
            counts={**empty_counts(), **d.get("counts", {})},
            total=int(d.get("total", 0)),
            created_at=float(d.get("created_at", 0.0)),
            finished_at=d.get("finished_at"),
            output_dir=d.get("output_dir", ""),
            options=dict(d.get("options", {})),
            eta_s=d.get("eta_s"),
            active=list(d.get("active", [])),
            stage_stats=dict(d.get("stage_stats", {})),
            held=d.get("held"),
        )

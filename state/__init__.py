"""Batch state: the only package that imports TinyDB."""

from state.lock import HomeLock, HomeLocked, read_owner
from state.models import TERMINAL, BatchState, BatchSummary, IllegalTransition, ItemStatus
from state.store import BatchExists, Store, UnknownBatch

__all__ = [
    "TERMINAL",
    "BatchExists",
    "BatchState",
    "BatchSummary",
    "HomeLock",
    "HomeLocked",
    "IllegalTransition",
    "ItemStatus",
    "Store",
    "UnknownBatch",
    "read_owner",
]

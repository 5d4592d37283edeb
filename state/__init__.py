"""Batch state: the only package that imports TinyDB."""

from pipeline.errors import BatchExists, UnknownBatch
from state.lock import HomeLock, HomeLocked, read_owner
from state.models import TERMINAL, BatchState, BatchSummary, IllegalTransition, ItemStatus
from state.store import Store

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

"""Subscriptions over HTTP: the same calls ``tubemill watch`` makes (``pipeline.watch.subs``).

The list lives in one file in the home, changed under its own file lock by any process, so these
routes need no owner; the engine that owns the home runs the checks on their schedule and picks up
a "check now" within a second. Without the watch package installed, every route here answers 501.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from pipeline import errors

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])


class SubIn(BaseModel):
    source: str = Field(description="a channel, playlist or feed URL, or a folder on the server")
    every_s: float = Field(1800, gt=0, description="seconds between checks")
    backfill: int = Field(0, ge=0, description="also process this many of the newest existing entries")
    recipe: str = "transcribe"
    options: dict[str, Any] = Field(default_factory=dict)


def _subs() -> ModuleType:
    try:
        from pipeline.watch import subs
    except ImportError:
        raise HTTPException(501, "subscriptions are not available in this install") from None
    return subs


def _home(request: Request) -> Any:
    return request.app.state.engine.home


def _fail(exc: errors.TubemillError) -> HTTPException:
    text = str(exc)
    if text.startswith("no subscription"):
        return HTTPException(404, text)
    if text.startswith("already subscribed"):
        return HTTPException(409, text)
    return HTTPException(400, text)


@router.get("")
def list_subscriptions(request: Request) -> list[dict[str, Any]]:
    """Every subscription: last check, next check, new items found, last error."""
    return _subs().list_subs(_home(request))


@router.post("", status_code=201)
def add_subscription(request: Request, body: SubIn) -> dict[str, Any]:
    """Subscribe; the first check (due now) marks what exists as seen, but the ``backfill`` newest."""
    try:
        return _subs().add(_home(request), body.source, every_s=body.every_s, backfill=body.backfill,
                           recipe=body.recipe, options=body.options)
    except errors.TubemillError as exc:
        raise _fail(exc) from None


@router.get("/{sub_id}")
def get_subscription(request: Request, sub_id: str) -> dict[str, Any]:
    try:
        return _subs().get(_home(request), sub_id)
    except errors.TubemillError as exc:
        raise _fail(exc) from None


@router.delete("/{sub_id}")
def remove_subscription(request: Request, sub_id: str) -> dict[str, Any]:
    """Forget it (its batches and outputs stay)."""
    if not _subs().remove(_home(request), sub_id):
        raise HTTPException(404, f"no subscription {sub_id!r}")
    return {"id": sub_id, "removed": True}


@router.post("/{sub_id}/{op}")
def subscription_control(request: Request, sub_id: str, op: str) -> dict[str, Any]:
    """``pause``, ``resume`` or ``check`` (ask the owner to check it within a second or so)."""
    subs = _subs()
    home = _home(request)
    try:
        if op in ("pause", "resume"):
            return subs.set_paused(home, sub_id, op == "pause")
        if op == "check":
            subs.check_now(home, sub_id)
            return subs.get(home, sub_id)
    except errors.TubemillError as exc:
        raise _fail(exc) from None
    raise HTTPException(404, f"no subscription control {op!r} (pause, resume or check)")

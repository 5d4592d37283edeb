"""The endpoints: batches (submit, list, one with its items, control, ZIP, item files), search, subscriptions.

Every handler is a plain ``def``: FastAPI runs it in a worker thread, so an engine call that waits for
the owner's reply (a follower posting a control request) never stalls the event loop. Errors a caller
can cause map to one status and one ``detail`` line: unknown batch 404, existing name 409, a bad value
400, an owner that does not answer 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from pipeline import errors
from pipeline.api.files import OutsideRoot, inside, listing, within, zip_stream
from pipeline.engine.client import EngineClient
from pipeline.engine.recipe import default_recipe, get_recipe
from pipeline.engine.stage import safe_name
from pipeline.recipes.transcribe.sources import MAX_INPUT_BYTES

router = APIRouter()
CONTROLS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "retry-failed": "retry_failed"}
NO_ANSWER = "did not answer"
MAX_SOURCES_BYTES = MAX_INPUT_BYTES


class BatchIn(BaseModel):
    """A new batch: ``sources`` is the text of an input file (or its lines), read as the recipe reads it."""

    sources: str | list[str] = Field(description="URLs, files or topics: one per line, or a list of lines")
    recipe: str | None = Field(None, description="transcribe, generate, … (default: the default recipe)")
    name: str | None = Field(None, description="batch name (default: api-YYYYmmdd-HHMMSS)")
    options: dict[str, Any] = Field(default_factory=dict, description="batch options, as `tubemill run --set`")
    paused: bool = Field(False, description="queue it without starting")
    resume: bool = Field(False, description="add the new sources to the batch of the same name")


def _engine(request: Request) -> EngineClient:
    return request.app.state.engine


def _fail(exc: BaseException) -> HTTPException:
    if isinstance(exc, errors.UnknownBatch):
        return HTTPException(404, f"no batch {exc.args[0] if exc.args else ''!r}")
    if isinstance(exc, errors.BatchExists):
        return HTTPException(409, str(exc))
    if isinstance(exc, errors.TubemillError) and NO_ANSWER in str(exc):
        return HTTPException(503, str(exc))
    return HTTPException(400, str(exc))


def _summary(engine: EngineClient, ref: str) -> Any:
    try:
        return engine.summary(ref)
    except (errors.UnknownBatch, errors.TubemillError) as exc:
        raise _fail(exc) from None


# ---------------------------------------------------------------------- batches
@router.post("/batches", status_code=201, tags=["batches"])
def submit(request: Request, body: BatchIn) -> dict[str, Any]:
    """Create a batch (the engine owning the home runs it); returns its id."""
    import time

    from pipeline.api.submit import batch_options, read_sources

    engine = _engine(request)
    text = body.sources if isinstance(body.sources, str) else "\n".join(body.sources)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCES_BYTES:
        raise HTTPException(413, f"sources over {MAX_SOURCES_BYTES >> 20} MiB (the limit of `tubemill run`)")
    try:
        recipe = get_recipe(body.recipe or default_recipe())
        parsed = read_sources(recipe, text, engine.settings)  # type: ignore[attr-defined]
        if not parsed.sources and not body.resume:
            raise errors.InvalidInput("nothing to process in sources" + (" (every line was refused)"
                                                                         if parsed.refused else ""))
        options = batch_options(recipe, body.options, engine.settings, len(parsed.sources))  # type: ignore[attr-defined]
        name = body.name or time.strftime("api-%Y%m%d-%H%M%S")
        bid = engine.submit(name, parsed.sources, recipe=recipe.name, options=options,  # type: ignore[attr-defined]
                            resume=body.resume, paused=body.paused)
    except (errors.TubemillError, errors.UnknownBatch, errors.BatchExists, ValueError) as exc:
        raise _fail(exc) from None
    return {"id": bid, "name": name, "items": len(parsed.sources), "refused": parsed.refused}


@router.get("/batches", tags=["batches"])
def batches(request: Request) -> list[dict[str, Any]]:
    """Every batch, oldest first, with its counts and ETA."""
    return [s.to_dict() for s in _engine(request).summaries()]


@router.get("/batches/{ref}", tags=["batches"])
def batch(request: Request, ref: str, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000),
          status: Annotated[list[str] | None, Query()] = None) -> dict[str, Any]:
    """One batch (name, id or id prefix): counts, ETA, why it waits, and one page of its items."""
    engine = _engine(request)
    s = _summary(engine, ref)
    everything = engine.items(s.id, status=status or None)
    try:
        wait = engine.batch_wait(s.id)
    except Exception:  # noqa: BLE001 - a reason is a nicety; the batch is still shown
        wait = None
    return {"batch": s.to_dict(), "wait": wait, "offset": offset, "limit": limit, "matching": len(everything),
            "items": everything[offset: offset + limit]}


@router.post("/batches/{ref}/{op}", tags=["batches"])
def control(request: Request, ref: str, op: str) -> dict[str, Any]:
    """``pause``, ``resume``, ``cancel`` or ``retry-failed`` one batch."""
    if op not in CONTROLS:
        raise HTTPException(404, f"no control {op!r} (one of: {', '.join(CONTROLS)})")
    engine = _engine(request)
    s = _summary(engine, ref)
    try:
        count = engine.control(CONTROLS[op], s.id)
    except (errors.TubemillError, errors.UnknownBatch) as exc:
        raise _fail(exc) from None
    return {"id": s.id, "op": op, "count": count, "state": engine.summary(s.id).state}


def _batch_root(request: Request, s: Any) -> Path:
    engine = _engine(request)
    root = Path(s.output_dir or engine.output_root / safe_name(s.name))
    if not root.is_dir() or root.is_symlink():
        raise HTTPException(404, f"batch {s.name!r} has no output folder yet")
    return root


@router.get("/batches/{ref}/zip", tags=["files"])
def batch_zip(request: Request, ref: str) -> StreamingResponse:
    """The batch's output folder as one ZIP, streamed as it is written."""
    s = _summary(_engine(request), ref)
    root = _batch_root(request, s)
    name = safe_name(s.name, default="batch")
    return StreamingResponse(zip_stream(root, name), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{name}.zip"'})


def _item_root(request: Request, ref: str, n: int) -> Path:
    engine = _engine(request)
    s = _summary(engine, ref)
    item = next((it for it in engine.items(s.id) if it.get("n") == n), None)
    if item is None:
        raise HTTPException(404, f"batch {s.name!r} has no item {n}")
    wd = Path(item.get("workdir") or "")
    if not item.get("workdir") or not wd.is_dir() or wd.is_symlink():
        raise HTTPException(404, f"item {n} has no files yet")
    if not within(wd, _batch_root(request, s)):
        raise HTTPException(404, f"item {n}'s folder is outside its batch's folder")
    return wd


@router.get("/batches/{ref}/items/{n}/files", tags=["files"])
def item_files(request: Request, ref: str, n: int) -> list[dict[str, object]]:
    """The item's files (paths relative to its folder, sizes)."""
    return listing(_item_root(request, ref, n))


@router.get("/batches/{ref}/items/{n}/files/{path:path}", tags=["files"])
def item_file(request: Request, ref: str, n: int, path: str) -> FileResponse:
    """One of the item's files; a path that would leave the item's folder is 404."""
    root = _item_root(request, ref, n)
    try:
        target = inside(root, path)
    except OutsideRoot:
        raise HTTPException(404, f"no file {path!r} in item {n}") from None
    return FileResponse(target, filename=target.name)


# ---------------------------------------------------------------------- search
@router.get("/search", tags=["search"])
def search(request: Request, q: str = Query(..., min_length=1), batch: str | None = None,
           limit: int = Query(20, ge=1, le=200), offset: int = Query(0, ge=0)) -> dict[str, Any]:
    """Full-text search over the transcripts (the index ``tubemill search --reindex`` builds)."""
    import sqlite3

    from state import search as index

    home = _engine(request).home
    if not index.index_path(home).exists():
        raise HTTPException(404, "no search index yet (run `tubemill search --reindex`, or finish a transcribe batch)")
    batch_id = _summary(_engine(request), batch).id if batch else None
    try:
        hits = index.search(home, q, batch=batch_id, limit=limit, offset=offset)
    except sqlite3.Error as exc:
        raise HTTPException(503, f"search index: {exc}") from None
    return {"query": q, "batch": batch_id, "capped": hits.capped, "messages": list(hits.messages),
            "hits": [h.to_dict() for h in hits]}


def install(app: FastAPI) -> None:
    """Batches, files and search, then the subscription routes (``pipeline.api.subs_routes``)."""
    from pipeline.api.subs_routes import router as subs

    app.include_router(router)
    app.include_router(subs)

    @app.exception_handler(errors.UnknownBatch)
    async def _unknown(_: Request, exc: errors.UnknownBatch) -> JSONResponse:
        return JSONResponse({"detail": f"no batch {exc.args[0] if exc.args else ''!r}"}, status_code=404)

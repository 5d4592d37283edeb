"""upload: ``video.mp4`` + ``metadata.json`` → a YouTube video, recorded in ``upload.json``.

Off unless the batch asks (option ``upload`` on): the stage then returns
``meta={"upload": "skipped"}``. ``upload.json`` ({"video_id", "url", "privacy",
"publish_at", "uploaded_at"}) makes it idempotent: once it exists nothing touches the
network again.

A resumable session outlives the attempt that opened it: its URI is kept in
``.upload-session.json`` (0600; it is a capability to write into that upload), so an
attempt killed mid-file, or after the last byte but before ``upload.json`` was written,
continues the same session instead of uploading a second copy and paying for a second
insert. Quota is booked in :class:`pipeline.recipes.generate.youtube.QuotaLedger` before a new session
opens; a refusal (ours or the API's) is ``RateLimited`` until midnight Pacific, which
the engine waits out without spending an attempt.

Options (:class:`~pipeline.recipes.generate.options.GenerateOptions`): ``upload`` (on/off),
``privacy`` (overrides metadata), ``youtube_daily_units`` (10000), ``youtube_upload_cost`` (1600),
``upload_chunksize`` (bytes, 8 MiB, rounded up to 256 KiB), ``upload_retries`` (8),
``upload_backoff_s`` (1.0, doubling, capped at 64 s), ``made_for_kids`` (status.selfDeclaredMadeForKids,
always sent, default false), ``synthetic_media`` (status.containsSyntheticMedia, default true),
``default_language`` (snippet.defaultLanguage and defaultAudioLanguage), ``category_id``.
The custom thumbnail and the playlist come after, in the ``extras`` stage (:func:`run_extras`, below).
Tests swap the service, clock and sleep through the hooks in :mod:`pipeline.recipes.generate.youtube`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.config.secrets import write_private
from pipeline.engine.recipe import Reopen
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate import youtube
from pipeline.recipes.generate.options import GenerateOptions, options_of
from pipeline.recipes.generate.video import read_json
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.upload")

VIDEO = "video.mp4"
METADATA = "metadata.json"
UPLOAD_JSON = "upload.json"
SESSION = ".upload-session.json"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    # Missing: the earlier stage runs again (retryable); corrupt: nothing to upload until a human looks.
    return read_json(path, what, missing=errors.RetryableError, corrupt=errors.InvalidInput)


def _done(out: Path, record: dict[str, Any], how: str) -> StageResult:
    return StageResult(artifacts={"upload": str(out)},
                       meta={"upload": how, "youtube_id": record.get("video_id"), "youtube_url": record.get("url")})


def _load_session(path: Path, video: Path) -> dict[str, Any] | None:
    """The kept session when it belongs to this very file (size and mtime); else None, and the file is removed.

    The metadata it was opened with is kept too: a session is continued as it was begun,
    even if metadata.json changed since (or a publish time passed meanwhile).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        data = {}
    st = video.stat()
    if (isinstance(data, dict) and data.get("uri") and data.get("size") == st.st_size
            and data.get("mtime_ns") == st.st_mtime_ns and isinstance(data.get("body"), dict)):
        return data
    path.unlink(missing_ok=True)
    return None


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    out = ctx.path(UPLOAD_JSON)
    if out.exists():
        return _done(out, _read_json(out, "upload"), "exists")
    opts = options_of(ctx).for_item(item)
    if not opts.upload:
        return StageResult(meta={"upload": "skipped"})
    video = ctx.path(VIDEO)
    if not video.is_file() or video.stat().st_size == 0:
        raise errors.RetryableError(f"no {VIDEO} to upload (the render stage will run again)")
    meta = _read_json(ctx.path(METADATA), "metadata")
    req = youtube.video_body(meta, privacy=opts.privacy, now=youtube.clock(),
                             fallback_title=str(item.get("title") or ""), made_for_kids=opts.made_for_kids,
                             synthetic_media=opts.synthetic_media, language=opts.default_language,
                             category_id=opts.category_id)
    for note in req.notes:
        log.info("upload of item %d: %s", ctx.item_n, note)

    ledger = youtube.QuotaLedger(ctx.home, daily_units=opts.youtube_daily_units,
                                 upload_cost=opts.youtube_upload_cost, clock=youtube.clock)
    session_path = ctx.path(SESSION)
    kept = _load_session(session_path, video)
    if not kept:
        ledger.check()  # a day already used up defers the item before any credentials or network
    service = youtube.service_for(ctx)  # AuthFailed here, before any quota is booked
    send = _Sender(ctx, opts, service, video, ledger, session_path)
    response, body, how = send.resume_or_start(kept, req.body)
    record = _record(response, body, req.notes)
    atomic_write_bytes(out, json.dumps(record, ensure_ascii=False, indent=1).encode())
    session_path.unlink(missing_ok=True)
    return _done(out, record, how)


class _Sender:
    """One item's upload attempts: continue the kept session, else book quota and open a new one."""

    def __init__(self, ctx: StageContext, opts: GenerateOptions, service: Any, video: Path,
                 ledger: youtube.QuotaLedger, session_path: Path) -> None:
        self.ctx, self.opts, self.service, self.video = ctx, opts, service, video
        self.ledger, self.session_path = ledger, session_path
        self.backoff = youtube.Backoff(retries=opts.upload_retries, base_s=opts.upload_backoff_s)
        self.stat = video.stat()

    def resume_or_start(self, kept: dict[str, Any] | None,
                        body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(the video resource, the body it was sent with, "resumed" or "uploaded")."""
        if kept:
            try:
                return self.attempt(kept["body"], str(kept["uri"])), kept["body"], "resumed"
            except youtube.SessionExpired:
                log.info("item %d: the kept upload session expired; starting a new one", self.ctx.item_n)
                self.session_path.unlink(missing_ok=True)
        self.ledger.reserve()
        try:
            return self.attempt(body, None), body, "uploaded"
        except youtube.SessionExpired:
            self.session_path.unlink(missing_ok=True)
            raise
        except (errors.NetworkError, errors.Cancelled):
            if not self.session_path.exists():  # the insert never got through: it cost nothing
                self.ledger.refund()
            raise

    def attempt(self, body: dict[str, Any], session_uri: str | None) -> dict[str, Any]:
        def keep_session(uri: str) -> None:
            record = {"uri": uri, "size": self.stat.st_size, "mtime_ns": self.stat.st_mtime_ns, "body": body}
            write_private(self.session_path, json.dumps(record).encode("utf-8"))

        return youtube.upload_video(self.service, self.video, body, chunksize=self.opts.upload_chunksize,
                                    progress=self.ctx.progress, sleep_fn=self.wait, backoff=self.backoff,
                                    cancelled=self.ctx.cancelled, ledger=self.ledger, session_uri=session_uri,
                                    on_session=keep_session)

    def wait(self, seconds: float) -> None:
        if self.ctx.cancelled():
            raise errors.Cancelled("upload cancelled")
        youtube.sleep(seconds)


def _record(response: dict[str, Any], body: dict[str, Any], notes: tuple[str, ...]) -> dict[str, Any]:
    """``upload.json``: what the API answered, else what was asked for."""
    status = response.get("status") or {}
    record = {
        "video_id": response["id"],
        "url": youtube.watch_url(response["id"]),
        "privacy": status.get("privacyStatus") or body["status"]["privacyStatus"],
        "publish_at": status.get("publishAt") or body["status"].get("publishAt"),
        "uploaded_at": youtube.utc_iso(youtube.clock()),
        "title": (response.get("snippet") or {}).get("title") or body["snippet"]["title"],
        "upload_status": status.get("uploadStatus"),
    }
    if notes:
        record["notes"] = list(notes)
    return record


register(Stage("upload", run, resource="net", account_bound=False,
               doc="video.mp4 + metadata.json → YouTube (resumable, quota-aware) → upload.json"))


# -- extras: the custom thumbnail and the playlist, after the upload -----------------------------------------------
#
# Each is an enrichment: whatever refuses it (a 403 on a channel not verified for custom thumbnails, a
# playlist that does not exist, the quota, no network) is flagged on the item with its reason (meta
# ``thumbnail_status``/``thumbnail_error``, ``playlist_status``/``playlist_error``, the flag
# :data:`EXTRAS_FLAG`) and the stage still succeeds: the video is up and nothing here uploads it again.
# What was done is kept in upload.json's ``extras``, so running the stage again (the recipe's
# ``retry_extras`` reopens flagged items here) redoes only the missing ones. An insert whose answer was
# lost is looked up before it is sent again (a video twice in a playlist is worse than one list call).
# thumbnail.jpg is drawn even with upload off: the batch ZIP carries it.

EXTRAS_FLAG = "upload-extras-failed"
# The recipe's action (``actions={"retry_extras": RETRY_EXTRAS}``): flagged items run this stage again.
RETRY_EXTRAS = Reopen(flag=EXTRAS_FLAG, stage="extras",
                      note="retry the upload extras that failed (thumbnail, playlist); the video is not sent again")
_RESCOPE = ("the token lacks the scope (playlists need .../auth/youtube, not only youtube.upload): run "
            "`tubemill youtube-auth --playlists CLIENT_SECRETS.json` again")
HINTS = {  # per extra, the API's reason → what the user can do about it
    "thumbnail": {"insufficientPermissions": _RESCOPE,
                  "forbidden": "custom thumbnails need a verified channel (youtube.com/verify)"},
    "playlist": {"insufficientPermissions": _RESCOPE,
                 "playlistNotFound": "check playlist_id (the part after list= in the playlist's URL)",
                 "playlistOperationUnsupported": "this playlist cannot take videos",
                 "forbidden": "the playlist belongs to another channel"},
}


def run_extras(item: dict[str, Any], ctx: StageContext) -> StageResult:
    opts = options_of(ctx).for_item(item)
    meta: dict[str, Any] = {}
    thumb = _make_thumbnail(item, ctx, opts, meta) if opts.thumbnail != "none" else None
    out = ctx.path(UPLOAD_JSON)
    artifacts = {"thumbnail": str(thumb)} if thumb else {}
    if not opts.upload or not out.exists():  # nothing on YouTube to enrich
        return StageResult(artifacts=artifacts, meta=meta, measured=False)
    record = _read_json(out, "upload")
    if not record.get("video_id"):
        raise errors.InvalidInput(f"{UPLOAD_JSON} has no video_id")
    before = record.get("extras") or {}
    extras: dict[str, Any] = dict(before)
    todo = _Extras(ctx, opts, str(record["video_id"]), extras)
    if opts.thumbnail == "none":
        extras.setdefault("thumbnail", {"status": "off"})
    elif thumb is None:
        extras["thumbnail"] = {"status": "failed", "reason": meta.get("thumbnail_error") or "no thumbnail"}
    elif (extras.get("thumbnail") or {}).get("status") != "set":
        todo.thumbnail(thumb, meta.get("thumbnail_source") or opts.thumbnail)
    if opts.playlist_id:
        done = extras.get("playlist") or {}
        if not (done.get("status") == "added" and done.get("playlist_id") == opts.playlist_id):
            todo.playlist(opts.playlist_id)
    if extras != before:
        record["extras"] = extras
        atomic_write_bytes(out, json.dumps(record, ensure_ascii=False, indent=1).encode())
    failed = {k: v for k, v in extras.items() if v.get("status") == "failed"}
    for key in ("thumbnail", "playlist"):  # not meta["thumbnail"]: an item's meta may override that option
        if key in extras:
            meta[f"{key}_status"] = extras[key]["status"]
            meta[f"{key}_error"] = extras[key].get("reason")
    flags = set(item.get("flags") or []) - {EXTRAS_FLAG}
    if failed:
        flags.add(EXTRAS_FLAG)
        log.warning("item %d: upload extras failed (the video is up): %s", ctx.item_n,
                    "; ".join(f"{k}: {v['reason']}" for k, v in failed.items()))
    meta["flags"] = sorted(flags)
    return StageResult(artifacts=artifacts, meta=meta, measured=todo.ran)


def _make_thumbnail(item: dict[str, Any], ctx: StageContext, opts: GenerateOptions,
                    meta: dict[str, Any]) -> Path | None:
    """thumbnail.jpg (kept when an earlier run drew it): the chosen kind, a title card when a frame cannot be had."""
    from pipeline.recipes.generate import thumbnail
    from pipeline.recipes.generate.video import scene_png

    path = ctx.path(thumbnail.FILE)
    if path.is_file() and 0 < path.stat().st_size <= thumbnail.MAX_BYTES:
        return path
    if opts.thumbnail == "frame":
        try:
            thumbnail.video_frame(ctx.path(VIDEO), path, opts.thumbnail_at)
            meta["thumbnail_source"] = "frame"
            return path
        except errors.TubemillError as exc:
            meta["thumbnail_note"] = f"no frame ({exc}); a title card instead"
    try:
        title = _title_of(item, ctx)
        thumbnail.title_card(title, path, background=ctx.path(scene_png(1)))
    except (errors.TubemillError, OSError) as exc:
        meta["thumbnail_error"] = f"could not draw the thumbnail: {exc}"
        return None
    meta["thumbnail_source"] = "title"
    return path


def _title_of(item: dict[str, Any], ctx: StageContext) -> str:
    try:
        title = str(json.loads(ctx.path(METADATA).read_text(encoding="utf-8")).get("title") or "")
    except (OSError, ValueError, AttributeError):
        title = ""
    return title or str(item.get("title") or item.get("source") or "")


class _Extras:
    """The extras of one uploaded video, each booked in the quota ledger first and recorded in ``extras``."""

    def __init__(self, ctx: StageContext, opts: GenerateOptions, video_id: str, extras: dict[str, Any]) -> None:
        self.ctx, self.video_id, self.extras = ctx, video_id, extras
        self.ledger = youtube.QuotaLedger(ctx.home, daily_units=opts.youtube_daily_units,
                                          upload_cost=opts.youtube_upload_cost, clock=youtube.clock)
        self._service: Any = None
        self.ran = False

    def service(self) -> Any:
        if self._service is None:
            self._service = youtube.service_for(self.ctx)
        return self._service

    def thumbnail(self, image: Path, source: str) -> None:
        def call() -> dict[str, Any]:
            self.ledger.book("thumbnails.set")
            youtube.set_thumbnail(self.service(), self.video_id, image, ledger=self.ledger)
            return {"status": "set", "source": source, "file": image.name, "bytes": image.stat().st_size}
        self._do("thumbnail", call)

    def playlist(self, playlist_id: str) -> None:
        def call() -> dict[str, Any]:
            done = {"status": "added", "playlist_id": playlist_id}
            if (self.extras.get("playlist") or {}).get("uncertain"):  # the last insert's answer was lost
                self.ledger.book("playlistItems.list")
                found = youtube.playlist_item_of(self.service(), playlist_id, self.video_id, ledger=self.ledger)
                if found:
                    return {**done, "playlist_item_id": found}
            self.ledger.book("playlistItems.insert")
            answer = youtube.add_to_playlist(self.service(), playlist_id, self.video_id, ledger=self.ledger)
            return {**done, "playlist_item_id": (answer or {}).get("id")}
        self._do("playlist", call, playlist_id=playlist_id)

    def _do(self, key: str, call: Any, **context: Any) -> None:
        self.ran = True
        # A request that may have reached YouTube (no answer, or a surprise) leaves the extra uncertain until
        # a later run has looked: an earlier doubt is kept through a failure of the look itself.
        doubt = bool((self.extras.get(key) or {}).get("uncertain"))
        try:
            entry = call()
        except errors.Cancelled:
            raise
        except errors.TubemillError as exc:
            entry = {"status": "failed", "reason": _reason(key, exc), **context}
            doubt = doubt or isinstance(exc, errors.NetworkError)
        except Exception as exc:  # an enrichment: even a surprise is flagged, not fatal (the video is up)
            log.exception("item %d: %s", self.ctx.item_n, key)
            entry = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}", **context}
            doubt = True
        if entry["status"] == "failed" and doubt:
            entry["uncertain"] = True
        entry["at"] = youtube.utc_iso(youtube.clock())
        self.extras[key] = entry


def _reason(key: str, exc: Exception) -> str:
    text = str(exc)
    hints = [hint for reason, hint in HINTS[key].items() if reason in text]
    return f"{text}; {hints[0]}" if hints else text


register(Stage("extras", run_extras, resource="net", account_bound=False,
               doc="thumbnail.jpg (title card or frame) → thumbnails.set, playlistItems.insert; flagged, never fatal"))

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
``upload_backoff_s`` (1.0, doubling, capped at 64 s).
Tests swap the service, clock and sleep through the hooks in :mod:`pipeline.recipes.generate.youtube`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.config.secrets import write_private
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
    opts = options_of(ctx)
    if not opts.upload:
        return StageResult(meta={"upload": "skipped"})
    video = ctx.path(VIDEO)
    if not video.is_file() or video.stat().st_size == 0:
        raise errors.RetryableError(f"no {VIDEO} to upload (the render stage will run again)")
    meta = _read_json(ctx.path(METADATA), "metadata")
    req = youtube.video_body(meta, privacy=opts.privacy, now=youtube.clock(),
                             fallback_title=str(item.get("title") or ""))
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

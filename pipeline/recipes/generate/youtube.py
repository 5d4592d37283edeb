"""YouTube Data API v3: the service and a resumable upload that survives 5xx; the hooks tests replace.

This module is what the upload stage, the CLI and the tests import; it re-exports the
parts that live by job: :mod:`~pipeline.recipes.generate.youtube_auth` (the OAuth token),
:mod:`~pipeline.recipes.generate.youtube_quota` (the quota day and ledger) and
:mod:`~pipeline.recipes.generate.youtube_meta` (``metadata.json`` → request body).
Everything that reads a hook stays here, so patching this module's attributes reaches it.

Hooks (module attributes, read at call time; tests replace them with ``monkeypatch``):

* ``service_factory(ctx)``: when set, :func:`service_for` returns its result instead
  of building a service from the stored token (a fake, or one over ``HttpMockSequence``).
* ``clock()``: epoch seconds for the ledger and timestamps (default ``time.time``).
* ``sleep(seconds)``: the backoff wait between upload retries (default ``time.sleep``).

The upload extras (:func:`set_thumbnail`, :func:`add_to_playlist`) are small requests through
:func:`call_api`: a 5xx or a dropped connection is retried twice in place, anything else is
raised as the pipeline error :func:`classify` gives, with the API's own message in it (the
403 on an unverified channel's thumbnail says what to do). The stage flags them; they never
fail the upload.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.recipes.generate.youtube_auth import (
    AUTH_HINT,
    SCOPES,
    TOKEN_FILE,
    authorize,
    has_token,
    load_credentials,
    save_credentials,
    token_path,
)
from pipeline.recipes.generate.youtube_meta import (
    DESCRIPTION_MAX_BYTES,
    PRIVACY,
    TAGS_MAX_CHARS,
    TITLE_MAX,
    VideoRequest,
    fit_tags,
    parse_publish_at,
    request_body,
    rfc3339,
    truncate_bytes,
)
from pipeline.recipes.generate.youtube_quota import (
    CALL_COSTS,
    DAILY_UNITS,
    LIST_COST,
    PACIFIC,
    PLAYLIST_INSERT_COST,
    QUOTA_FILE,
    THUMBNAIL_COST,
    UPLOAD_COST,
    QuotaLedger,
    next_reset,
    quota_day,
)

log = logging.getLogger("tubemill.youtube")

CHUNK = 256 * 1024  # resumable chunks must be multiples of 256 KiB
DEFAULT_CHUNKSIZE = 32 * CHUNK  # 8 MiB
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"})
SHORT_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# -- hooks (see the module docstring) ----------------------------------------------------------------------------
service_factory: Callable[[Any], Any] | None = None
clock: Callable[[], float] = time.time
sleep: Callable[[float], None] = time.sleep


# -- service -----------------------------------------------------------------------------------------------------


def build_service(credentials: Any = None, http: Any = None) -> Any:
    """A ``youtube`` v3 service from the discovery document bundled with the client (no network).

    With ``http`` (an ``httplib2.Http`` or ``HttpMockSequence``) and credentials, requests
    go through ``http`` authorized by the credentials; with ``http`` alone, unauthenticated.
    """
    from googleapiclient.discovery import build

    if http is not None and credentials is not None:
        from google_auth_httplib2 import AuthorizedHttp

        http, credentials = AuthorizedHttp(credentials, http=http), None
    return build("youtube", "v3", credentials=credentials, http=http, static_discovery=True,
                 cache_discovery=False)


def service_for(ctx: Any) -> Any:
    """The service a stage uploads through: ``service_factory(ctx)`` when set, else from the stored token."""
    factory = service_factory
    if factory is not None:
        return factory(ctx)
    return build_service(load_credentials(ctx.home))


# -- metadata → request body -------------------------------------------------------------------------------------


def video_body(meta: dict[str, Any], *, privacy: str | None = None, now: float | None = None,
               fallback_title: str = "", **declared: Any) -> VideoRequest:
    """The ``videos.insert`` body from ``metadata.json`` (:func:`~.youtube_meta.request_body`, which takes the
    ``declared`` keywords: made_for_kids, synthetic_media, language, category_id), ``now`` defaulting to
    the ``clock`` hook: that default is why this entry point lives here."""
    return request_body(meta, privacy=privacy, now=clock() if now is None else now, fallback_title=fallback_title,
                        **declared)


# -- upload ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Retries of one upload on 5xx and dropped connections: ``base_s * 2**n`` capped at ``cap_s``."""

    retries: int = 8
    base_s: float = 1.0
    cap_s: float = 64.0

    def delay(self, failure: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(0, failure - 1))


class SessionExpired(errors.RetryableError):
    """The resumable session is gone (404/410): start a new upload."""


def error_reasons(exc: Any) -> list[str]:
    """The ``reason`` strings of a googleapiclient ``HttpError`` body (``quotaExceeded``…)."""
    content = getattr(exc, "content", b"") or b""
    try:
        data = json.loads(content.decode("utf-8") if isinstance(content, bytes) else content)
    except (ValueError, UnicodeDecodeError):
        return []
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        return []
    reasons = [str(e.get("reason")) for e in err.get("errors") or [] if isinstance(e, dict) and e.get("reason")]
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            reasons.append(str(detail["reason"]))
    return reasons


def error_message(exc: Any) -> str:
    """The ``error.message`` of a googleapiclient ``HttpError`` body, or ''."""
    content = getattr(exc, "content", b"") or b""
    try:
        data = json.loads(content.decode("utf-8") if isinstance(content, bytes) else content)
    except (ValueError, UnicodeDecodeError):
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    return str(err.get("message") or "").strip() if isinstance(err, dict) else ""


def classify(exc: Any, ledger: QuotaLedger | None = None, now: float | None = None) -> errors.TubemillError:
    """A pipeline error for a final (not retried) ``HttpError``; marks the ledger on quota errors."""
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    reasons = error_reasons(exc)
    text = f"YouTube API {status}: {', '.join(reasons) or getattr(exc, 'reason', '') or 'error'}"
    message = error_message(exc)
    if message and message not in reasons:
        text = f"{text} ({message[:300]})"
    if status in (403, 429) and QUOTA_REASONS.intersection(reasons):
        if ledger is not None:
            ledger.mark_exhausted()
            wait = ledger.seconds_to_reset()
        else:
            t = clock() if now is None else now
            wait = next_reset(t) - t
        return errors.RateLimited(f"{text}; waiting for the next quota day (midnight Pacific)", retry_after=wait)
    if status == 429 or SHORT_RATE_REASONS.intersection(reasons):
        return errors.RateLimited(text, retry_after=60.0)
    if status == 401 or "youtubeSignupRequired" in reasons:
        return errors.AuthFailed(f"{text}: {AUTH_HINT}")
    if status in RETRY_STATUSES:
        return errors.NetworkError(text)
    if status == 400:
        return errors.InvalidInput(text)
    if status == 403:
        return errors.Unavailable(text)
    if status in (404, 410):
        return errors.NotFound(text)
    return errors.PermanentError(text)


def upload_video(service: Any, path: Path, body: dict[str, Any], *, chunksize: int = DEFAULT_CHUNKSIZE,
                 progress: Callable[[float], None] | None = None, sleep_fn: Callable[[float], None] | None = None,
                 backoff: Backoff = Backoff(), cancelled: Callable[[], bool] | None = None,
                 ledger: QuotaLedger | None = None, session_uri: str | None = None,
                 on_session: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``videos.insert`` as a resumable upload; returns the video resource the API sent back.

    5xx answers and dropped connections are retried in place (the client asks the
    server how much it holds and goes on from there), up to ``backoff.retries`` in a
    row. ``session_uri`` continues a session opened by an earlier attempt (no new
    insert, no quota); ``on_session`` is told each new session URI so a caller can keep it.
    """
    wait = sleep_fn or sleep
    request = _insert_request(service, path, body, chunksize, session_uri)
    known = session_uri

    def note_session() -> None:
        nonlocal known
        uri = request.resumable_uri
        if uri and uri != known:  # opened (or moved) in this step, even if the step then failed
            known = uri
            if on_session is not None:
                on_session(uri)

    failures = 0
    response = None
    while response is None:
        if cancelled is not None and cancelled():
            raise errors.Cancelled("upload cancelled")
        try:
            status, response, failure = _next_chunk(request, ledger)
            if failure is None and status is not None and progress is not None:
                progress(status.progress())
        finally:
            note_session()
        if failure is None:
            failures = 0
            continue
        failures += 1
        if failures > backoff.retries:
            raise errors.NetworkError(f"upload failed {failures} times in a row: {failure}") from failure
        delay = backoff.delay(failures)
        log.warning("upload of %s: %s; retry %d in %.0fs", path.name, failure, failures, delay)
        wait(delay)
    if progress is not None:
        progress(1.0)
    if not isinstance(response, dict) or not response.get("id"):
        raise errors.PermanentError(f"the upload finished without a video id: {str(response)[:200]}")
    return response


def _insert_request(service: Any, path: Path, body: dict[str, Any], chunksize: int, session_uri: str | None) -> Any:
    """The resumable ``videos.insert`` request, in chunks rounded up to 256 KiB; continuing ``session_uri``."""
    from googleapiclient.http import MediaFileUpload

    chunksize = max(CHUNK, (int(chunksize) + CHUNK - 1) // CHUNK * CHUNK)
    media = MediaFileUpload(str(path), mimetype="video/mp4", chunksize=chunksize, resumable=True)
    request = service.videos().insert(part="snippet,status", body=body, media_body=media)
    if session_uri:
        request.resumable_uri = session_uri
        # The client's own resume path: its next call asks the server what it holds ("bytes */size").
        request._in_error_state = True
    return request


def _next_chunk(request: Any, ledger: QuotaLedger | None) -> tuple[Any, Any, Exception | None]:
    """One chunk: ``(status, response, None)``, or ``(None, None, failure)`` for a failure worth retrying in
    place (5xx, a dropped connection); every other failure is raised as the pipeline error it means."""
    import httplib2
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    try:
        status, response = request.next_chunk()
    except HttpError as exc:
        code = int(exc.resp.status)
        if code in (404, 410) and request.resumable_uri:
            raise SessionExpired(f"the upload session is gone ({code})") from exc
        if code not in RETRY_STATUSES:
            raise classify(exc, ledger) from exc
        return None, None, exc
    except RefreshError as exc:
        raise errors.AuthFailed(f"the YouTube token was refused: {AUTH_HINT}") from exc
    except (httplib2.HttpLib2Error, TransportError, OSError) as exc:  # DNS, reset, timeout
        return None, None, exc
    return status, response, None


# -- upload extras -----------------------------------------------------------------------------------------------


def call_api(make_request: Callable[[], Any], what: str, *, ledger: QuotaLedger | None = None,
             retries: int = 2, backoff: Backoff = Backoff(retries=2, base_s=2.0)) -> Any:
    """Execute one small request (a fresh one from ``make_request`` per try) and return its JSON answer.

    5xx and dropped connections are retried ``retries`` times (``sleep`` hook between), then raised
    as ``NetworkError``; any other ``HttpError`` is raised as :func:`classify` says.
    """
    import httplib2
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    failures = 0
    while True:
        try:
            return make_request().execute()
        except HttpError as exc:
            if int(exc.resp.status) not in RETRY_STATUSES or failures >= retries:
                raise classify(exc, ledger) from exc
            failure: Exception = exc
        except RefreshError as exc:
            raise errors.AuthFailed(f"the YouTube token was refused: {AUTH_HINT}") from exc
        except (httplib2.HttpLib2Error, TransportError, OSError) as exc:
            if failures >= retries:
                raise errors.NetworkError(f"{what}: {exc}") from exc
            failure = exc
        failures += 1
        log.warning("%s: %s; retry %d", what, failure, failures)
        sleep(backoff.delay(failures))


def set_thumbnail(service: Any, video_id: str, image: Path, *, ledger: QuotaLedger | None = None) -> Any:
    """``thumbnails.set``: the JPEG ``image`` (uploaded as image/jpeg, one request) becomes the video's thumbnail."""
    from googleapiclient.http import MediaFileUpload

    def request() -> Any:
        media = MediaFileUpload(str(image), mimetype="image/jpeg", resumable=False)
        return service.thumbnails().set(videoId=video_id, media_body=media)

    return call_api(request, "thumbnails.set", ledger=ledger)


def playlist_item_body(playlist_id: str, video_id: str) -> dict[str, Any]:
    return {"snippet": {"playlistId": playlist_id, "resourceId": {"kind": "youtube#video", "videoId": video_id}}}


def add_to_playlist(service: Any, playlist_id: str, video_id: str, *, ledger: QuotaLedger | None = None) -> Any:
    """``playlistItems.insert``: the video at the end of the playlist; returns the playlist item."""
    body = playlist_item_body(playlist_id, video_id)
    return call_api(lambda: service.playlistItems().insert(part="snippet", body=body), "playlistItems.insert",
                    ledger=ledger)


def playlist_item_of(service: Any, playlist_id: str, video_id: str, *,
                     ledger: QuotaLedger | None = None) -> str | None:
    """The id of the video's item in the playlist, or None: asked before inserting again after an insert
    whose answer was lost, so a retry does not add the video twice."""
    answer = call_api(lambda: service.playlistItems().list(part="id", playlistId=playlist_id, videoId=video_id,
                                                           maxResults=5), "playlistItems.list", ledger=ledger)
    items = (answer or {}).get("items") or []
    return str(items[0].get("id")) if items and isinstance(items[0], dict) else None


def watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [  # this module's own names and everything re-exported from youtube_auth, youtube_meta, youtube_quota
    "AUTH_HINT", "CALL_COSTS", "CHUNK", "DAILY_UNITS", "LIST_COST", "PLAYLIST_INSERT_COST", "THUMBNAIL_COST",
    "add_to_playlist", "call_api", "error_message", "playlist_item_body", "playlist_item_of", "set_thumbnail",
    "DEFAULT_CHUNKSIZE", "DESCRIPTION_MAX_BYTES", "PACIFIC", "PRIVACY",
    "QUOTA_FILE", "QUOTA_REASONS", "RETRY_STATUSES", "SCOPES", "SHORT_RATE_REASONS", "TAGS_MAX_CHARS", "TITLE_MAX",
    "TOKEN_FILE", "UPLOAD_COST", "Backoff", "QuotaLedger", "SessionExpired", "VideoRequest", "authorize",
    "build_service", "classify", "error_reasons", "fit_tags", "has_token", "load_credentials", "next_reset",
    "parse_publish_at", "quota_day", "request_body", "rfc3339", "save_credentials", "service_for", "token_path",
    "truncate_bytes", "upload_video", "utc_iso", "video_body", "watch_url",
]

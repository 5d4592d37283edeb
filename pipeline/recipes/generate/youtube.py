"""YouTube Data API v3: OAuth token, service, quota ledger and a resumable upload that survives 5xx.

Token: the installed-app flow (:func:`authorize`, run once from the CLI) stores
``creds.to_json()`` in ``<home>/secrets/youtube_token.json`` (mode 0600, JSON, never
pickle). :func:`load_credentials` refreshes an expired access token and writes it back.

Quota: the API grants 10,000 units a day and ``videos.insert`` costs 1,600. The day
resets at midnight America/Los_Angeles. :class:`QuotaLedger` counts what this home
spent today and refuses an upload that would overdraw it with
:class:`pipeline.errors.RateLimited` whose ``retry_after`` is the time to the next
quota day, so the engine parks the item without spending an attempt. A real 403
``quotaExceeded`` from the API marks the day as used up in the ledger as well.

Hooks (module attributes, read at call time; tests replace them with ``monkeypatch``):

* ``service_factory(ctx)``: when set, :func:`service_for` returns its result instead
  of building a service from the stored token (a fake, or one over ``HttpMockSequence``).
* ``clock()``: epoch seconds for the ledger and timestamps (default ``time.time``).
* ``sleep(seconds)``: the backoff wait between upload retries (default ``time.sleep``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipeline import errors
from pipeline.config.secrets import secrets_dir, write_private
from pipeline.errors import CorruptStateFile
from state.storage import atomic_write_bytes, read_json_file

log = logging.getLogger("tubemill.youtube")

SCOPES = ["https://www.googleapis.com/auth/youtube.upload"]
TOKEN_FILE = "youtube_token.json"
QUOTA_FILE = "youtube-quota.json"
PACIFIC = ZoneInfo("America/Los_Angeles")
DAILY_UNITS = 10_000
UPLOAD_COST = 1_600
CHUNK = 256 * 1024  # resumable chunks must be multiples of 256 KiB
DEFAULT_CHUNKSIZE = 32 * CHUNK  # 8 MiB
AUTH_HINT = "run `tubemill youtube-auth CLIENT_SECRETS.json` once to authorize uploads"
QUOTA_REASONS = frozenset({"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"})
SHORT_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})

# -- hooks (see the module docstring) ----------------------------------------------------------------------------
service_factory: Callable[[Any], Any] | None = None
clock: Callable[[], float] = time.time
sleep: Callable[[float], None] = time.sleep


# -- OAuth -------------------------------------------------------------------------------------------------------

_token_lock = threading.Lock()


def token_path(home: Path) -> Path:
    """``<home>/secrets/youtube_token.json`` (whether or not it exists)."""
    return Path(home) / "secrets" / TOKEN_FILE


def has_token(home: Path) -> bool:
    """Whether uploads have been authorized in this home (for the UI; says nothing of validity)."""
    return token_path(home).is_file()


def save_credentials(home: Path, creds: Any) -> Path:
    """Store ``creds.to_json()`` as a 0600 file (atomically, in a 0700 folder)."""
    secrets_dir(home)
    return write_private(token_path(home), creds.to_json().encode("utf-8"))


def authorize(home: Path, client_secrets_path: Path | str, *, open_browser: bool = True, browser: str | None = None,
              port: int = 0, timeout_s: int | None = 300) -> Any:
    """The installed-app consent flow on a loopback port; stores and returns the credentials.

    ``client_secrets_path`` is the OAuth client JSON of a "Desktop app" client from the
    Google Cloud console. ``access_type=offline`` and ``prompt=consent`` make Google
    return a refresh token even on a second consent, so the token keeps working.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    path = Path(client_secrets_path)
    if not path.is_file():
        raise errors.InvalidInput(f"no OAuth client secrets file at {path}")
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(path), scopes=SCOPES)
    except ValueError as exc:
        raise errors.InvalidInput(f"{path.name} is not an OAuth client secrets file (download the JSON of a "
                                  f"'Desktop app' OAuth client): {exc}") from exc
    try:
        creds = flow.run_local_server(host="127.0.0.1", port=port, open_browser=open_browser, browser=browser,
                                      timeout_seconds=timeout_s, access_type="offline", prompt="consent")
    except Exception as exc:  # oauthlib/requests/WSGI timeout: all mean "not authorized", say why
        raise errors.AuthFailed(f"YouTube authorization did not complete: {type(exc).__name__}: {exc}") from exc
    if not getattr(creds, "refresh_token", None):
        log.warning("Google returned no refresh token; uploads will stop working when the access token expires")
    save_credentials(home, creds)
    return creds


def load_credentials(home: Path, request: Any = None) -> Any:
    """The stored credentials, refreshed (and written back, 0600) when the access token has expired.

    ``request`` is a ``google.auth.transport.Request``; the default uses ``requests``.
    Missing, unreadable or revoked tokens raise :class:`~pipeline.errors.AuthFailed`.
    """
    from google.auth.exceptions import RefreshError, TransportError
    from google.oauth2.credentials import Credentials

    path = token_path(home)
    with _token_lock:  # two uploads refreshing at once would both write; one refresh is enough
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            creds = Credentials.from_authorized_user_info(info, scopes=info.get("scopes") or SCOPES)
        except FileNotFoundError:
            raise errors.AuthFailed(f"no YouTube token in {path.parent}: {AUTH_HINT}") from None
        except (OSError, ValueError) as exc:
            raise errors.AuthFailed(f"the YouTube token file is unreadable ({exc}): {AUTH_HINT}") from exc
        if creds.valid:
            return creds
        if not creds.refresh_token:
            raise errors.AuthFailed(f"the YouTube token has expired and cannot be refreshed: {AUTH_HINT}")
        if request is None:
            from google.auth.transport.requests import Request

            request = Request()
        try:
            creds.refresh(request)
        except RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise errors.NetworkError(f"refreshing the YouTube token failed: {exc}") from exc
            raise errors.AuthFailed(f"Google refused to refresh the YouTube token ({exc}): {AUTH_HINT}") from exc
        except TransportError as exc:
            raise errors.NetworkError(f"cannot reach Google to refresh the YouTube token: {exc}") from exc
        save_credentials(home, creds)
        log.info("refreshed the YouTube access token")
        return creds


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


# -- quota -------------------------------------------------------------------------------------------------------


def quota_day(ts: float) -> str:
    """The quota day (a Pacific date, ISO) that the instant ``ts`` falls in."""
    return datetime.fromtimestamp(ts, PACIFIC).date().isoformat()


def next_reset(ts: float) -> float:
    """Epoch seconds of the next midnight America/Los_Angeles after ``ts`` (DST-aware)."""
    d = datetime.fromtimestamp(ts, PACIFIC).date() + timedelta(days=1)
    return datetime(d.year, d.month, d.day, tzinfo=PACIFIC).timestamp()


_ledger_locks: dict[Path, threading.Lock] = {}
_ledger_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _ledger_locks_guard:
        return _ledger_locks.setdefault(path.resolve(), threading.Lock())


class QuotaLedger:
    """Units spent today on this home's YouTube project, in ``<home>/youtube-quota.json``.

    Every change is one locked read-modify-write with an atomic replace (one process owns
    a home, the lock covers its threads). The file holds only today: a new Pacific day
    starts from zero. It counts what we asked for; the API remains the authority, and
    its ``quotaExceeded`` closes the day here too (:meth:`mark_exhausted`).
    """

    def __init__(self, home: Path, daily_units: int = DAILY_UNITS, upload_cost: int = UPLOAD_COST,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(home) / QUOTA_FILE
        self.daily_units = int(daily_units)
        self.upload_cost = int(upload_cost)
        self.clock = clock
        self._lock = _lock_for(self.path)

    def _today(self, now: float) -> dict[str, Any]:
        try:
            data = read_json_file(self.path) or {}
        except CorruptStateFile as exc:
            log.warning("ignoring an unreadable quota ledger: %s", exc)
            data = {}
        day = quota_day(now)
        if data.get("day") != day:
            return {"day": day, "spent": 0, "uploads": 0, "exhausted": False}
        return data

    def _write(self, data: dict[str, Any], now: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {**data, "daily_units": self.daily_units, "updated_at": now}
        atomic_write_bytes(self.path, json.dumps(data, sort_keys=True).encode())

    def spent_today(self) -> int:
        return int(self._today(self.clock()).get("spent", 0))

    def remaining(self) -> int:
        data = self._today(self.clock())
        return 0 if data.get("exhausted") else max(0, self.daily_units - int(data.get("spent", 0)))

    def exhausted(self) -> bool:
        """Whether another upload today would be refused."""
        return self.remaining() < self.upload_cost

    def next_reset(self) -> float:
        return next_reset(self.clock())

    def seconds_to_reset(self) -> float:
        now = self.clock()
        return next_reset(now) - now

    def _refusal(self, data: dict[str, Any], now: float, why: str) -> errors.RateLimited:
        wait = next_reset(now) - now
        reset = datetime.fromtimestamp(now + wait, PACIFIC).strftime("%Y-%m-%d %H:%M %Z")
        return errors.RateLimited(f"YouTube quota for {data['day']} (Pacific) {why}; uploads resume at {reset} "
                                  f"(in {wait / 3600:.1f} h)", retry_after=wait)

    def check(self, units: int | None = None) -> None:
        """Raise ``RateLimited`` if ``units`` (one upload by default) would not fit today; books nothing."""
        units = self.upload_cost if units is None else int(units)
        now = self.clock()
        data = self._today(now)
        self._refuse_if_full(data, now, units)

    def _refuse_if_full(self, data: dict[str, Any], now: float, units: int) -> None:
        spent = int(data.get("spent", 0))
        if data.get("exhausted"):
            raise self._refusal(data, now, "is used up (the API said quotaExceeded)")
        if spent + units > self.daily_units:
            raise self._refusal(data, now, f"is used up ({spent} of {self.daily_units} units spent, "
                                           f"an upload costs {units})")

    def reserve(self, units: int | None = None) -> int:
        """Book ``units`` (one upload by default) and return what is left, or raise ``RateLimited``."""
        units = self.upload_cost if units is None else int(units)
        with self._lock:
            now = self.clock()
            data = self._today(now)
            self._refuse_if_full(data, now, units)
            data["spent"] = int(data.get("spent", 0)) + units
            data["uploads"] = int(data.get("uploads", 0)) + 1
            self._write(data, now)
            return self.daily_units - data["spent"]

    def refund(self, units: int | None = None) -> None:
        """Give back a reservation whose request never reached the API (no upload session opened)."""
        units = self.upload_cost if units is None else int(units)
        with self._lock:
            now = self.clock()
            data = self._today(now)
            data["spent"] = max(0, int(data.get("spent", 0)) - units)
            data["uploads"] = max(0, int(data.get("uploads", 0)) - 1)
            self._write(data, now)

    def mark_exhausted(self) -> None:
        """The API said the quota is gone: refuse every upload until the next Pacific midnight."""
        with self._lock:
            now = self.clock()
            data = self._today(now)
            data["exhausted"] = True
            self._write(data, now)


# -- metadata → request body -------------------------------------------------------------------------------------

PRIVACY = ("private", "unlisted", "public")
TITLE_MAX = 100
DESCRIPTION_MAX_BYTES = 5000
TAGS_MAX_CHARS = 500


def _clean(text: Any) -> str:
    """YouTube refuses '<' and '>' in titles and descriptions (invalidTitle / invalidDescription)."""
    return str(text or "").replace("<", "").replace(">", "").strip()


def truncate_bytes(text: str, limit: int) -> str:
    """At most ``limit`` UTF-8 bytes, never cutting a character in half."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore").rstrip()


def fit_tags(tags: Any) -> list[str]:
    """Tags within YouTube's 500-character budget (a tag with a space counts its quotes too)."""
    out: list[str] = []
    used = 0
    for tag in tags if isinstance(tags, list) else []:
        t = _clean(tag).lstrip("#").replace(",", " ").strip()
        if not t or t.lower() in (o.lower() for o in out):
            continue
        cost = len(t) + (2 if " " in t else 0) + (1 if out else 0)
        if used + cost > TAGS_MAX_CHARS:
            break
        out.append(t)
        used += cost
    return out


def parse_publish_at(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (``Z`` or an offset; a naive time is taken as UTC)."""
    if value in (None, ""):
        return None
    try:
        dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise errors.InvalidInput(f"publish_at {value!r} is not an ISO 8601 date-time") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class VideoRequest:
    body: dict[str, Any]
    notes: tuple[str, ...] = ()


def video_body(meta: dict[str, Any], *, privacy: str | None = None, now: float | None = None,
               fallback_title: str = "") -> VideoRequest:
    """The ``videos.insert`` body from ``metadata.json``.

    ``privacy`` (the batch option) wins over the metadata's; a ``publish_at`` forces
    ``private`` (the API requires it) and one already past is dropped, leaving the video
    private rather than publishing it at once.
    """
    now = clock() if now is None else now
    notes: list[str] = []
    title = _clean(meta.get("title")) or _clean(fallback_title)
    if not title:
        raise errors.InvalidInput("metadata.json has no title")
    if len(title) > TITLE_MAX:
        title = title[:TITLE_MAX].rstrip()
        notes.append(f"title cut to {TITLE_MAX} characters")
    description = _clean(meta.get("description"))
    hashtags = [h if h.startswith("#") else f"#{h}"
                for h in (str(x).strip().replace(" ", "") for x in (meta.get("hashtags") or [])) if h.strip("#")]
    missing = [h for h in hashtags if h.lower() not in description.lower()]
    if missing:
        description = f"{description}\n\n{' '.join(missing)}".strip()
    description = truncate_bytes(description, DESCRIPTION_MAX_BYTES)
    snippet: dict[str, Any] = {"title": title, "description": description, "tags": fit_tags(meta.get("tags")),
                               "categoryId": str(meta.get("category_id") or "22")}
    if meta.get("language"):
        snippet["defaultLanguage"] = snippet["defaultAudioLanguage"] = str(meta["language"])
    chosen = str(privacy or meta.get("privacy") or "private").lower()
    if chosen not in PRIVACY:
        raise errors.InvalidInput(f"privacy must be one of {', '.join(PRIVACY)}, not {chosen!r}")
    status: dict[str, Any] = {"privacyStatus": chosen, "selfDeclaredMadeForKids": False}
    when = parse_publish_at(meta.get("publish_at"))
    if when is not None:
        if when.timestamp() <= now + 60:
            notes.append(f"publish_at {rfc3339(when)} is past; uploaded {chosen} without a schedule")
        else:
            if chosen != "private":
                notes.append(f"scheduled publishing requires private; {chosen} ignored")
            status.update(privacyStatus="private", publishAt=rfc3339(when))
    if isinstance(meta.get("contains_synthetic_media"), bool):
        status["containsSyntheticMedia"] = meta["contains_synthetic_media"]
    return VideoRequest({"snippet": snippet, "status": status}, tuple(notes))


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


def classify(exc: Any, ledger: QuotaLedger | None = None, now: float | None = None) -> errors.TubemillError:
    """A pipeline error for a final (not retried) ``HttpError``; marks the ledger on quota errors."""
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    reasons = error_reasons(exc)
    text = f"YouTube API {status}: {', '.join(reasons) or getattr(exc, 'reason', '') or 'error'}"
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
    import httplib2
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError
    from googleapiclient.http import MediaFileUpload

    chunksize = max(CHUNK, (int(chunksize) + CHUNK - 1) // CHUNK * CHUNK)
    wait = sleep_fn or sleep
    media = MediaFileUpload(str(path), mimetype="video/mp4", chunksize=chunksize, resumable=True)
    request = service.videos().insert(part="snippet,status", body=body, media_body=media)
    if session_uri:
        request.resumable_uri = session_uri
        # The client's own resume path: its next call asks the server what it holds ("bytes */size").
        request._in_error_state = True
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
            status, response = request.next_chunk()
        except HttpError as exc:
            code = int(exc.resp.status)
            if code in (404, 410) and request.resumable_uri:
                raise SessionExpired(f"the upload session is gone ({code})") from exc
            if code not in RETRY_STATUSES:
                raise classify(exc, ledger) from exc
            failure: Exception = exc
        except RefreshError as exc:
            raise errors.AuthFailed(f"the YouTube token was refused: {AUTH_HINT}") from exc
        except (httplib2.HttpLib2Error, TransportError, OSError) as exc:  # DNS, reset, timeout
            failure = exc
        else:
            failures = 0
            if status is not None and progress is not None:
                progress(status.progress())
            continue
        finally:
            note_session()
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


def watch_url(video_id: str) -> str:
    return f"https://www.youtube.com/watch?v={video_id}"


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "AUTH_HINT", "Backoff", "QuotaLedger", "SCOPES", "SessionExpired", "VideoRequest", "authorize", "build_service",
    "classify", "error_reasons", "has_token", "load_credentials", "next_reset", "quota_day", "save_credentials",
    "service_for", "token_path", "upload_video", "video_body", "watch_url",
]

"""YouTube OAuth: the installed-app consent flow and the stored token, refreshed when it expires.

:func:`authorize` (run once from the CLI) stores ``creds.to_json()`` in
``<home>/secrets/youtube_token.json`` (mode 0600, JSON, never pickle);
:func:`load_credentials` refreshes an expired access token and writes it back. Apart from
the upload itself so that the CLI's ``youtube-auth`` and the doctor need no API client.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from pipeline import errors
from pipeline.config.secrets import secrets_dir, write_private

log = logging.getLogger("tubemill.youtube")

SCOPES = ["https://www.googleapis.com/auth/youtube.upload"]  # videos.insert and thumbnails.set: the least that works
# playlistItems.insert needs the whole-account scope; asked for only by `youtube-auth --playlists`.
PLAYLIST_SCOPES = ["https://www.googleapis.com/auth/youtube"]
TOKEN_FILE = "youtube_token.json"
AUTH_HINT = "run `tubemill youtube-auth CLIENT_SECRETS.json` once to authorize uploads"

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
              port: int = 0, timeout_s: int | None = 300, playlists: bool = False) -> Any:
    """The installed-app consent flow on a loopback port; stores and returns the credentials.

    ``client_secrets_path`` is the OAuth client JSON of a "Desktop app" client from the
    Google Cloud console. ``access_type=offline`` and ``prompt=consent`` make Google
    return a refresh token even on a second consent, so the token keeps working. ``playlists`` asks
    for the whole-account scope that adding to a playlist needs, instead of upload-only.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    path = Path(client_secrets_path)
    if not path.is_file():
        raise errors.InvalidInput(f"no OAuth client secrets file at {path}")
    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(path), scopes=PLAYLIST_SCOPES if playlists else SCOPES)
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

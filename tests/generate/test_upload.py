"""upload and recipes.generate.youtube: the real API client over googleapiclient's HttpMockSequence and the bundled
discovery document; the token endpoint and the OAuth consent are served on loopback. No network."""

from __future__ import annotations

import json
import stat
import threading
import urllib.parse
import urllib.request
import webbrowser
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.http import HttpMockSequence

from pipeline import errors
from pipeline.engine.stage import StageContext
from pipeline.recipes.generate import youtube
from pipeline.recipes.generate.stages import upload

LA = youtube.PACIFIC
NOW = datetime(2025, 6, 1, 15, 0, tzinfo=LA).timestamp()  # 3 pm PDT: 9 h to the next quota day
SIZE = 600_000
CHUNK = 262_144
SESSION_URI = "https://www.googleapis.com/upload/youtube/v3/videos?uploadType=resumable&upload_id=s1"
START = ({"status": "200", "location": SESSION_URI}, "")
VIDEO = {"id": "vid123", "status": {"privacyStatus": "private", "uploadStatus": "uploaded",
                                    "publishAt": "2025-06-03T16:00:00Z"}}
DONE = ({"status": "200"}, json.dumps(VIDEO))
NOTHING = ({"status": "308"}, "")  # the server holds no bytes yet: no range header


def partial(last: int) -> tuple[dict[str, str], str]:
    return {"status": "308", "range": f"bytes=0-{last}"}, ""


def api_error(status: int, reason: str) -> tuple[dict[str, str], str]:
    body = {"error": {"code": status, "message": reason, "errors": [{"reason": reason, "domain": "youtube"}]}}
    return {"status": str(status)}, json.dumps(body)


METADATA = {"title": "Rivers <3 deltas", "description": "How rivers build land.", "tags": ["rivers", "geology"],
            "hashtags": ["#shorts", "science"], "category_id": "27", "privacy": "public",
            "publish_at": "2025-06-03T09:00:00-07:00"}


class Hooks:
    """The youtube module's hooks for one test: a fixed clock, recorded sleeps, the service to hand out."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = NOW
        self.sleeps: list[float] = []
        self.http: HttpMockSequence | None = None
        monkeypatch.setattr(youtube, "clock", lambda: self.now)
        monkeypatch.setattr(youtube, "sleep", self.sleeps.append)
        monkeypatch.setattr(youtube, "service_factory", self.factory)

    def factory(self, ctx: StageContext) -> Any:
        assert self.http is not None, "this test expected no API call"
        return youtube.build_service(http=self.http)

    def serve(self, *responses: tuple[dict[str, str], str]) -> HttpMockSequence:
        self.http = HttpMockSequence(list(responses))
        return self.http


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    return Hooks(monkeypatch)


def make_item(root: Path, name: str = "item", metadata: dict[str, Any] | None = None) -> Path:
    wd = root / name
    wd.mkdir(parents=True)
    (wd / "video.mp4").write_bytes(bytes(range(256)) * (SIZE // 256) + b"\0" * (SIZE % 256))
    (wd / "metadata.json").write_text(json.dumps(metadata or METADATA))
    return wd


def make_ctx(wd: Path, home: Path, progress: list[float] | None = None, cancelled: Any = lambda: False,
             **options: Any) -> StageContext:
    opts = {"upload": True, "upload_chunksize": CHUNK, **options}
    report = progress.append if progress is not None else lambda f: None
    return StageContext(batch_id="b1", batch_name="test", item_n=1, stage="upload", workdir=wd, options=opts,
                        attempt=1, account=None, _progress=report, _cancelled=cancelled, home=home)


def requests_of(http: HttpMockSequence) -> list[tuple[str, str, dict[str, str]]]:
    return [(method, uri, {k.lower(): v for k, v in (headers or {}).items()})
            for uri, method, _body, headers in http.request_sequence]


def test_upload_success(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """A resumable upload in three chunks writes upload.json, books 1,600 units and reports progress."""
    wd = make_item(tmp_path)
    http = hooks.serve(START, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE)
    progress: list[float] = []
    result = upload.run({}, make_ctx(wd, home, progress))
    record = json.loads((wd / "upload.json").read_text())
    assert record["video_id"] == "vid123" and record["url"] == "https://www.youtube.com/watch?v=vid123"
    assert record["privacy"] == "private" and record["publish_at"] == "2025-06-03T16:00:00Z"
    assert record["uploaded_at"] == "2025-06-01T22:00:00Z"
    assert result.meta == {"upload": "uploaded", "youtube_id": "vid123", "youtube_url": record["url"]}
    assert result.artifacts == {"upload": str(wd / "upload.json")}
    reqs = requests_of(http)
    method, uri, headers = reqs[0]
    assert method == "POST" and "uploadType=resumable" in uri and "part=snippet%2Cstatus" in uri
    assert headers["x-upload-content-length"] == str(SIZE)
    body = json.loads(http.request_sequence[0][2])
    assert body["snippet"]["title"] == "Rivers 3 deltas"  # '<' and '>' are refused by the API
    assert body["snippet"]["description"].endswith("#shorts #science")
    assert body["snippet"]["categoryId"] == "27" and body["snippet"]["tags"] == ["rivers", "geology"]
    assert body["status"] == {"privacyStatus": "private", "publishAt": "2025-06-03T16:00:00Z",
                              "selfDeclaredMadeForKids": False, "containsSyntheticMedia": True}
    assert [h["content-range"] for _, _, h in reqs[1:]] == [
        f"bytes 0-{CHUNK - 1}/{SIZE}", f"bytes {CHUNK}-{2 * CHUNK - 1}/{SIZE}", f"bytes {2 * CHUNK}-{SIZE - 1}/{SIZE}"]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 1600
    assert not (wd / upload.SESSION).exists() and hooks.sleeps == []


def test_server_error_is_resumed(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """A 500 mid-upload backs off, asks the server what it holds and goes on from there."""
    wd = make_item(tmp_path)
    http = hooks.serve(START, partial(CHUNK - 1), api_error(500, "backendError"), partial(CHUNK - 1),
                       partial(2 * CHUNK - 1), DONE)
    result = upload.run({}, make_ctx(wd, home, upload_backoff_s=2.0))
    assert result.meta["youtube_id"] == "vid123"
    ranges = [h.get("content-range") for _, _, h in requests_of(http)[1:]]
    assert ranges == [f"bytes 0-{CHUNK - 1}/{SIZE}", f"bytes {CHUNK}-{2 * CHUNK - 1}/{SIZE}", f"bytes */{SIZE}",
                      f"bytes {CHUNK}-{2 * CHUNK - 1}/{SIZE}", f"bytes {2 * CHUNK}-{SIZE - 1}/{SIZE}"]
    assert hooks.sleeps == [2.0]
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 1600


class FlakyHttp(HttpMockSequence):
    """HttpMockSequence whose n-th request drops the connection (what httplib2 raises on a reset)."""

    def __init__(self, responses: list[Any], fail_at: set[int]) -> None:
        super().__init__(responses)
        self.fail_at, self.calls = fail_at, 0

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, redirections: int = 1,
                connection_type: Any = None) -> Any:
        self.calls += 1
        if self.calls in self.fail_at:
            self.request_sequence.append((uri, method, body, headers))
            raise ConnectionResetError("connection reset by peer")
        return super().request(uri, method, body, headers, redirections, connection_type)


def test_dropped_connections_retry_with_backoff(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """Connection resets while opening the session and on the first chunk are retried with doubling delays."""
    wd = make_item(tmp_path)
    http = hooks.http = FlakyHttp([START, NOTHING, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE],
                                  fail_at={1, 3})
    result = upload.run({}, make_ctx(wd, home, upload_backoff_s=1.0))
    assert result.meta["upload"] == "uploaded"
    assert hooks.sleeps == [1.0, 2.0]  # the second reset came within the same step: two failures in a row
    assert http._iterable == []
    assert [h.get("content-range") for _, _, h in requests_of(http)][3] == f"bytes */{SIZE}"


def test_persistent_server_errors_give_up_retryably(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """After upload_retries failures in a row the stage fails with a retryable NetworkError, bounded backoff."""
    wd = make_item(tmp_path)
    hooks.serve(START, *[x for _ in range(4) for x in (api_error(503, "backendError"), NOTHING)])
    with pytest.raises(errors.NetworkError):
        upload.run({}, make_ctx(wd, home, upload_retries=3, upload_backoff_s=1.0))
    assert hooks.sleeps == [1.0, 2.0, 4.0]
    assert (wd / upload.SESSION).exists() and not (wd / "upload.json").exists()
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 1600  # the session was opened


def test_quota_exceeded_defers_to_pacific_midnight(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """403 quotaExceeded → RateLimited until midnight Pacific; the ledger refuses further uploads that day."""
    wd = make_item(tmp_path)
    hooks.serve(api_error(403, "quotaExceeded"))
    with pytest.raises(errors.RateLimited) as info:
        upload.run({}, make_ctx(wd, home))
    assert info.value.retry_after == 9 * 3600
    ledger = youtube.QuotaLedger(home, clock=lambda: hooks.now)
    assert ledger.exhausted() and ledger.next_reset() == NOW + 9 * 3600

    other = make_item(tmp_path, "other")
    hooks.http = None  # no HTTP at all: the ledger answers
    hooks.now = NOW + 3600
    with pytest.raises(errors.RateLimited) as info:
        upload.run({}, make_ctx(other, home))
    assert info.value.retry_after == 8 * 3600

    hooks.now = NOW + 9 * 3600  # midnight Pacific: a new quota day
    hooks.serve(START, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE)
    assert upload.run({}, make_ctx(other, home)).meta["upload"] == "uploaded"
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 1600


def test_ledger_counts_units_and_resets_daily(tmp_path: Path) -> None:
    """Six uploads fit in 10,000 units, the seventh waits for the next day; the file is rewritten atomically."""
    now = [NOW]
    ledger = youtube.QuotaLedger(tmp_path, daily_units=10_000, upload_cost=1_600, clock=lambda: now[0])
    assert [ledger.reserve() for _ in range(6)] == [8400, 6800, 5200, 3600, 2000, 400]
    with pytest.raises(errors.RateLimited) as info:
        ledger.reserve()
    assert info.value.retry_after == 9 * 3600 and ledger.spent_today() == 9600
    assert json.loads((tmp_path / "youtube-quota.json").read_text())["day"] == "2025-06-01"
    ledger.refund()
    assert ledger.spent_today() == 8000
    now[0] = NOW + 9 * 3600
    assert ledger.spent_today() == 0 and ledger.reserve() == 8400
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_quota_day_follows_daylight_saving() -> None:
    """The day that ends the summer time in Los Angeles lasts 25 hours."""
    fall_back = datetime(2025, 11, 2, 0, 30, tzinfo=LA).timestamp()
    assert youtube.next_reset(fall_back) - fall_back == 24.5 * 3600
    assert youtube.quota_day(datetime(2025, 6, 2, 6, 59, tzinfo=UTC).timestamp()) == "2025-06-01"
    assert youtube.quota_day(datetime(2025, 6, 2, 7, 0, tzinfo=UTC).timestamp()) == "2025-06-02"


def test_unauthorized_and_bad_request(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """401 is AuthFailed (with the command to run); 400 is InvalidInput and costs no retries."""
    hooks.serve(api_error(401, "authError"))
    with pytest.raises(errors.AuthFailed, match="tubemill youtube-auth"):
        upload.run({}, make_ctx(make_item(tmp_path, "a"), home))
    hooks.serve(api_error(400, "invalidTitle"))
    with pytest.raises(errors.InvalidInput, match="invalidTitle"):
        upload.run({}, make_ctx(make_item(tmp_path, "b"), home))
    assert hooks.sleeps == []


def test_upload_json_makes_it_idempotent(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """With upload.json present the stage returns it and makes no HTTP request at all."""
    wd = make_item(tmp_path)
    (wd / "upload.json").write_text(json.dumps({"video_id": "old1", "url": youtube.watch_url("old1")}))
    hooks.http = None
    result = upload.run({}, make_ctx(wd, home))
    assert result.meta == {"upload": "exists", "youtube_id": "old1", "youtube_url": youtube.watch_url("old1")}


def test_skipped_unless_asked(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """Without options["upload"] (or with a false-ish string) the stage does nothing."""
    wd = make_item(tmp_path)
    hooks.http = None
    for value in (None, False, "0", "no"):
        assert upload.run({}, make_ctx(wd, home, upload=value)).meta == {"upload": "skipped"}
    assert not (wd / "upload.json").exists()


def test_kept_session_is_continued_without_a_second_insert(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """An attempt cancelled mid-file leaves its session; the next attempt continues it and books no more quota."""
    wd = make_item(tmp_path)
    hooks.serve(START, partial(CHUNK - 1))
    progress: list[float] = []
    with pytest.raises(errors.Cancelled):
        upload.run({}, make_ctx(wd, home, progress, cancelled=lambda: bool(progress)))
    session = wd / upload.SESSION
    assert json.loads(session.read_text())["uri"] == SESSION_URI
    assert stat.S_IMODE(session.stat().st_mode) == 0o600

    http = hooks.serve(partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE)
    result = upload.run({}, make_ctx(wd, home))
    assert result.meta["upload"] == "resumed" and result.meta["youtube_id"] == "vid123"
    reqs = requests_of(http)
    assert all(method == "PUT" and uri == SESSION_URI for method, uri, _ in reqs)
    assert reqs[0][2]["content-range"] == f"bytes */{SIZE}"
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 1600
    assert not session.exists()


def test_session_finished_before_a_kill_is_recorded_not_uploaded_again(tmp_path: Path, home: Path,
                                                                        hooks: Hooks) -> None:
    """All bytes sent but upload.json never written: the status query returns the video; one request, no insert."""
    wd = make_item(tmp_path)
    hooks.serve(START, partial(CHUNK - 1))
    progress: list[float] = []
    with pytest.raises(errors.Cancelled):
        upload.run({}, make_ctx(wd, home, progress, cancelled=lambda: bool(progress)))
    meta = json.loads((wd / "metadata.json").read_text())
    (wd / "metadata.json").write_text(json.dumps({**meta, "title": "Edited later"}))
    http = hooks.serve(DONE)
    result = upload.run({}, make_ctx(wd, home))
    assert result.meta["upload"] == "resumed" and len(http.request_sequence) == 1
    assert json.loads((wd / "upload.json").read_text())["title"] == "Rivers 3 deltas"  # as the session began


def test_expired_session_starts_over(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """A kept session the server no longer knows (404) is dropped and a new upload is opened and paid for."""
    wd = make_item(tmp_path)
    hooks.serve(START, partial(CHUNK - 1))
    progress: list[float] = []
    with pytest.raises(errors.Cancelled):
        upload.run({}, make_ctx(wd, home, progress, cancelled=lambda: bool(progress)))
    http = hooks.serve(api_error(404, "notFound"), START, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE)
    assert upload.run({}, make_ctx(wd, home)).meta["upload"] == "uploaded"
    assert requests_of(http)[1][0] == "POST"
    assert youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today() == 3200


# -- OAuth token -------------------------------------------------------------------------------------------------


class TokenResponse:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.headers, self.data = status, {"content-type": "application/json"}, json.dumps(body).encode()


class FakeTokenEndpoint:
    """A google.auth transport ``Request`` answering the token endpoint, recording what it was sent."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None) -> None:
        self.status = status
        self.body = body or {"access_token": "fresh-token", "expires_in": 3600, "token_type": "Bearer"}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None,
                 **kwargs: Any) -> TokenResponse:
        self.calls.append({"url": url, "method": method, "body": body})
        return TokenResponse(self.status, self.body)


def store_expired_token(home: Path) -> None:
    from google.oauth2.credentials import Credentials

    creds = Credentials(token="stale-token", refresh_token="refresh-1", client_id="cid.apps.googleusercontent.com",
                        client_secret="csecret", token_uri="https://oauth2.googleapis.com/token",
                        scopes=youtube.SCOPES, expiry=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1))
    youtube.save_credentials(home, creds)


def test_expired_token_is_refreshed_and_stored_0600_json(home: Path) -> None:
    """An expired access token is refreshed through the token endpoint and written back as 0600 JSON."""
    store_expired_token(home)
    endpoint = FakeTokenEndpoint()
    creds = youtube.load_credentials(home, request=endpoint)
    assert creds.token == "fresh-token" and creds.valid
    assert endpoint.calls[0]["url"] == "https://oauth2.googleapis.com/token"
    assert b"grant_type=refresh_token" in endpoint.calls[0]["body"]
    path = youtube.token_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())  # JSON, not a pickle
    assert stored["token"] == "fresh-token" and stored["refresh_token"] == "refresh-1"
    again = FakeTokenEndpoint()
    assert youtube.load_credentials(home, request=again).token == "fresh-token" and again.calls == []


def test_refreshed_token_authorizes_the_upload(tmp_path: Path, home: Path, hooks: Hooks,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials loaded (and refreshed) from the home sign the upload requests with the new bearer token."""
    store_expired_token(home)
    wd = make_item(tmp_path)
    http = HttpMockSequence([START, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE])
    monkeypatch.setattr(youtube, "service_factory", lambda ctx: youtube.build_service(
        youtube.load_credentials(ctx.home, request=FakeTokenEndpoint()), http=http))
    assert upload.run({}, make_ctx(wd, home)).meta["youtube_id"] == "vid123"
    assert all(h["authorization"] == "Bearer fresh-token" for _, _, h in requests_of(http))


def test_missing_or_revoked_token_is_auth_failed(home: Path) -> None:
    """No token file, or a refresh Google refuses (invalid_grant), is AuthFailed naming the command to run."""
    with pytest.raises(errors.AuthFailed, match="tubemill youtube-auth"):
        youtube.load_credentials(home)
    store_expired_token(home)
    refused = FakeTokenEndpoint(400, {"error": "invalid_grant", "error_description": "Token has been revoked."})
    with pytest.raises(errors.AuthFailed, match="tubemill youtube-auth"):
        youtube.load_credentials(home, request=refused)


class _TokenServer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
        self.server.forms.append(form)  # type: ignore[attr-defined]
        body = json.dumps({"access_token": "first-token", "refresh_token": "refresh-9", "expires_in": 3600,
                           "token_type": "Bearer", "scope": youtube.SCOPES[0]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _ConsentingBrowser(webbrowser.BaseBrowser):
    """Plays the user: reads the consent URL and follows Google's redirect back to the loopback server."""

    urls: list[str] = []

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.urls.append(url)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        back = f"{q['redirect_uri'][0]}?state={q['state'][0]}&code=auth-code-1&scope={youtube.SCOPES[0]}"
        threading.Thread(target=lambda: urllib.request.urlopen(back, timeout=10).read(), daemon=True).start()
        return True


def test_authorize_installed_app_flow(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The consent flow on 127.0.0.1 exchanges the code at the token endpoint and stores 0600 JSON."""
    server = HTTPServer(("127.0.0.1", 0), _TokenServer)
    server.forms = []  # type: ignore[attr-defined]
    threading.Thread(target=server.handle_request, daemon=True).start()
    secrets = tmp_path / "client_secret.json"
    secrets.write_text(json.dumps({"installed": {
        "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": f"http://127.0.0.1:{server.server_port}/token", "redirect_uris": ["http://localhost"]}}))
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the loopback token endpoint is plain http
    webbrowser.register("tubemill-test-consent", None, _ConsentingBrowser("tubemill-test-consent"))
    try:
        creds = youtube.authorize(home, secrets, browser="tubemill-test-consent", timeout_s=20)
    finally:
        server.server_close()
    consent = urllib.parse.parse_qs(urllib.parse.urlsplit(_ConsentingBrowser.urls[-1]).query)
    assert consent["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert consent["access_type"] == ["offline"] and consent["scope"] == youtube.SCOPES
    assert server.forms[0]["code"] == ["auth-code-1"]  # type: ignore[attr-defined]
    assert creds.token == "first-token" and creds.refresh_token == "refresh-9"
    path = youtube.token_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["refresh_token"] == "refresh-9"
    with pytest.raises(errors.InvalidInput):
        youtube.authorize(home, tmp_path / "missing.json")


def test_video_body_rules() -> None:
    """publish_at forces private; a past one is dropped; the option overrides metadata privacy; tags fit 500."""
    future = youtube.video_body({"title": "T", "publish_at": "2025-06-03T16:00:00Z"}, privacy="public", now=NOW)
    assert future.body["status"]["privacyStatus"] == "private" and future.notes
    past = youtube.video_body({"title": "T", "publish_at": "2025-05-01T00:00:00Z", "privacy": "unlisted"}, now=NOW)
    assert past.body["status"] == {"privacyStatus": "unlisted", "selfDeclaredMadeForKids": False}
    many = youtube.video_body({"title": "x" * 150, "tags": [f"tag number {i}" for i in range(100)]}, now=NOW)
    tags = many.body["snippet"]["tags"]
    assert len(many.body["snippet"]["title"]) == 100
    assert sum(len(t) + 2 for t in tags) + len(tags) - 1 <= 500 and len(tags) < 100
    with pytest.raises(errors.InvalidInput):
        youtube.video_body({"title": "T", "privacy": "secret"}, now=NOW)
    with pytest.raises(errors.InvalidInput):
        youtube.video_body({"title": ""}, now=NOW)

"""Upload extras: the declarations in videos.insert, the custom thumbnail (title card or frame) through thumbnails.set,
the playlist insert, and what happens when YouTube refuses one of them. The real API client over HttpMockSequence
and the bundled discovery document; real JPEGs from Pillow, real frames from ffmpeg. No network."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline import errors
from pipeline.common.ffmpeg import ffmpeg_exe
from pipeline.recipes.generate import thumbnail, youtube
from pipeline.recipes.generate.stages import upload
from tests.generate.test_upload import (
    CHUNK,
    DONE,
    METADATA,
    NOW,
    SIZE,
    START,
    Hooks,
    api_error,
    make_ctx,
    make_item,
    partial,
    requests_of,
)

UPLOADED = (START, partial(CHUNK - 1), partial(2 * CHUNK - 1), DONE)
THUMB_OK = ({"status": "200"}, json.dumps({"kind": "youtube#thumbnailSetResponse", "items": [
    {"default": {"url": "https://i.ytimg.com/vi/vid123/default.jpg", "width": 120, "height": 90}}]}))
PLAYLIST_OK = ({"status": "200"}, json.dumps({"kind": "youtube#playlistItem", "id": "PLI-1", "snippet": {
    "playlistId": "PL42", "resourceId": {"kind": "youtube#video", "videoId": "vid123"}}}))
NO_THUMBNAILS = "The authenticated user doesn't have permissions to upload and set custom video thumbnails."


def api_refusal(status: int, reason: str, message: str) -> tuple[dict[str, str], str]:
    body = {"error": {"code": status, "message": message, "errors": [
        {"reason": reason, "domain": "youtube.thumbnail", "message": message}]}}
    return {"status": str(status)}, json.dumps(body)


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    return Hooks(monkeypatch)


def uploaded(tmp_path: Path, home: Path, hooks: Hooks, name: str = "item", **options: Any) -> Path:
    """An item folder whose video is on (fake) YouTube: upload.json written by the real stage."""
    wd = make_item(tmp_path, name)
    hooks.serve(*UPLOADED)
    assert upload.run({}, make_ctx(wd, home, **options)).meta["upload"] == "uploaded"
    return wd


def spent(home: Path, hooks: Hooks) -> int:
    return youtube.QuotaLedger(home, clock=lambda: hooks.now).spent_today()


def test_declarations_are_sent_explicitly(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """Made-for-kids is always in the body (false by default, false when asked false), the synthetic-content
    declaration too, and the default language fills both snippet fields; metadata.json's own values win."""
    wd = make_item(tmp_path, "a")
    http = hooks.serve(*UPLOADED)
    upload.run({}, make_ctx(wd, home, default_language="de", thumbnail="none"))
    body = json.loads(http.request_sequence[0][2])
    assert body["status"]["selfDeclaredMadeForKids"] is False and body["status"]["containsSyntheticMedia"] is True
    assert body["snippet"]["defaultLanguage"] == body["snippet"]["defaultAudioLanguage"] == "de"
    assert body["snippet"]["categoryId"] == "27"

    wd = make_item(tmp_path, "b", {"title": "Kids", "made_for_kids": True, "language": "fr"})
    http = hooks.serve(*UPLOADED)
    upload.run({}, make_ctx(wd, home, synthetic_media=False, category_id="22"))
    body = json.loads(http.request_sequence[0][2])
    assert body["status"]["selfDeclaredMadeForKids"] is True  # metadata.json says so
    assert "containsSyntheticMedia" in body["status"] and body["status"]["containsSyntheticMedia"] is False
    assert body["snippet"]["defaultLanguage"] == "fr" and body["snippet"]["categoryId"] == "22"


def test_bundled_discovery_has_the_declaration() -> None:
    """The field is in the bundled document's VideoStatus, and the client sends the body as given (no schema
    filter: a field the document lacked would still go out)."""
    import googleapiclient
    from googleapiclient.http import HttpMockSequence

    doc = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "youtube.v3.json"
    status = json.loads(doc.read_text())["schemas"]["VideoStatus"]["properties"]
    assert status["containsSyntheticMedia"]["type"] == "boolean" and "selfDeclaredMadeForKids" in status
    http = HttpMockSequence([({"status": "200"}, "{}")])
    body = {"status": {"containsSyntheticMedia": True, "notInTheSchema": 1}}
    youtube.build_service(http=http).videos().update(part="status", body=body).execute()
    assert json.loads(http.request_sequence[0][2]) == body


def test_title_thumbnail_and_playlist(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """After the upload: a 1280x720 title card goes up as image/jpeg, the video goes into the playlist,
    both are recorded in upload.json and booked at 50 units each."""
    wd = uploaded(tmp_path, home, hooks)
    http = hooks.serve(THUMB_OK, PLAYLIST_OK)
    result = upload.run_extras({"flags": ["script-offline"]}, make_ctx(wd, home, playlist_id="PL42"))
    (t_method, t_uri, t_headers), (p_method, p_uri, _) = requests_of(http)
    assert t_method == "POST" and "/upload/youtube/v3/thumbnails/set" in t_uri and "videoId=vid123" in t_uri
    assert t_headers["content-type"] == "image/jpeg"
    sent = http.request_sequence[0][2]
    sent = sent.read() if hasattr(sent, "read") else sent
    assert sent == (wd / "thumbnail.jpg").read_bytes() and len(sent) < thumbnail.MAX_BYTES
    with Image.open(io.BytesIO(sent)) as img:
        assert img.format == "JPEG" and img.size == (1280, 720)
    assert p_method == "POST" and "youtube/v3/playlistItems" in p_uri and "part=snippet" in p_uri
    assert json.loads(http.request_sequence[1][2]) == {
        "snippet": {"playlistId": "PL42", "resourceId": {"kind": "youtube#video", "videoId": "vid123"}}}
    extras = json.loads((wd / "upload.json").read_text())["extras"]
    assert extras["thumbnail"]["status"] == "set" and extras["thumbnail"]["source"] == "title"
    assert extras["playlist"] == {"status": "added", "playlist_id": "PL42", "playlist_item_id": "PLI-1",
                                  "at": "2025-06-01T22:00:00Z"}
    assert result.meta["thumbnail_status"] == "set" and result.meta["playlist_status"] == "added"
    assert result.meta["flags"] == ["script-offline"]  # the item's other flags are kept
    assert result.artifacts == {"thumbnail": str(wd / "thumbnail.jpg")}
    assert spent(home, hooks) == 1700
    calls = json.loads((home / youtube.QUOTA_FILE).read_text())["calls"]
    assert calls == {"thumbnails.set": 1, "playlistItems.insert": 1}


def test_refused_thumbnail_is_flagged_and_a_retry_redoes_only_it(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """A 403 on an unverified channel flags the item with YouTube's message; the video and the playlist stay;
    the retry neither uploads again nor adds to the playlist twice: one request, thumbnails.set."""
    wd = uploaded(tmp_path, home, hooks)
    hooks.serve(api_refusal(403, "forbidden", NO_THUMBNAILS), PLAYLIST_OK)
    result = upload.run_extras({}, make_ctx(wd, home, playlist_id="PL42"))
    assert result.meta["thumbnail_status"] == "failed" and NO_THUMBNAILS in result.meta["thumbnail_error"]
    assert "verified channel" in result.meta["thumbnail_error"] and result.meta["playlist_status"] == "added"
    assert result.meta["flags"] == [upload.EXTRAS_FLAG]
    record = json.loads((wd / "upload.json").read_text())
    assert record["video_id"] == "vid123" and record["extras"]["thumbnail"]["status"] == "failed"

    hooks.http = None  # the upload stage again: upload.json is there, no request at all
    assert upload.run({}, make_ctx(wd, home)).meta["upload"] == "exists"
    http = hooks.serve(THUMB_OK)
    again = upload.run_extras({"flags": result.meta["flags"]}, make_ctx(wd, home, playlist_id="PL42"))
    assert [(m, "thumbnails/set" in u) for m, u, _ in requests_of(http)] == [("POST", True)]
    assert again.meta["thumbnail_status"] == "set" and again.meta["thumbnail_error"] is None
    assert again.meta["flags"] == []
    assert json.loads((wd / "upload.json").read_text())["extras"]["playlist"]["playlist_item_id"] == "PLI-1"
    assert spent(home, hooks) == 1600 + 50 + 50 + 50  # the refused set was charged too

    hooks.http = None  # everything done: a third run asks nothing
    assert upload.run_extras({}, make_ctx(wd, home, playlist_id="PL42")).meta["flags"] == []


def test_missing_playlist_and_a_lost_answer(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """404 playlistNotFound is flagged with what to check; an insert whose answers were all 503 is looked up
    (playlistItems.list) before it is sent again, so a retry never adds the video twice."""
    wd = uploaded(tmp_path, home, hooks)
    hooks.serve(api_refusal(404, "playlistNotFound", "The playlist identified with the request's playlistId "
                                                     "parameter cannot be found."))
    result = upload.run_extras({}, make_ctx(wd, home, playlist_id="PLnope", thumbnail="none"))
    assert result.meta["playlist_status"] == "failed" and "playlistNotFound" in result.meta["playlist_error"]
    assert "check playlist_id" in result.meta["playlist_error"] and upload.EXTRAS_FLAG in result.meta["flags"]
    assert result.meta["thumbnail_status"] == "off" and not (wd / "thumbnail.jpg").exists()

    hooks.sleeps.clear()
    hooks.serve(*[api_error(503, "backendError")] * 3)
    lost = upload.run_extras({}, make_ctx(wd, home, playlist_id="PL42", thumbnail="none"))
    assert lost.meta["playlist_status"] == "failed" and hooks.sleeps == [2.0, 4.0]
    assert json.loads((wd / "upload.json").read_text())["extras"]["playlist"]["uncertain"] is True
    hooks.http = None  # the look itself refused (no quota left for it): still in doubt, nothing sent
    full = upload.run_extras({}, make_ctx(wd, home, playlist_id="PL42", thumbnail="none", youtube_daily_units=1700))
    assert "playlistItems.list costs 1" in full.meta["playlist_error"]
    assert json.loads((wd / "upload.json").read_text())["extras"]["playlist"]["uncertain"] is True
    listed = ({"status": "200"}, json.dumps({"items": [{"kind": "youtube#playlistItem", "id": "PLI-9"}]}))
    http = hooks.serve(listed)
    found = upload.run_extras({}, make_ctx(wd, home, playlist_id="PL42", thumbnail="none"))
    (method, uri, _), = requests_of(http)
    assert method == "GET" and "playlistId=PL42" in uri and "videoId=vid123" in uri
    assert found.meta["playlist_status"] == "added" and found.meta["flags"] == []
    assert json.loads((wd / "upload.json").read_text())["extras"]["playlist"]["playlist_item_id"] == "PLI-9"


def test_quota_and_auth_refusals_are_flags(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """An extra the ledger cannot fit is not sent; a token that is gone flags both; neither fails the stage."""
    wd = uploaded(tmp_path, home, hooks, youtube_daily_units=1650)
    http = hooks.serve(THUMB_OK)
    result = upload.run_extras({}, make_ctx(wd, home, youtube_daily_units=1650, playlist_id="PL42"))
    assert result.meta["thumbnail_status"] == "set" and len(http.request_sequence) == 1
    assert "quota" in result.meta["playlist_error"] and "playlistItems.insert costs 50" in result.meta["playlist_error"]

    scoped = uploaded(tmp_path, home, hooks, "scoped")
    hooks.serve(THUMB_OK, api_refusal(403, "insufficientPermissions", "Request had insufficient authentication "
                                                                     "scopes."))
    narrow = upload.run_extras({}, make_ctx(scoped, home, playlist_id="PL42"))
    assert narrow.meta["thumbnail_status"] == "set" and "youtube-auth" in narrow.meta["playlist_error"]

    other = uploaded(tmp_path, home, hooks, "other")

    def no_token(ctx: Any) -> Any:
        raise errors.AuthFailed(youtube.AUTH_HINT)

    hooks.http = None
    youtube.service_factory = no_token  # the Hooks fixture's monkeypatch restores it
    refused = upload.run_extras({}, make_ctx(other, home, playlist_id="PL42"))
    assert "youtube-auth" in refused.meta["thumbnail_error"] and "youtube-auth" in refused.meta["playlist_error"]
    assert refused.meta["flags"] == [upload.EXTRAS_FLAG]


def test_upload_off_still_draws_the_thumbnail(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """With upload off the thumbnail is made for the batch ZIP and nothing else happens."""
    wd = make_item(tmp_path)
    hooks.http = None
    result = upload.run_extras({}, make_ctx(wd, home, upload=False, playlist_id="PL42"))
    assert (wd / "thumbnail.jpg").is_file() and result.meta == {"thumbnail_source": "title"}
    assert not (wd / "upload.json").exists()


def make_video(path: Path) -> None:
    """2 s red then 2 s blue, 270x480 (9:16): which frame was taken shows in its colour."""
    graph = "color=c=red:s=270x480:d=2:r=10[a];color=c=blue:s=270x480:d=2:r=10[b];[a][b]concat=n=2:v=1[v]"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-y", str(path)], check=True, timeout=60)


def test_frame_thumbnail(tmp_path: Path, home: Path, hooks: Hooks) -> None:
    """thumbnail=frame takes the rendered video's frame at thumbnail_at (a third in by default), the vertical
    frame whole in the middle of a 1280x720 JPEG over a darkened copy; a video it cannot read gives a title card."""
    video = tmp_path / "v.mp4"
    make_video(video)
    first, later = tmp_path / "first.jpg", tmp_path / "later.jpg"
    thumbnail.video_frame(video, first)  # 4 s / 3: red
    thumbnail.video_frame(video, later, at=3.0)  # blue
    with Image.open(first) as a, Image.open(later) as b:
        assert a.size == b.size == (1280, 720)
        r, g, bl = a.getpixel((640, 360))
        assert r > 200 and bl < 60
        r, g, bl = b.getpixel((640, 360))
        assert bl > 200 and r < 60
        assert max(b.getpixel((60, 360))) < 150  # the sides: the same picture, blurred and darkened
    assert thumbnail.frame_at(video, 99.0) == pytest.approx(3.9, abs=0.05)

    wd = uploaded(tmp_path, home, hooks)  # its video.mp4 is not a video
    http = hooks.serve(THUMB_OK)
    result = upload.run_extras({}, make_ctx(wd, home, thumbnail="frame", thumbnail_at=1.0))
    assert result.meta["thumbnail_status"] == "set" and "a title card instead" in result.meta["thumbnail_note"]
    assert json.loads((wd / "upload.json").read_text())["extras"]["thumbnail"]["source"] == "title"
    assert len(http.request_sequence) == 1


def test_title_card_fits_and_stays_under_the_limit(tmp_path: Path) -> None:
    """A long title wraps into at most three lines inside the card; a noisy background (the worst case for
    JPEG) still comes out under 2 MB; a tight limit steps the quality down until it fits."""
    noise = tmp_path / "noise.png"
    Image.frombytes("RGB", (1080, 1920), os.urandom(1080 * 1920 * 3)).save(noise)
    out = tmp_path / "card.jpg"
    size = thumbnail.title_card("Why the deepest parts of the ocean stay cold even at the equator " * 2, out,
                                background=noise)
    assert size == out.stat().st_size < thumbnail.MAX_BYTES
    with Image.open(out) as img:
        assert img.size == (1280, 720)
    small = tmp_path / "small.jpg"
    with Image.open(noise) as img:
        assert thumbnail.save_jpeg(img.resize((1280, 720)), small, max_bytes=600_000) <= 600_000
    with pytest.raises(errors.PermanentError), Image.open(noise) as img:
        thumbnail.save_jpeg(img, small, max_bytes=1000)
    with pytest.raises(errors.InvalidInput):
        thumbnail.title_card("   ", out)


def test_ledger_books_extras_by_name(tmp_path: Path) -> None:
    """Extras cost their own units and do not count as uploads; a full day refuses them naming the call."""
    ledger = youtube.QuotaLedger(tmp_path, daily_units=1_700, clock=lambda: NOW)
    ledger.reserve()
    assert ledger.book("thumbnails.set") == 50 and ledger.book("playlistItems.list") == 49
    with pytest.raises(errors.RateLimited, match="playlistItems.insert costs 50"):
        ledger.book("playlistItems.insert")
    data = json.loads((tmp_path / youtube.QUOTA_FILE).read_text())
    assert data["uploads"] == 1 and data["spent"] == 1651


def _seed(item: dict[str, Any], ctx: Any) -> Any:
    """Stands in for render and metadata: the item folder as the upload stage finds it."""
    from pipeline.engine.stage import StageResult

    ctx.path("video.mp4").write_bytes(bytes(range(256)) * (SIZE // 256) + b"\0" * (SIZE % 256))
    ctx.path("metadata.json").write_text(json.dumps(METADATA))
    return StageResult()


def test_engine_reopens_only_the_extras(make_engine: Any, home: Path, hooks: Hooks) -> None:
    """Through the real engine: the refused thumbnail leaves the item done and flagged; retry_extras reruns the
    extras stage alone (one request), the flag goes, upload.json keeps the one video."""
    from pipeline.engine.recipe import Recipe, register_recipe
    from pipeline.engine.stage import Stage, register

    register(Stage("ux_seed", _seed, resource="cpu"))
    register_recipe(Recipe("uploadextras-test", ("ux_seed", "upload", "extras"), False, "upload extras test",
                           offered=False, actions={"retry_extras": upload.RETRY_EXTRAS}))
    hooks.serve(*UPLOADED, api_refusal(403, "forbidden", NO_THUMBNAILS), PLAYLIST_OK)
    e = make_engine()
    options = {"upload": True, "upload_chunksize": CHUNK, "playlist_id": "PL42"}
    bid = e.submit("ux", ["how tides work"], recipe="uploadextras-test", options=options)
    summary = e.wait(bid, timeout=30)
    (item,) = e.items(bid)
    assert summary.counts["done"] == 1, (item.get("status"), item.get("error"), item.get("stage"))
    assert upload.EXTRAS_FLAG in item["flags"] and NO_THUMBNAILS in item["meta"]["thumbnail_error"]
    assert item["meta"]["youtube_id"] == "vid123" and item["meta"]["playlist_status"] == "added"

    http = hooks.serve(THUMB_OK)
    assert e.reopen(bid, "retry_extras") == 1
    summary = e.wait(bid, timeout=30)
    (item,) = e.items(bid)
    assert summary.counts["done"] == 1, (item.get("status"), item.get("error"), item.get("stage"))
    assert [(m, "thumbnails/set" in u) for m, u, _ in requests_of(http)] == [("POST", True)]
    assert upload.EXTRAS_FLAG not in (item.get("flags") or []) and item["meta"]["thumbnail_status"] == "set"
    assert e.reopen(bid, "retry_extras") == 0
    assert spent(home, hooks) == 1750

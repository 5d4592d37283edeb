"""Stock pictures and footage: the three providers' requests and answers, the media cache, fallbacks, credits."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.engine.stage import StageContext
from pipeline.recipes.generate import media
from pipeline.recipes.generate.media_cache import MediaCache
from pipeline.recipes.generate.stages import frames, visuals
from tests.fake_stock import PEXELS_KEY, PIXABAY_KEY, FakeStock, picture

SIZE = (270, 480)
FAST = media.Retry(attempts=2, backoff_s=0.05, max_retry_after_s=2.0, timeout_s=1.0)


@pytest.fixture(scope="module")
def stock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStock]:
    with FakeStock(tmp_path_factory.mktemp("stock")) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fast(stock: FakeStock, monkeypatch: pytest.MonkeyPatch) -> None:
    stock.fail(None)
    stock.per_query = 4
    stock.seen.clear()
    monkeypatch.setattr(visuals, "POLICY", FAST)
    monkeypatch.setenv("PEXELS_API_KEY", PEXELS_KEY)
    monkeypatch.setenv("PIXABAY_API_KEY", PIXABAY_KEY)


VISUALS = ["Ocean waves at the beach", "The moon over the sea", "A tide table on a harbour wall",
           "Fishing boats stranded at low tide"]


def make_item(tmp_path: Path, name: str, topic: str = "How tides work", visual: list[str] | None = None,
              home: Path | None = None, **options: Any) -> tuple[dict[str, Any], StageContext]:
    wd = tmp_path / name
    wd.mkdir(parents=True, exist_ok=True)
    scenes = [{"index": k + 1, "narration": f"Scene {k + 1} of {topic}.", "visual": v, "est_s": 3.0}
              for k, v in enumerate(VISUALS if visual is None else visual)]
    (wd / "plan.json").write_text(json.dumps({"title": topic, "aspect": "9:16", "width": SIZE[0], "height": SIZE[1],
                                              "theme": "dark", "scenes": scenes}))
    opts = {"size": f"{SIZE[0]}x{SIZE[1]}", **options}
    ctx = StageContext(batch_id="b", batch_name="b", item_n=1, stage="visuals", workdir=wd, options=opts, attempt=1,
                       account=None, _progress=lambda f: None, _cancelled=lambda: False,
                       home=home or tmp_path / "home")
    return {"source": topic, "meta": {}, "flags": []}, ctx


def run_visuals(stock: FakeStock, tmp_path: Path, name: str, provider: str = "openverse", **kw: Any
                ) -> tuple[dict[str, Any], dict[str, Any], StageContext]:
    options = {"media_provider": provider, f"{provider}_base_url": stock.base_url, **kw.pop("options", {})}
    item, ctx = make_item(tmp_path, name, **kw, **options)
    res = visuals.run(item, ctx)
    return json.loads((ctx.workdir / "visuals.json").read_text()), res.meta, ctx


def test_each_provider_sends_its_real_request_and_reads_its_answer(stock: FakeStock) -> None:
    """Pexels: Authorization header; Pixabay: key parameter; Openverse: no key; field names read right."""
    pex = media.make_provider("pexels", stock.base_url, PEXELS_KEY, FAST)
    photos = media.parse_answer(pex, pex.search_raw("ocean waves", "image", True, 5), "image")
    call = stock.api_calls("/v1/search")[-1]
    assert call.headers["authorization"] == PEXELS_KEY and call.query["query"] == "ocean waves"
    assert call.query["orientation"] == "portrait" and call.query["per_page"] == "5"
    assert photos[0].download_url.endswith("large2x.jpeg") or photos[0].download_url.endswith("large2x.png")
    assert photos[0].author.startswith("Photographer") and photos[0].licence == "Pexels License"
    assert not photos[0].attribution_required
    clips = media.parse_answer(pex, pex.search_raw("ocean waves", "video", True, 5), "video")
    assert stock.api_calls("/videos/search") and clips[0].kind == "video"
    assert clips[0].download_url.endswith(".mp4") and clips[0].height == 1920  # the HD file covers 1080 wide
    assert clips[0].author.startswith("Videographer") and clips[0].duration in (1.0, 2.0)

    pix = media.make_provider("pixabay", stock.base_url, PIXABAY_KEY, FAST)
    hits = media.parse_answer(pix, pix.search_raw("ocean waves", "image", True, 2), "image")
    call = stock.api_calls("/api/")[-1]
    assert call.query["key"] == PIXABAY_KEY and call.query["q"] == "ocean waves"
    assert call.query["image_type"] == "photo" and call.query["orientation"] == "vertical"
    assert call.query["per_page"] == "3"  # Pixabay's minimum
    assert hits[0].download_url.endswith("_1280.jpg") and hits[0].url.startswith("https://pixabay.com/photos/")
    assert hits[0].author_url.startswith("https://pixabay.com/users/user")
    vids = media.parse_answer(pix, pix.search_raw("ocean", "video", False, 3), "video")
    assert stock.api_calls("/api/videos/")[-1].query["key"] == PIXABAY_KEY
    assert "-medium-" in vids[0].download_url and vids[0].width == 1280

    ov = media.make_provider("openverse", stock.base_url, None, FAST)
    imgs = media.parse_answer(ov, ov.search_raw("ocean waves", "image", True, 50), "image")
    call = stock.api_calls("/v1/images/")[-1]
    assert call.query["q"] == "ocean waves" and call.query["page_size"] == "20" and "authorization" not in call.headers
    assert call.query["aspect_ratio"] == "tall"
    assert [a.licence for a in imgs[:4]] == ["CC BY 2.0", "CC0 1.0", "CC BY-SA 4.0", "Public Domain Mark"]
    assert [a.attribution_required for a in imgs[:4]] == [True, False, True, False]
    assert imgs[0].url.startswith("https://www.flickr.com/") and imgs[0].author == "Creator 0"
    assert PIXABAY_KEY not in repr(pix) and PEXELS_KEY not in repr(pex)
    assert imgs[0].title == "ocean waves 0" and photos[0].title == "ocean waves"


def test_scenes_get_distinct_fitted_pictures_with_credits(stock: FakeStock, tmp_path: Path) -> None:
    """Each scene: its own query from the visual, a picture cropped to the frame, source/author/licence kept."""
    doc, meta, ctx = run_visuals(stock, tmp_path, "a")
    scenes = doc["scenes"]
    assert doc["provider"] == "openverse" and doc["query_source"] == "visual" and doc["errors"] == []
    assert [s["query"] for s in scenes] == ["ocean waves beach", "moon sea", "tide table harbour wall",
                                           "fishing boats stranded low tide"]
    assert len({s["url"] for s in scenes}) == len(scenes)
    for s in scenes:
        assert s["kind"] == "image" and s["provider"] == "openverse" and s["fallback"] is None
        with Image.open(ctx.workdir / s["path"]) as im:
            assert im.size == SIZE
        assert s["author"] and s["licence"] and s["licence_url"] and isinstance(s["attribution_required"], bool)
    assert meta["media_from_provider"] == 4 and meta["media_fallbacks"] == 0 and "flags" not in meta
    frames.run({"source": "x"}, ctx)  # the stills are drawn over the stock pictures, not the gradient
    with Image.open(ctx.workdir / "frames" / "scene-01.png") as im:
        corner = im.convert("RGB").getpixel((2, SIZE[1] - 3))
    with Image.open(ctx.workdir / scenes[0]["path"]) as im:
        src = im.convert("RGB").getpixel((2, SIZE[1] - 3))
    gradient = frames._gradient(SIZE, frames.THEMES["dark"]).getpixel((2, SIZE[1] - 3))
    assert corner != gradient and abs(corner[0] - src[0]) < abs(gradient[0] - src[0]) + 80


def test_second_run_of_the_same_topics_is_served_from_the_cache(stock: FakeStock, tmp_path: Path) -> None:
    """Same topics again (new items, same home): every search and file from the cache, no request sent."""
    home = tmp_path / "home"
    topics = ["How tides work", "Why bread rises"]
    for t in topics:
        run_visuals(stock, tmp_path, f"first-{t}", topic=t, home=home, visual=[f"{t} picture {k}" for k in range(3)])
    sent = len(stock.seen)
    assert sent > 0
    rates = []
    for t in topics:
        doc, meta, _ = run_visuals(stock, tmp_path, f"again-{t}", topic=t, home=home,
                                   visual=[f"{t} picture {k}" for k in range(3)])
        rates.append(meta["media_cache_hit_rate"])
        assert all(s["fallback"] is None for s in doc["scenes"])
    assert len(stock.seen) == sent and rates == [1.0, 1.0]


def test_entries_older_than_the_ttl_are_fetched_again(stock: FakeStock, tmp_path: Path) -> None:
    """A cached answer past media_cache_ttl_h is a miss: the provider is asked again."""
    home = tmp_path / "home"
    run_visuals(stock, tmp_path, "one", home=home)
    root = home / "cache" / "media"
    old = time.time() - 25 * 3600
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (old, old))
    before = len(stock.api_calls())
    _, meta, _ = run_visuals(stock, tmp_path, "two", home=home)
    assert len(stock.api_calls()) > before and meta["media_cache_hit_rate"] == 0.0
    cache = MediaCache(home, ttl_h=24, now=lambda: time.time() + 23 * 3600)
    assert cache.read(next((root / "search").rglob("*.json"))) is not None  # 23 h later: still fresh


def test_the_size_cap_removes_the_oldest_files_first(tmp_path: Path) -> None:
    """Over the cap, the oldest files go until it fits; the newest stay; past the TTL goes whatever the size."""
    clock = [2000.0]
    cache = MediaCache(tmp_path, cap_mb=0.25, now=lambda: clock[0])
    paths = []
    for k in range(6):
        p = cache.write(cache.file_path("pexels", f"u{k}", ".jpg"), b"x" * 60_000)
        os.utime(p, (1000 + k, 1000 + k))
        paths.append(p)
    assert cache.trim() == 2
    assert [p.exists() for p in paths] == [False, False, True, True, True, True]
    assert cache.size_bytes() <= 0.25 * 1024 * 1024
    clock[0] = 1005 + 24 * 3600.0  # now the three oldest left are past 24 h
    assert cache.trim() == 3 and [p.exists() for p in paths] == [False] * 5 + [True]


@pytest.mark.parametrize(("mode", "where"), [("500", "api"), ("429", "api"), ("hang", "api"), ("cut", "api"),
                                             ("cut", "files"), ("hang", "files")])
def test_a_provider_down_falls_back_to_the_local_folder_then_generated(stock: FakeStock, tmp_path: Path,
                                                                        mode: str, where: str) -> None:
    """5xx, 429 with a long Retry-After, a hang or a cut connection (search or files): bounded, fallback, flagged."""
    local = tmp_path / "local"
    local.mkdir()
    (local / "one.png").write_bytes(picture("local", "PNG"))
    stock.fail(mode, where=where, retry_after="120")
    t0 = time.monotonic()
    doc, meta, ctx = run_visuals(stock, tmp_path, f"down-{mode}", options={"background_dir": str(local)})
    assert time.monotonic() - t0 < 10
    assert doc["errors"] and doc["errors"][0].startswith("provider openverse")
    assert all(s["provider"] == "local" and s["kind"] == "image" and s["fallback"] for s in doc["scenes"])
    with Image.open(ctx.workdir / doc["scenes"][0]["path"]) as im:
        assert im.size == SIZE
    assert meta["media_fallbacks"] == 4 and meta["flags"] == ["media-fallback"] and meta["media_fallback"]
    # Failures mark it down: beyond the first parallel wave, no request per scene per retry.
    assert len(stock.api_calls()) <= 5 * 2 and len(stock.file_calls()) <= 4 * 2
    doc, _, _ = run_visuals(stock, tmp_path, f"down-none-{mode}")  # no local folder: a generated frame
    assert {(s["kind"], s["path"]) for s in doc["scenes"]} == {("generated", None)}


def test_a_short_retry_after_is_waited_out(stock: FakeStock, tmp_path: Path) -> None:
    """One 429 with Retry-After: 1 → the client waits about a second and the scenes get their pictures."""
    stock.fail("429", times=1, retry_after="1")
    t0 = time.monotonic()
    doc, meta, _ = run_visuals(stock, tmp_path, "retry", visual=["ocean"])
    assert time.monotonic() - t0 >= 0.9
    assert doc["errors"] == [] and doc["scenes"][0]["provider"] == "openverse" and meta["media_fallbacks"] == 0


def test_no_asset_twice_while_alternatives_exist(stock: FakeStock, tmp_path: Path) -> None:
    """Six scenes on one query: six different assets when the answer has them; repeats only past that, noted."""
    stock.per_query = 8
    doc, _, _ = run_visuals(stock, tmp_path, "many", visual=["volcano"] * 6)
    assert len({s["url"] for s in doc["scenes"]}) == 6
    stock.per_query = 2
    doc, _, _ = run_visuals(stock, tmp_path, "few", topic="Lava", visual=["lava flow"] * 3)
    urls = [s["url"] for s in doc["scenes"]]
    # The topic query ("lava") adds two more results: four in all for three scenes, so still no repeat.
    assert len(set(urls)) == 3
    doc, _, _ = run_visuals(stock, tmp_path, "fewer", topic="Lava", visual=["lava"] * 3)
    urls = [s["url"] for s in doc["scenes"]]
    assert len(set(urls)) == 2 and doc["scenes"][2]["note"].startswith("no other result")


@pytest.mark.parametrize(("provider", "kind"), [("pexels", "video"), ("pixabay", "video"), ("pexels", "any")])
def test_footage_scenes_keep_the_clip_and_get_a_text_layer(stock: FakeStock, tmp_path: Path, provider: str,
                                                           kind: str) -> None:
    """media_kind=video (or any): MP4 clips with their durations; frames writes the still and an RGBA text layer."""
    doc, _, ctx = run_visuals(stock, tmp_path, "clips", provider=provider, visual=VISUALS[:2],
                              options={"media_kind": kind})
    for s in doc["scenes"]:
        assert s["kind"] == "video" and s["path"].endswith(".mp4") and s["duration"] > 0.5
        assert (ctx.workdir / s["path"]).stat().st_size > 1000 and s["provider"] == provider
        assert s["licence"] in ("Pexels License", "Pixabay Content License") and s["fallback"] is None
    frames.run({"source": "x"}, ctx)
    with Image.open(ctx.workdir / "frames" / "scene-01.text.png") as im:
        assert im.mode == "RGBA" and im.size == SIZE
        alpha = im.getchannel("A")
        assert alpha.getextrema() == (0, 255) and alpha.getpixel((1, 1)) == 0
    with Image.open(ctx.workdir / "frames" / "scene-01.png") as im:
        assert im.size == SIZE


def test_keys_stay_secret_and_a_missing_key_falls_back(stock: FakeStock, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys reach only the provider: not visuals.json, the meta or the cache; no key → fallback, said why."""
    home = tmp_path / "home"
    for provider in ("pexels", "pixabay"):
        doc, meta, ctx = run_visuals(stock, tmp_path, f"k-{provider}", provider=provider, home=home)
        assert doc["errors"] == [] and all(s["provider"] == provider for s in doc["scenes"])
        text = (ctx.workdir / "visuals.json").read_text() + json.dumps(meta)
        assert PEXELS_KEY not in text and PIXABAY_KEY not in text
    for p in (home / "cache").rglob("*"):
        if p.is_file() and p.suffix == ".json":
            assert PEXELS_KEY.encode() not in p.read_bytes() and PIXABAY_KEY.encode() not in p.read_bytes()
    monkeypatch.delenv("PIXABAY_API_KEY")
    doc, meta, _ = run_visuals(stock, tmp_path, "nokey", provider="pixabay", home=tmp_path / "other")
    assert "PIXABAY_API_KEY" in doc["errors"][0] and meta["flags"] == ["media-fallback"]
    monkeypatch.setenv("PIXABAY_API_KEY", "wrong-key-000")
    doc, _, _ = run_visuals(stock, tmp_path, "badkey", provider="pixabay", home=tmp_path / "third")
    assert doc["errors"] == ["provider pixabay: HTTP 400"] and "wrong-key" not in json.dumps(doc)


def test_none_writes_nothing_and_a_rerun_reuses(stock: FakeStock, tmp_path: Path) -> None:
    """media_provider=none: no visuals.json (today's frames); a finished visuals stage is reused as is."""
    item, ctx = make_item(tmp_path, "none")
    assert visuals.run(item, ctx).meta == {"visuals": "none"} and not (ctx.workdir / "visuals.json").exists()
    _, _, ctx = run_visuals(stock, tmp_path, "again")
    sent = len(stock.seen)
    res = visuals.run({"source": "How tides work", "meta": {}}, ctx)
    assert res.meta["media_reused"] and not res.measured and len(stock.seen) == sent


def test_the_recipe_renders_a_video_over_stock_pictures(stock: FakeStock, tmp_path: Path) -> None:
    """The whole recipe with openverse on loopback: visuals beside narration, frames over the pictures, a video."""
    from pipeline.engine.core import Engine
    from tests.conftest import fast_settings

    home = tmp_path / "home"
    options = {"length_s": 10, "script_engine": "offline", "tts": "espeak", "size": "270x480", "pace": "fast",
               "media_provider": "openverse", "openverse_base_url": stock.base_url}
    with Engine(home, settings=fast_settings()) as engine:
        bid = engine.submit("stock", ["How tides work"], recipe="generate", options=options)
        engine.wait(bid, timeout=180)
        item = engine.items(bid)[0]
    assert item["status"] == "done", item.get("error")
    wd = Path(item["workdir"])
    doc = json.loads((wd / "visuals.json").read_text())
    assert doc["scenes"] and all(s["provider"] == "openverse" for s in doc["scenes"])
    assert (wd / "video.mp4").stat().st_size > 10_000 and item["meta"]["visuals"] == "openverse"
    assert item["timings"]["visuals"] > 0 and item["meta"]["media_from_provider"] == len(doc["scenes"])

"""visuals: a stock picture or clip per scene (``media/scene-NNN.*`` + ``visuals.json``), beside the narration.

One query per scene from the script's visual description (its keywords), the topic as the
fallback query; searches and downloads run in a bounded pool (``media_workers``) and go
through :class:`~pipeline.recipes.generate.media_cache.MediaCache`, so a second video on the
same topic sends no request. Pictures are cover-cropped to the frame size once (cached);
clips are kept as downloaded (render scales, crops and trims them). No asset is used twice
in one video while the answers hold another. Each scene records its source, author and
licence (the description's attribution is written from them by the metadata stage).

Fallback chain per scene: provider → the batch's ``background_dir`` → a generated frame
(the theme gradient). A provider that answers 429, 5xx, times out or cuts the connection is
given bounded retries (:data:`POLICY`), then marked down for this video; its scenes fall back,
the reason lands in visuals.json's ``errors``, the scene's ``fallback`` and the item's meta
(``media_fallback``, flag ``media-fallback``). The video is never failed for it.

``media_provider = none`` (the default) writes nothing: every reader works without visuals.json.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pipeline import errors
from pipeline.common.ffmpeg import probe
from pipeline.config.secrets import media_api_key
from pipeline.engine.stage import Stage, StageContext, StageResult, register
from pipeline.recipes.generate.media import (
    MAX_VIDEO_BYTES,
    Asset,
    Provider,
    ProviderDown,
    Retry,
    http_get,
    make_provider,
    parse_answer,
)
from pipeline.recipes.generate.media_cache import MediaCache
from pipeline.recipes.generate.options import GenerateOptions, options_of
from pipeline.recipes.generate.stages.frames import list_backgrounds, plan_scenes
from pipeline.recipes.generate.video import PLAN, plan_size, read_json
from state.storage import atomic_write_bytes

log = logging.getLogger("tubemill.visuals")

VISUALS = "visuals.json"
MEDIA_DIR = "media"
POLICY = Retry()  # bounded waits per request; tests shorten them
PER_PAGE = 15
MAX_QUERY_WORDS = 6
MAX_DOWNLOAD_FAILURES = 3  # then the provider's file host counts as down for this video
MAX_ALTERNATIVES = 2  # other results tried for a scene whose download failed
_STOP_WORDS = ("a an the of and or to in on at for with by from is are be it its this that these those as into over "
           "under about show shows showing shot close up closeup image picture photo video footage scene of our your "
           "their we you they he she his her them then there here very more most some any what why how when where "
           "which who while")
STOP = frozenset(_STOP_WORDS.split())


def scene_query(scene: dict[str, Any], topic: str) -> tuple[str, str]:
    """(query, "visual" | "topic"): the visual description's keywords, else the topic's."""
    for text, source in ((str(scene.get("visual") or ""), "visual"), (topic, "topic")):
        words = [w for w in re.findall(r"[^\W\d_][\w'-]*", text.lower()) if w not in STOP and len(w) > 1]
        if words:
            return " ".join(list(dict.fromkeys(words))[:MAX_QUERY_WORDS]), source
    return topic.strip()[:100] or "nature", "topic"


def search_kinds(provider: Provider, media_kind: str) -> tuple[str, ...]:
    wanted = {"photo": ("image",), "video": ("video",), "any": ("video", "image")}[media_kind]
    return tuple(k for k in wanted if k in provider.kinds) or ("image",)


class Fetcher:
    """One video's searches and downloads against one provider, sharing the cache and a "down" switch."""

    def __init__(self, provider: Provider, cache: MediaCache, portrait: bool) -> None:
        self.provider, self.cache, self.portrait = provider, cache, portrait
        self.down: str | None = None  # the first failure: later requests are not sent (the provider is down)
        self.errors: list[str] = []
        self.download_failures = 0
        self._lock = threading.Lock()

    def _fail(self, exc: ProviderDown) -> None:
        with self._lock:
            self.errors.append(str(exc))
            self.down = self.down or str(exc)

    def _download_failed(self, exc: ProviderDown) -> None:
        """One file may be gone (another result replaces it); a run of them means the file host is down."""
        with self._lock:
            self.errors.append(str(exc))
            self.download_failures += 1
            if self.download_failures >= MAX_DOWNLOAD_FAILURES:
                self.down = self.down or str(exc)

    def search(self, query: str, kind: str) -> list[Asset]:
        path = self.cache.search_path(self.provider.name, kind, query)
        body = self.cache.read(path)
        if body is not None:
            try:
                return parse_answer(self.provider, body, kind)
            except ProviderDown:
                path.unlink(missing_ok=True)  # a damaged entry: asked again
        if self.down:
            return []
        try:
            body = self.provider.search_raw(query, kind, self.portrait, PER_PAGE)
            assets = parse_answer(self.provider, body, kind)
        except ProviderDown as exc:
            self._fail(exc)
            return []
        try:
            self.cache.write(path, body)
        except OSError as exc:  # an unwritable cache costs the next run a request, not this video
            log.warning("media cache: cannot keep a search answer: %s", exc)
        return assets

    def download(self, asset: Asset) -> Path:
        """The asset's file in the cache (fetched when missing or stale), checked to be a picture or a clip."""
        ext = Path(asset.download_url.split("?")[0]).suffix.lower()
        if not re.fullmatch(r"\.[a-z0-9]{2,5}", ext):
            ext = ".mp4" if asset.kind == "video" else ".jpg"
        path = self.cache.file_path(self.provider.name, asset.download_url, ext)
        if self.cache.read(path) is None:
            if self.down:
                raise ProviderDown(self.down)
            limit = MAX_VIDEO_BYTES if asset.kind == "video" else 40 * 1024 * 1024
            try:
                data = http_get(asset.download_url, None, self.provider.policy,
                                what=f"provider {self.provider.name} download", limit=limit)
            except ProviderDown as exc:
                self._download_failed(exc)
                raise
            try:
                self.cache.write(path, data)
            except OSError as exc:
                raise ProviderDown(f"cannot keep the download in the media cache: {exc}") from exc
        try:
            check_file(path, asset.kind)
        except ProviderDown as exc:
            path.unlink(missing_ok=True)
            self._download_failed(exc)
            raise
        return path


def check_file(path: Path, kind: str) -> float | None:
    """A real picture (Pillow verifies it) or clip (ffprobe finds a video stream); the clip's duration."""
    if kind == "video":
        try:
            info = probe(path)
        except errors.TubemillError as exc:
            raise ProviderDown(f"download is not a readable video: {str(exc)[:120]}") from exc
        video = info.of("video")
        if not video:
            raise ProviderDown("download has no video stream")
        return info.duration or video[0].duration
    try:
        with Image.open(path) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ProviderDown(f"download is not a readable picture ({type(exc).__name__})") from exc
    return None


def _install(src: Path, dst: Path) -> None:
    """A cached file into the item folder (a copy: the cache may trim it; the workdir must stay whole)."""
    part = dst.with_name(dst.name + ".part")
    shutil.copyfile(src, part)
    part.replace(dst)


def _place(fetcher: Fetcher, asset: Asset, index: int, ctx: StageContext, size: tuple[int, int]) -> dict[str, Any]:
    """Download ``asset`` and put it at ``media/scene-NNN.*``; the scene's visuals.json entry."""
    src = fetcher.download(asset)
    rec = asset.record()
    if asset.kind == "video":
        duration = check_file(src, "video")
        rel = f"{MEDIA_DIR}/scene-{index:03d}{src.suffix}"
        _install(src, ctx.path(rel))
        rec["duration"] = round(float(duration or asset.duration or 0.0), 3) or asset.duration
    else:
        try:
            fitted = fetcher.cache.fitted(src, size)
        except errors.InvalidInput as exc:
            raise ProviderDown(str(exc)) from exc
        rel = f"{MEDIA_DIR}/scene-{index:03d}.jpg"
        _install(fitted, ctx.path(rel))
        rec.update(width=size[0], height=size[1])
    rec.update(index=index, path=rel, fallback=None)
    return rec


def _fallback(index: int, reason: str, query: str, pictures: list[Path], cache: MediaCache, ctx: StageContext,
              size: tuple[int, int]) -> dict[str, Any]:
    """The local folder's picture for this scene, else a generated frame (path null)."""
    base = {"index": index, "query": query, "url": "", "title": "", "author": "", "author_url": "", "licence": "",
            "licence_url": "", "attribution_required": False, "provider": "local", "fallback": reason}
    if pictures:
        pic = pictures[(index - 1) % len(pictures)]
        try:
            fitted = cache.fitted(pic, size)
            rel = f"{MEDIA_DIR}/scene-{index:03d}.jpg"
            _install(fitted, ctx.path(rel))
            return {**base, "kind": "image", "path": rel, "url": pic.name, "width": size[0], "height": size[1]}
        except (errors.InvalidInput, OSError) as exc:
            base["fallback"] = f"{reason}; local picture {pic.name} unreadable: {exc}"[:300]
    return {**base, "kind": "generated", "path": None, "width": size[0], "height": size[1]}


def _reuse(ctx: StageContext) -> dict[str, Any] | None:
    """An earlier run's visuals.json whose files are all still there (stages are idempotent)."""
    try:
        doc = json.loads(ctx.path(VISUALS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    scenes = doc.get("scenes") if isinstance(doc, dict) else None
    if not isinstance(scenes, list) or not all(not s.get("path") or ctx.path(s["path"]).exists() for s in scenes):
        return None
    return doc


def _meta(doc: dict[str, Any], item: dict[str, Any], cache: MediaCache | None, reused: bool) -> dict[str, Any]:
    scenes = doc["scenes"]
    fallbacks = [s for s in scenes if s.get("fallback")]
    meta: dict[str, Any] = {"visuals": doc["provider"], "media_scenes": len(scenes),
                            "media_from_provider": len(scenes) - len(fallbacks), "media_fallbacks": len(fallbacks)}
    if cache is not None:
        meta.update(media_cache_hits=cache.hits, media_cache_misses=cache.misses,
                    media_cache_hit_rate=cache.hit_rate)
    flags = [f for f in item.get("flags") or [] if f != "media-fallback"]
    if fallbacks:
        meta["media_fallback"] = str(doc["errors"][0] if doc.get("errors") else fallbacks[0]["fallback"])[:300]
        flags.append("media-fallback")
    if fallbacks or "media-fallback" in (item.get("flags") or []):
        meta["flags"] = sorted(set(flags))
    if reused:
        meta["media_reused"] = True
    return meta


def collect(opts: GenerateOptions, ctx: StageContext, topic: str, scenes: list[dict[str, Any]],
            size: tuple[int, int], cache: MediaCache) -> dict[str, Any]:
    """Search, choose (no asset twice while another exists), download and place one asset per scene."""
    name = opts.media_provider
    pictures = list_backgrounds(opts.background_dir)
    queries = [scene_query(s, topic) for s in scenes]
    topic_q = scene_query({}, topic)[0]
    base_url = getattr(opts, f"{name}_base_url")
    try:
        provider = make_provider(name, base_url, media_api_key(ctx.home, name), POLICY)
    except ProviderDown as exc:
        out = [_fallback(s["index"], str(exc), q, pictures, cache, ctx, size) for s, (q, _) in
               zip(scenes, queries, strict=True)]
        return {"provider": name, "query_source": queries[0][1], "scenes": out, "errors": [str(exc)]}
    fetcher = Fetcher(provider, cache, portrait=size[1] > size[0])
    kinds = search_kinds(provider, opts.media_kind)
    wanted = list(dict.fromkeys([q for q, _ in queries] + [topic_q]))
    workers = max(1, int(opts.media_workers or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="media") as pool:
        asks = [(q, k) for q in wanted for k in kinds]
        found = dict(zip(asks, pool.map(lambda qk: fetcher.search(*qk), asks), strict=True))
        used: set[tuple[str, str]] = set()
        picks: list[tuple[Asset | None, list[Asset], str | None]] = []
        for q, _ in queries:
            cands = [a for k in kinds for a in found.get((q, k), [])] + \
                    [a for k in kinds for a in found.get((topic_q, k), []) if q != topic_q]
            fresh = [a for a in cands if (a.kind, a.id) not in used]
            pick = fresh[0] if fresh else (cands[len(picks) % len(cands)] if cands else None)
            if pick is not None:
                used.add((pick.kind, pick.id))
            picks.append((pick, cands, None if fresh or not cands else "no other result: asset repeated"))

        def place(k: int) -> dict[str, Any] | str:
            pick = picks[k][0]
            if ctx.cancelled():
                raise errors.Cancelled("visuals cancelled")
            if pick is None:
                return fetcher.down or f"no results for {queries[k][0]!r}"
            try:
                return _place(fetcher, pick, int(scenes[k]["index"]), ctx, size)
            except ProviderDown as exc:
                return str(exc)

        placed = list(pool.map(place, range(len(scenes))))
    out: list[dict[str, Any]] = []
    for k, (scene, rec) in enumerate(zip(scenes, placed, strict=True)):
        index, (q, source) = int(scene["index"]), queries[k]
        if isinstance(rec, str) and not fetcher.down:  # one failed download: another unused result
            spare = [a for a in picks[k][1] if (a.kind, a.id) not in used][:MAX_ALTERNATIVES]
            for alt in spare:
                if fetcher.down:
                    break
                used.add((alt.kind, alt.id))
                try:
                    rec = _place(fetcher, alt, index, ctx, size)
                    break
                except ProviderDown as exc:
                    rec = str(exc)
        if isinstance(rec, str):
            rec = _fallback(index, rec, q, pictures, cache, ctx, size)
        else:
            rec.update(query=q, query_source=source)
            if picks[k][2]:
                rec["note"] = picks[k][2]
        out.append(rec)
        ctx.progress((k + 1) / len(scenes))
    sources = {source for _, source in queries}
    return {"provider": name, "query_source": "visual" if "visual" in sources else "topic", "scenes": out,
            "errors": list(dict.fromkeys(fetcher.errors))}


def run(item: dict[str, Any], ctx: StageContext) -> StageResult:
    opts = options_of(ctx).for_item(item)
    if opts.media_provider == "none":
        return StageResult(meta={"visuals": "none"}, measured=False)
    doc = _reuse(ctx)
    if doc is not None:
        return StageResult(artifacts={"visuals": str(ctx.path(VISUALS))}, meta=_meta(doc, item, None, True),
                           measured=False)
    plan = read_json(ctx.path(PLAN), "plan")
    size = plan_size(plan)
    scenes = plan_scenes(plan)
    cache = MediaCache(ctx.home, opts.media_cache_ttl_h, opts.media_cache_mb)
    ctx.path(MEDIA_DIR).mkdir(parents=True, exist_ok=True)
    doc = collect(opts, ctx, str(item.get("source") or plan.get("title") or ""), scenes, size, cache)
    atomic_write_bytes(ctx.path(VISUALS), json.dumps(doc, ensure_ascii=False, indent=1).encode())
    try:
        cache.trim(keep=set())
    except OSError as exc:  # a cache we cannot trim costs disk, not the video
        log.warning("media cache trim failed: %s", exc)
    return StageResult(artifacts={"visuals": str(ctx.path(VISUALS))}, meta=_meta(doc, item, cache, False))


register(Stage("visuals", run, resource="net",
               doc="plan.json → media/scene-NNN.* + visuals.json (stock pictures/footage, cached; falls back)"))

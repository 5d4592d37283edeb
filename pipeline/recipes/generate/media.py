"""Stock pictures and footage: the Openverse, Pexels and Pixabay search APIs, and the downloads they point at.

Each provider is a small client that turns a query into :class:`Asset` records (what to
download, and the source, author and licence the video must credit), reading the real
answers' field names:

- Pexels ``GET /v1/search`` (photos: ``photos[].src.large2x``, ``photographer``,
  ``photographer_url``, ``url``) and ``GET /videos/search`` (``videos[].video_files[]`` with
  ``link``/``width``/``height``/``file_type``, ``user.name``/``user.url``, ``duration``), the key
  in the ``Authorization`` header; the Pexels License asks for no attribution.
- Pixabay ``GET /api/`` (``hits[].largeImageURL``, ``pageURL``, ``user``, ``user_id``) and
  ``GET /api/videos/`` (``hits[].videos.{large,medium,small,tiny}.url``, ``duration``), the key as
  the ``key`` parameter; the Pixabay Content License asks for none either.
- Openverse ``GET /v1/images/?q=`` without a key (``results[].url``, ``foreign_landing_url``,
  ``creator``, ``creator_url``, ``license``, ``license_version``, ``license_url``): Creative
  Commons pictures, most of which must be credited. Openverse has no footage.

Failures are one exception, :class:`ProviderDown`, whose message never holds the key or a URL
with it (Pixabay's key rides in the query string): the visuals stage records the message in
visuals.json and the item's meta, so it must be safe to show. A 429 waits out ``Retry-After``
when that is short (bounded), a 5xx, a timeout or a cut connection is tried once more after
a short back-off; then the provider is down for this video and the scene falls back.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("tubemill.media")

DEFAULT_BASE_URLS = {"openverse": "https://api.openverse.org", "pexels": "https://api.pexels.com",
                     "pixabay": "https://pixabay.com"}
KEY_NAMES = {"pexels": "pexels_api_key", "pixabay": "pixabay_api_key"}  # secrets; openverse needs none
USER_AGENT = "Tubemill/1 (stock media for generated videos)"
MAX_IMAGE_BYTES = 40 * 1024 * 1024
MAX_VIDEO_BYTES = 200 * 1024 * 1024

CC_NAMES = {"by": "CC BY", "by-sa": "CC BY-SA", "by-nd": "CC BY-ND", "by-nc": "CC BY-NC", "by-nc-sa": "CC BY-NC-SA",
            "by-nc-nd": "CC BY-NC-ND", "cc0": "CC0", "pdm": "Public Domain Mark", "sampling+": "CC Sampling+",
            "nc-sampling+": "CC NC-Sampling+"}
NO_CREDIT = ("cc0", "pdm")


class ProviderDown(Exception):
    """The provider did not answer usefully (HTTP status, timeout, cut connection, bad JSON); safe to show."""


@dataclass(frozen=True)
class Asset:
    """One search result: the file to fetch and what crediting it takes."""

    provider: str
    kind: str  # "image" or "video"
    id: str
    download_url: str
    url: str  # the asset's page on the provider's site
    title: str = ""  # for the credit line (Openverse's title, Pexels' alt text)
    author: str = ""
    author_url: str = ""
    licence: str = ""
    licence_url: str = ""
    attribution_required: bool = False
    width: int = 0
    height: int = 0
    duration: float | None = None

    def record(self) -> dict[str, Any]:
        """The fields visuals.json keeps (no download URL: it may carry a signed token)."""
        out = asdict(self)
        out.pop("download_url")
        out.pop("id")
        if self.kind != "video":
            out.pop("duration")
        return out


@dataclass(frozen=True)
class Retry:
    """How long a provider may hold up one video: bounded waits, then fall back."""

    attempts: int = 2  # tries per request
    backoff_s: float = 0.5  # before the second try of a 5xx, timeout or cut connection
    max_retry_after_s: float = 5.0  # a longer Retry-After is not waited for: the scene falls back now
    timeout_s: float = 10.0


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: treated as "too long to wait"


def http_get(url: str, headers: dict[str, str] | None = None, policy: Retry = Retry(), *, what: str,
             limit: int = MAX_IMAGE_BYTES, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """The body of ``url``; raises :class:`ProviderDown` naming ``what`` (never the URL) when it fails."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    reason = "no answer"
    for attempt in range(1, policy.attempts + 1):
        wait = policy.backoff_s * attempt
        try:
            with urllib.request.urlopen(req, timeout=policy.timeout_s) as resp:  # noqa: S310 - http(s) only
                data = resp.read(limit + 1)
                length = resp.headers.get("Content-Length")
            if len(data) > limit:
                raise ProviderDown(f"{what}: larger than {limit // (1024 * 1024)} MB")
            if length and length.isdigit() and int(length) != len(data):
                raise http.client.IncompleteRead(data, int(length) - len(data))
            return data
        except urllib.error.HTTPError as exc:
            status = exc.code
            reason = f"{what}: HTTP {status}"
            if status == 429:
                after = _retry_after(exc.headers.get("Retry-After"))
                reason += f" (Retry-After {exc.headers.get('Retry-After')})" if exc.headers.get("Retry-After") else ""
                if after is None or after > policy.max_retry_after_s:
                    break
                wait = after
            elif status < 500:
                break  # 400/401/403/404: asking again gives the same answer
        except TimeoutError:
            reason = f"{what}: timed out after {policy.timeout_s:g} s"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as exc:
            inner = getattr(exc, "reason", exc)
            if isinstance(inner, TimeoutError):
                reason = f"{what}: timed out after {policy.timeout_s:g} s"
            else:
                reason = f"{what}: connection failed ({type(inner).__name__})"
        if attempt < policy.attempts:
            log.info("%s; trying again in %.1f s", reason, wait)
            sleep(wait)
    raise ProviderDown(reason)


def _query(base: str, path: str, params: dict[str, Any]) -> str:
    return f"{base.rstrip('/')}{path}?{urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})}"


def _json(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ProviderDown(f"{what}: the answer is not JSON") from exc
    if not isinstance(data, dict):
        raise ProviderDown(f"{what}: the answer is not a JSON object")
    return data


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


class Provider:
    """One stock API: the search request for a query, and the answer's parsing into assets."""

    name = ""
    kinds: tuple[str, ...] = ("image",)

    def __init__(self, base_url: str | None = None, key: str | None = None, policy: Retry = Retry()) -> None:
        self.base = (base_url or DEFAULT_BASE_URLS[self.name]).rstrip("/")
        self._key = key
        self.policy = policy

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base!r})"

    def request(self, query: str, kind: str, portrait: bool, per_page: int) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def parse(self, data: dict[str, Any], kind: str) -> list[Asset]:
        raise NotImplementedError

    def search_raw(self, query: str, kind: str, portrait: bool, per_page: int = 15) -> bytes:
        """The API's answer body for ``query`` (what the cache keeps)."""
        url, headers = self.request(query, kind, portrait, per_page)
        return http_get(url, headers, self.policy, what=f"provider {self.name}")


class Pexels(Provider):
    name = "pexels"
    kinds = ("image", "video")

    def request(self, query: str, kind: str, portrait: bool, per_page: int) -> tuple[str, dict[str, str]]:
        path = "/videos/search" if kind == "video" else "/v1/search"
        url = _query(self.base, path, {"query": query, "per_page": min(80, per_page),
                                       "orientation": "portrait" if portrait else "landscape"})
        return url, {"Authorization": self._key or ""}

    def parse(self, data: dict[str, Any], kind: str) -> list[Asset]:
        common = {"provider": self.name, "licence": "Pexels License", "licence_url": "https://www.pexels.com/license/",
                  "attribution_required": False}
        out = []
        if kind == "video":
            for v in data.get("videos") or []:
                files = [f for f in v.get("video_files") or [] if f.get("link") and
                         str(f.get("file_type") or "video/mp4") == "video/mp4"]
                if not files:
                    continue
                # The smallest file that still covers the frame: HD, not 4K, for a 1080-wide short.
                files.sort(key=lambda f: (_int(f.get("width")) * _int(f.get("height"))) or 1 << 40)
                pick = next((f for f in files if min(_int(f.get("width")), _int(f.get("height"))) >= 1080),
                            files[-1])
                user = v.get("user") or {}
                out.append(Asset(kind="video", id=str(v.get("id")), download_url=pick["link"], url=v.get("url") or "",
                                 author=user.get("name") or "", author_url=user.get("url") or "",
                                 width=_int(pick.get("width")), height=_int(pick.get("height")),
                                 duration=float(v.get("duration") or 0) or None, **common))
        else:
            for p in data.get("photos") or []:
                src = p.get("src") or {}
                link = src.get("large2x") or src.get("original") or src.get("large")
                if link:
                    out.append(Asset(kind="image", id=str(p.get("id")), download_url=link, url=p.get("url") or "",
                                     title=str(p.get("alt") or "")[:200], author=p.get("photographer") or "",
                                     author_url=p.get("photographer_url") or "",
                                     width=_int(p.get("width")), height=_int(p.get("height")), **common))
        return out


class Pixabay(Provider):
    name = "pixabay"
    kinds = ("image", "video")

    def request(self, query: str, kind: str, portrait: bool, per_page: int) -> tuple[str, dict[str, str]]:
        params: dict[str, Any] = {"key": self._key or "", "q": query[:100], "per_page": max(3, min(200, per_page)),
                                  "safesearch": "true"}
        if kind == "video":
            return _query(self.base, "/api/videos/", {**params, "video_type": "film"}), {}
        params.update(image_type="photo", orientation="vertical" if portrait else "horizontal")
        return _query(self.base, "/api/", params), {}

    def parse(self, data: dict[str, Any], kind: str) -> list[Asset]:
        out = []
        for h in data.get("hits") or []:
            user, uid = h.get("user") or "", h.get("user_id")
            common = {"provider": self.name, "id": str(h.get("id")), "url": h.get("pageURL") or "", "author": user,
                      "author_url": f"https://pixabay.com/users/{user}-{uid}/" if user and uid else "",
                      "licence": "Pixabay Content License", "licence_url": "https://pixabay.com/service/license-summary/",
                      "attribution_required": False}
            if kind == "video":
                sizes = h.get("videos") or {}
                pick = next((sizes[k] for k in ("medium", "large", "small", "tiny")
                             if isinstance(sizes.get(k), dict) and sizes[k].get("url")), None)
                if pick:
                    out.append(Asset(kind="video", download_url=pick["url"], width=_int(pick.get("width")),
                                     height=_int(pick.get("height")),
                                     duration=float(h.get("duration") or 0) or None, **common))
            else:
                link = h.get("largeImageURL") or h.get("webformatURL")
                if link:
                    out.append(Asset(kind="image", download_url=link, width=_int(h.get("imageWidth")),
                                     height=_int(h.get("imageHeight")), **common))
        return out


class Openverse(Provider):
    name = "openverse"

    def request(self, query: str, kind: str, portrait: bool, per_page: int) -> tuple[str, dict[str, str]]:
        # Anonymous requests may ask for at most 20 results a page.
        return _query(self.base, "/v1/images/", {"q": query, "page_size": min(20, per_page),
                                                 "aspect_ratio": "tall" if portrait else "wide",
                                                 "license_type": "commercial", "mature": "false"}), {}

    def parse(self, data: dict[str, Any], kind: str) -> list[Asset]:
        out = []
        for r in data.get("results") or []:
            if not r.get("url") or r.get("mature"):
                continue
            code = str(r.get("license") or "").lower()
            version = str(r.get("license_version") or "")
            name = CC_NAMES.get(code, code.upper())
            licence = f"{name} {version}".strip() if version and code != "pdm" else name
            out.append(Asset(provider=self.name, kind="image", id=str(r.get("id")), download_url=r["url"],
                             url=r.get("foreign_landing_url") or "", title=str(r.get("title") or "")[:200],
                             author=r.get("creator") or "",
                             author_url=r.get("creator_url") or "", licence=licence,
                             licence_url=r.get("license_url") or "", attribution_required=code not in NO_CREDIT,
                             width=_int(r.get("width")), height=_int(r.get("height"))))
        return out


PROVIDERS: dict[str, type[Provider]] = {"openverse": Openverse, "pexels": Pexels, "pixabay": Pixabay}


def make_provider(name: str, base_url: str | None, key: str | None, policy: Retry = Retry()) -> Provider:
    """The client for ``name``; raises ProviderDown when it needs a key that is not set."""
    if name in KEY_NAMES and not key:
        env = KEY_NAMES[name].upper()
        raise ProviderDown(f"provider {name}: no API key (set {env} or store the {KEY_NAMES[name]} secret)")
    return PROVIDERS[name](base_url, key, policy)


def parse_answer(provider: Provider, body: bytes, kind: str) -> list[Asset]:
    return provider.parse(_json(body, f"provider {provider.name}"), kind)


def provider_choices(home: Any) -> dict[str, str]:
    """Provider -> the label a form shows: whether its key is set (a choice without one falls back per scene)."""
    from pipeline.config.secrets import MEDIA_KEYS, get_secret

    labels = {"none": "none (drawn frames)", "openverse": "Openverse (no key needed)"}
    for name, secret in MEDIA_KEYS.items():
        labels[name] = name.capitalize() + ("" if get_secret(home, secret) else " (no key set: see Settings)")
    return labels

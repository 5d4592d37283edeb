"""The params of our yt-dlp calls: what a stage's call is given, built in this one place.

- the account: a cookie file or a browser's cookie store, and its proxy — the only place cookie and
  proxy options are built. yt-dlp writes its whole cookie jar back to ``cookiefile`` when it closes, so
  it never gets the user's file: each call gets a fresh 0600 copy (``secrets.cookie_copy``), released
  by :func:`release_options` (or use :func:`call_options`, which always releases it);
- pass-through options for power users (``[ytdlp]`` in settings.toml, ``--ytdlp-option``), minus the
  few the engine owns, for the stages and for the sources listing alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.config.ytdlp_options import ENGINE_OWNED, check_ytdlp_options, parse_browser_spec, redact_url
from pipeline.recipes.transcribe.options import options_of
from pipeline.recipes.transcribe.ytdlp_redact import YtdlpLogger
from pipeline.recipes.transcribe.ytdlp_tools import common_options, ffmpeg_binary

if TYPE_CHECKING:
    from pipeline.engine.stage import StageContext

log = logging.getLogger("tubemill.ytdlp")


# ---------------------------------------------------------------------- accounts: browsers and proxies
def browser_account_name(spec: str) -> str:
    """A readable account name for a browser spec: ``chrome:Profile 1`` → ``chrome-Profile-1``."""
    name, profile, _, container = parse_browser_spec(spec)
    label = "-".join(p for p in (name, profile, container) if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._")[:64] or name


# ---------------------------------------------------------------------- pass-through options
def parse_ytdlp_option(text: str) -> tuple[str, Any]:
    """``--ytdlp-option KEY=VALUE``: VALUE is JSON when it parses (numbers, true, lists, objects), else a string."""
    key, sep, raw = (text or "").partition("=")
    key = key.strip()
    if not sep or not key:
        raise errors.InvalidInput(f"--ytdlp-option expects KEY=VALUE, got {redact_url(text)!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return next(iter(check_ytdlp_options({key: value}).items()))


def passthrough_options(settings_opts: Mapping[str, Any] | None, batch_opts: Mapping[str, Any] | None
                        ) -> dict[str, Any]:
    """``[ytdlp]`` from settings overlaid with the batch's ``--ytdlp-option``s: the batch wins key by key,
    objects merge (``http_headers`` by header, ``extractor_args`` by extractor, then by argument).
    Engine-owned keys that slipped in are dropped with a log line."""
    merged: dict[str, Any] = {}
    for layer in (settings_opts or {}, batch_opts or {}):
        for key, value in layer.items():
            if key in ENGINE_OWNED:
                log.warning("ignoring yt-dlp option %s: %s", key, ENGINE_OWNED[key])
                continue
            old = merged.get(key)
            if isinstance(value, Mapping) and isinstance(old, Mapping):
                if key == "extractor_args":
                    value = {**old, **{ie: {**old.get(ie, {}), **args} for ie, args in value.items()}}
                else:
                    value = {**old, **value}
            merged[key] = value
    return merged


def listing_options(settings_opts: Mapping[str, Any] | None = None, batch_opts: Mapping[str, Any] | None = None,
                    *, proxy: str | None = None) -> dict[str, Any]:
    """Extra options for the sources listing (``sources.expand(..., ydl_opts=…)``): the same pass-through
    and batch proxy the stages use, so a listing goes out the way the downloads will."""
    opts = passthrough_options(settings_opts, batch_opts)
    if proxy:
        opts["proxy"] = proxy
    return opts


# ---------------------------------------------------------------------- one stage's call
def ydl_base_options(ctx: StageContext) -> dict[str, Any]:
    """Options every yt-dlp call of a stage shares: quiet, bounded timeouts, our retries not theirs,
    the JS runtime, the pass-through options, and the account's cookies and proxy."""
    opts: dict[str, Any] = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "socket_timeout": options_of(ctx).socket_timeout,
        "retries": 1,  # the engine retries with backoff; yt-dlp's own loop would hold a worker
        "fragment_retries": 3,
        "extractor_retries": 0,
        "continuedl": True,
        "cachedir": False,
        "logger": YtdlpLogger(),
        **common_options(),
    }
    ffmpeg = ffmpeg_binary()
    if ffmpeg:
        opts["ffmpeg_location"] = ffmpeg
    opts.update(passthrough_options(getattr(ctx, "ytdlp", None), options_of(ctx).ytdlp_options))
    opts.update(account_options(ctx))
    return opts


def account_options(ctx: StageContext) -> dict[str, Any]:
    """The account's identity for yt-dlp: a fresh private copy of its cookie file (the user's file, or the
    one saved on the Settings page, is never handed to yt-dlp, which would rewrite it), or its browser's
    cookie store, and its proxy (else the batch's ``--proxy``).

    The copy is the caller's to release (:func:`release_options`, or use :func:`call_options`). A missing,
    unreadable or unusable cookie file is :class:`~pipeline.errors.AuthFailed` for the account.
    """
    from pipeline.config import secrets

    opts: dict[str, Any] = {}
    cookies = ctx.cookiefile or options_of(ctx).cookies
    browser = getattr(ctx, "browser", None)
    if cookies:
        try:
            copy = secrets.cookie_copy(ctx.home, ctx.account, cookies, keep_refreshed=keep_refreshed_cookies(ctx))
        except errors.InvalidInput as exc:
            who = f"account {ctx.account}" if ctx.account else "--cookies"
            raise errors.AuthFailed(f"{who}: {exc}", account=ctx.account) from None
        opts["cookiefile"] = str(copy)
    elif browser:
        opts["cookiesfrombrowser"] = parse_browser_spec(browser)
    proxy = getattr(ctx, "proxy", None) or options_of(ctx).proxy
    if proxy:
        opts["proxy"] = proxy
    return opts


def keep_refreshed_cookies(ctx: StageContext) -> bool:
    """``keep_refreshed_cookies`` (batch option): keep cookies yt-dlp refreshed in Tubemill's own copy,
    for the domains the user's file already has. Off by default: the user's file stays the only truth."""
    return options_of(ctx).keep_refreshed_cookies


def release_options(ctx: StageContext, opts: Mapping[str, Any]) -> None:
    """Undo what :func:`account_options` made for one call: keep refreshed cookies if asked, delete the copy."""
    copy = opts.get("cookiefile")
    if not copy:
        return
    from pipeline.config import secrets

    secrets.release_cookie_copy(ctx.home, ctx.account, copy, ctx.cookiefile or options_of(ctx).cookies,
                                keep_refreshed=keep_refreshed_cookies(ctx))


@contextlib.contextmanager
def call_options(ctx: StageContext) -> Iterator[dict[str, Any]]:
    """:func:`ydl_base_options` for one yt-dlp call, with the cookie copy released afterwards, whatever happens."""
    opts = ydl_base_options(ctx)
    try:
        yield opts
    finally:
        release_options(ctx, opts)

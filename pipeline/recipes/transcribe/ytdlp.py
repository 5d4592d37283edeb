"""What every yt-dlp call of ours shares: options, a quiet logger, and the error classifier.

Every yt-dlp call (listing in ``sources``, captions, download) takes its options from
here, so the things that make real YouTube work are decided in one place:

- the JavaScript runtime: since 2025.11 yt-dlp solves YouTube's JS challenges with the
  EJS scripts (``yt-dlp-ejs``) in an external runtime; without one YouTube gives
  "Requested format is not available" or storyboards only. We ship Deno as a PyPI
  package and pass its path explicitly (``js_runtimes``), so it is found with no
  activated venv: in the app, the CLI and Dask worker processes alike;
- the account: a cookie file or a browser's cookie store, and its proxy — the only
  place cookie and proxy options are built. yt-dlp writes its whole cookie jar back to
  ``cookiefile`` when it closes, so it never gets the user's file: each call gets a fresh
  0600 copy (``secrets.cookie_copy``), released by :func:`release_options`;
- the limits of one call (byte cap, stall rule, page size, private redirects), which
  :mod:`pipeline.recipes.transcribe.ytdlp_run` enforces around a yt-dlp child process;
- the redactor every yt-dlp log line passes through (cookie values, ``Authorization``,
  ``key=``/``token=``/``sig=`` query values, proxy passwords);
- pass-through options for power users (``[ytdlp]`` in settings.toml, ``--ytdlp-option``),
  minus the few the engine owns;
- the classifier, which turns yt-dlp's messages (YouTube's own wording included) into
  our error tree with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
import sysconfig
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import errors
from pipeline.config.ytdlp_options import (  # noqa: F401 - the unused ones are re-exported for our callers
    BROWSERS,
    ENGINE_OWNED,
    KEYRINGS,
    PROXY_SCHEMES,
    SECRET_HEADER,
    SECRET_OPTION,
    check_account_settings,
    check_proxy,
    check_ytdlp_options,
    parse_browser_spec,
    redact_url,
    redact_ytdlp_options,
)
from pipeline.recipes.transcribe.options import TranscribeOptions, options_of

if TYPE_CHECKING:
    from pipeline.engine.stage import StageContext

log = logging.getLogger("tubemill.ytdlp")
# The checks of proxies, browser specs and pass-through options, and which keys are secret, are settings
# validation (pipeline.config.ytdlp_options); they are named here too, for every yt-dlp caller of ours.

# ---------------------------------------------------------------------- tools yt-dlp runs
def ffmpeg_binary() -> str | None:
    """Full path of an ffmpeg yt-dlp accepts (a directory fails without ffprobe, see NOTES)."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None


_JS_RUNTIME: str | None = None


def js_runtime() -> str | None:
    """Absolute path of the Deno binary yt-dlp should run YouTube's JS challenges in, or None.

    Looked up in the order that works without an activated venv: the ``deno`` PyPI
    package's own finder, the folder of ``sys.executable`` (a venv's ``bin``, also in
    Dask worker processes started from it), Python's scripts folder, then ``PATH``.
    A hit is remembered for the process; a miss is looked up again next time (cheap),
    so installing Deno while the app runs takes effect.
    """
    global _JS_RUNTIME
    if _JS_RUNTIME and os.access(_JS_RUNTIME, os.X_OK):
        return _JS_RUNTIME
    exe = "deno" + (sysconfig.get_config_var("EXE") or "")
    candidates: list[str] = []
    try:
        from deno import find_deno_bin

        candidates.append(os.fsdecode(find_deno_bin()))
    except (ImportError, OSError):
        pass
    candidates.append(str(Path(sys.executable).parent / exe))
    candidates.append(os.path.join(sysconfig.get_path("scripts"), exe))
    candidates.append(shutil.which("deno") or "")
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            _JS_RUNTIME = os.path.abspath(c)
            return _JS_RUNTIME
    return None


def js_runtimes_option() -> dict[str, dict[str, str]] | None:
    """yt-dlp's ``js_runtimes`` naming our Deno by path; None leaves yt-dlp to its own search."""
    path = js_runtime()
    return {"deno": {"path": path}} if path else None


def ejs_version() -> str | None:
    """Version of the installed yt-dlp-ejs (the challenge-solver scripts), or None when missing."""
    try:
        import yt_dlp_ejs

        return str(yt_dlp_ejs.version)
    except (ImportError, AttributeError):
        return None


# ---------------------------------------------------------------------- logger and redactor
_HEADER_NAMES = r"(?:set-cookie|cookie|authorization|proxy-authorization|x-[\w-]*(?:key|token|auth|secret)[\w-]*)"
_QUOTED_HEADER = re.compile(r"""(?i)(['"])(""" + _HEADER_NAMES + r""")\1(\s*:\s*)(['"])(?:\\.|(?!\4).)*\4""")
_HEADER_LINE = re.compile(r"(?im)\b(" + _HEADER_NAMES + r")(\s*:\s*)(?!\s*['\"]?\*\*\*)[^\r\n]+")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;#](?:[\w.-]*(?:key|token|secret|passw(?:or)?d|auth|signature|credential)[\w.-]*|sig|lsig|pot|sid|"
    r"pwd|pass|session(?:id)?)=)[^&\s'\"#<>]+")
_COOKIE_REPR = re.compile(r"""(\bvalue=)(['"])(?:\\.|(?!\2).)*\2""")
_ESCAPED_TAB_LINE = re.compile(r"""(['"])(?:(?!\1)[^\\]|\\.)*?\\t(?:(?!\1)[^\\]|\\.)*?\1""")
_TAB_LINE = re.compile(r"(?m)^([^\t\n]*(?:\t[^\t\n]*){4}\t[^\t\n]*\t)[^\n]*")
MIN_SECRET_LEN = 6  # shorter known values ("1", "en") would blank out ordinary words


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` as it may be logged or shown: every known secret value (``secrets``: cookie values, a proxy
    password), ``Cookie``/``Set-Cookie``/``Authorization`` header values, secret query values
    (``key=``, ``token=``, ``sig=``…), passwords in URLs, cookie-file lines (a tab-separated line, or
    its ``repr`` as yt-dlp's cookie loader prints it) and cookie reprs are replaced by ``***``."""
    out = redact_url(str(text))
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        out = out.replace(secret, "***")
    out = _QUOTED_HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}***{m[4]}", out)
    out = _HEADER_LINE.sub(r"\1\2***", out)
    out = _AUTH_SCHEME.sub(r"\1 ***", out)
    out = _SECRET_QUERY.sub(r"\1***", out)
    out = _COOKIE_REPR.sub(r"\1\2***\2", out)
    out = _ESCAPED_TAB_LINE.sub(r"\1***\1", out)
    return _TAB_LINE.sub(r"\1***", out)


def known_secrets(opts: Mapping[str, Any]) -> frozenset[str]:
    """The secret values a yt-dlp call carries, for :func:`redact_text`: its cookie file's values, the
    proxy's user and password, secret headers, logins and secret extractor arguments (PO tokens)."""
    out: set[str] = set()
    cookiefile = opts.get("cookiefile")
    if cookiefile:  # our private copy: a header, then clean 7-field lines (parsed here without pipeline.config.secrets)
        try:
            for line in Path(cookiefile).read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) == 7 and (not line.startswith("#") or line.startswith("#HttpOnly_")):
                    out.add(fields[6])
        except OSError:
            pass
    proxy = opts.get("proxy")
    if isinstance(proxy, str) and "@" in proxy:
        try:
            parts = urllib.parse.urlsplit(proxy)
            for v in (parts.username, parts.password):
                if v:
                    out.update({v, urllib.parse.unquote(v)})
        except ValueError:
            pass
    for key in ("username", "password", "videopassword", "ap_username", "ap_password", "twofactor"):
        if isinstance(opts.get(key), str):
            out.add(opts[key])
    for name, value in (opts.get("http_headers") or {}).items():
        if SECRET_HEADER.search(str(name)) and value:
            out.add(str(value))
            out.update(p.split("=", 1)[1].strip() for p in str(value).split(";") if "=" in p)

    def walk(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and SECRET_OPTION.search(key):
            out.update({value, value.rsplit("+", 1)[-1]})

    walk("extractor_args", opts.get("extractor_args") or {})
    return frozenset(s for s in out if len(s) >= MIN_SECRET_LEN)


class YtdlpLogger:
    """yt-dlp prints ERROR lines to stderr even when quiet; ours become typed errors, so log them at debug.

    Lines pass through :func:`redact_text`: a proxy password, a cookie value or a signed URL must not
    reach a log (the CLI prints warnings, and with ``-v`` these lines too).
    """

    def __init__(self, name: str = "tubemill.ytdlp", secrets: Iterable[str] = ()) -> None:
        self.log = logging.getLogger(name)
        self.secrets = frozenset(secrets)

    def redact(self, msg: str) -> str:
        return redact_text(msg, self.secrets)

    def debug(self, msg: str) -> None:
        self.log.debug("%s", self.redact(msg))

    def info(self, msg: str) -> None:
        self.log.debug("%s", self.redact(msg))

    def warning(self, msg: str) -> None:
        self.log.info("%s", self.redact(msg))

    def error(self, msg: str) -> None:
        self.log.info("%s", self.redact(msg))


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


def common_options() -> dict[str, Any]:
    """What every yt-dlp call needs to handle real YouTube: our JS runtime, by path."""
    js = js_runtimes_option()
    return {"js_runtimes": js} if js else {}


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


# ---------------------------------------------------------------------- limits of one call
# The defaults are the download limits' (settings.toml's [downloads]): a 4 GB cap (one video's best audio is far
# smaller; an endless stream is not), 5 min for a page and its JS challenges, 64 MB for a page (a watch page is
# ~1.5 MB, a big feed tens of MB).
_DEFAULT = TranscribeOptions()


@dataclass(frozen=True)
class CallLimits:
    """What one yt-dlp call may take. The child enforces the byte-exact parts (cap, page size, media
    check, redirects); the parent enforces what a blocked read hides (stalls, deadlines, cancel).

    ``cap_is_disk``: the cap is the free disk above the governor's floor, not ``max_download_mb``, so
    passing it means "disk nearly full" (retry later), not "too large" (fail).
    """

    cap_bytes: int
    cap_reason: str
    cap_is_disk: bool = False
    stall_bytes_per_s: float = _DEFAULT.stall_rate_kbps * 1024
    stall_s: float = _DEFAULT.stall_seconds
    extract_timeout_s: float = _DEFAULT.extract_timeout_s
    max_page_bytes: int = int(_DEFAULT.max_page_mb * 2**20)
    allow_private: bool = False

    @property
    def block_size(self) -> int:
        """yt-dlp's first read size. A read blocks until it is full, and the parent sees bytes block by block,
        so the first block must arrive well within the stall window at the minimum rate. yt-dlp then resizes
        blocks to about one second of transfer each (a fixed small block costs 10× the CPU on a fast link):
        a rate that drops more than ``stall_s``-fold at once can count as a stall before blocks shrink
        again — the retry resumes from the ``.part``."""
        return int(min(64 * 1024, max(1024, self.stall_bytes_per_s * self.stall_s / 8)))

    def ydl_options(self) -> dict[str, Any]:
        return {"buffersize": self.block_size}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def cap_error(self, seen: int | None = None) -> errors.TubemillError:
        """The error for passing the cap: disk nearly full (retried later) or too large (fails)."""
        got = f" ({_mb(seen)} so far)" if seen else ""
        if self.cap_is_disk and self.cap_bytes <= 0 and not seen:
            return errors.DiskFull(f"disk nearly full: no room for a download in {self.cap_reason}; free some "
                                   "space (the item is retried later)")
        if self.cap_is_disk:
            return errors.DiskFull(f"disk nearly full: the download passed {self.cap_reason}{got}")
        return errors.TooLarge(f"too large: the download passed {self.cap_reason}{got}; an endless stream or a "
                               "huge file (raise max_download_mb for this batch to allow it)")


def _mb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


def disk_floor_mb(ctx: StageContext) -> float:
    """The governor's free-disk floor: the batch option ``min_free_disk_mb``, else the engine's live floor
    (a context built by hand: its settings', else the default; settings.toml is never read here)."""
    opts = options_of(ctx)
    if opts.min_free_disk_mb is not None:
        return opts.min_free_disk_mb
    floor = getattr(ctx, "min_free_disk_mb", None)
    if isinstance(floor, int | float):
        return float(floor)
    from pipeline.config.settings import GovernorSettings

    governor = ctx.settings.governor if ctx.settings is not None else GovernorSettings()
    return float(governor.min_free_disk_mb)


def call_limits(ctx: StageContext, folder: Path | None = None) -> CallLimits:
    """The limits of one yt-dlp call from the batch's options (``max_download_mb``, ``stall_rate_kbps``,
    ``stall_seconds``, ``extract_timeout_s``, ``max_page_mb``, ``allow_private_redirects``; 0 turns a
    limit off). With ``folder`` (where the download goes) the cap is also never more than the free disk
    there minus the governor's floor: a download must not fill the disk the transcripts go to."""
    o = options_of(ctx)
    cap = int(o.max_download_mb * 2**20) if o.max_download_mb else 2**62
    reason = f"the {_mb(cap)} per-download cap (max_download_mb)"
    is_disk = False
    if folder is not None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if free is not None:
            floor = int(disk_floor_mb(ctx) * 2**20)
            room = free - floor
            if room < cap:
                cap, is_disk = max(0, room), True
                reason = f"the free disk ({_mb(free)} free, {_mb(floor)} kept free by the governor's floor)"
    return CallLimits(
        cap_bytes=cap, cap_reason=reason, cap_is_disk=is_disk, stall_bytes_per_s=o.stall_rate_kbps * 1024,
        stall_s=o.stall_seconds, extract_timeout_s=o.extract_timeout_s or float("inf"),
        max_page_bytes=int((o.max_page_mb or 2**42 / 2**20) * 2**20), allow_private=o.allow_private_redirects,
    )


# ---------------------------------------------------------------------- live streams and premieres
_UPCOMING = re.compile(r"this live event will begin|\bpremieres? (?:in|on|at)\b|\bpremiere will begin|live event .*"
                       r"(?:scheduled|not yet started)|will begin at", re.I)
_IN = re.compile(r"\bin\s+(?P<n>\d+|an?|one)\s+(?P<unit>second|minute|hour|day|week)s?\b", re.I)
_SOON = re.compile(r"in a few moments|shortly|momentarily", re.I)
_AT_UTC = re.compile(r"(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2})?)\s*(?:UTC|GMT|Z)\b", re.I)
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


def upcoming_start(message: str, now: float | None = None) -> float | None:
    """When a "This live event will begin in 3 hours." / "Premieres in 6 hours" message says the stream
    starts (epoch seconds, as precise as the wording), or None when it gives no time."""
    now = time.time() if now is None else now
    m = _IN.search(message)
    if m:
        n = m.group("n").lower()
        count = 1 if n in ("a", "an", "one") else int(n)
        return now + count * _UNIT_S[m.group("unit").lower()]
    if _SOON.search(message):
        return now + 60
    m = _AT_UTC.search(message)
    if m:
        from datetime import UTC, datetime

        try:
            return datetime.fromisoformat(m.group("ts").replace(" ", "T")).replace(tzinfo=UTC).timestamp()
        except ValueError:
            return None
    return None


def _when(starts_at: float | None, now: float) -> str:
    if starts_at is None:
        return "no start time given"
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(starts_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"starts about {stamp}" if starts_at - now > 90 else "starts in a moment"


def check_live(info: Mapping[str, Any] | None, now: float | None = None) -> None:
    """Raise :class:`~pipeline.errors.NotYetLive` for an info dict of a stream that is upcoming
    (``live_status == "is_upcoming"``, start from ``release_timestamp``) or still live: there is no
    recording to transcribe yet, and downloading a live stream would hold a worker for its whole length."""
    if not info:
        return
    now = time.time() if now is None else now
    status = info.get("live_status")
    if status == "is_upcoming":
        ts = info.get("release_timestamp")
        starts = float(ts) if isinstance(ts, int | float) else None
        raise errors.NotYetLive(f"live stream or premiere not started yet ({_when(starts, now)})", starts_at=starts)
    if status == "is_live" or info.get("is_live"):
        raise errors.NotYetLive("live now: it can be transcribed once the stream has ended", starts_at=None)


# ---------------------------------------------------------------------- classifier
_BOT = ("confirm you're not a bot", "confirm you’re not a bot", "confirm that you're not a bot",
        "confirm that you’re not a bot")
_MEMBERS = ("members-only", "members only", "available to this channel's members", "join this channel")
_PRIVATE = ("private video", "this video is private")
_AGE = ("confirm your age", "age-restricted", "age restricted", "inappropriate for some users",
        "age verification", "age-verification")
_GEO = ("not made this video available in your country", "not available from your location",
        "not available in your country", "geo restriction", "geo-restricted")
_UNAVAILABLE = ("private video", "video unavailable", "has been removed", "members-only", "this video is not available",
                "account associated with this video has been terminated", "copyright", "no longer available")
_NO_FORMATS = ("requested format is not available", "no video formats found", "only images are available")
_LOGIN_HINT = re.compile(r"\s*\.?\s*(?:Use --cookies-from-browser or --cookies|Use --cookies, --cookies-from-browser"
                         r"|Also see\s+https?://).*$", re.I | re.S)
_COOKIE_FIX = "use an account with cookies (--cookies FILE or --cookies-from-browser BROWSER)"


def classify_ytdlp_error(exc: BaseException, account: str | None = None, *,
                         now: float | None = None) -> errors.TubemillError:
    """Map a yt-dlp failure onto our error tree (see NOTES: classify by ``exc_info[1]``).

    ``account`` is the signed-in account that made the request (None when anonymous): only then
    does a 401/403 mean its cookies were refused. YouTube's own outcomes (bot check, members-only,
    private, age gate, geo block, upcoming live, no formats without a JS runtime) come as
    ``ExtractorError`` text and are matched on their wording.
    """
    import yt_dlp
    from yt_dlp.networking import exceptions as net

    now = time.time() if now is None else now
    cause = getattr(exc, "exc_info", None)
    inner = cause[1] if cause and len(cause) > 1 and cause[1] is not None else exc
    msg = redact_text(str(exc))
    low = msg.lower()
    full = disk_full(exc)
    if full is not None:
        return full
    loop = next((e for e in _chain(exc) if getattr(e, "redirect_loop", False)), None)
    if loop is not None or "redirect loop detected" in low or "exceeded 30 redirects" in low:
        where = _host(loop) if loop is not None else "the server"
        return errors.TooManyRedirects(f"too many redirects: a redirect loop at {where}")
    if "[download] got error:" in low:
        # Timeouts and resets during the transfer itself come with no exception attached, only this text.
        return errors.NetworkError(f"download interrupted: {_clean(msg.split('Got error:', 1)[-1])}")
    if isinstance(inner, net.HTTPError):
        return _http_error(inner, account)
    youtube = _youtube_outcome(msg, low, inner, account, now)
    if youtube is not None:
        return youtube
    if isinstance(inner, yt_dlp.utils.UnsupportedError) or "unsupported url" in low:
        return errors.Unsupported("no media found at this URL (unsupported URL)")
    if any(u in low for u in _UNAVAILABLE):
        return errors.Unavailable(_reason(msg))
    if isinstance(inner, net.TransportError | TimeoutError | ConnectionError | OSError):
        return errors.NetworkError(f"network error: {_clean(str(inner))}")
    if any(f in low for f in _NO_FORMATS):
        return errors.NoAudio("no downloadable audio or video format")
    if "timed out" in low or "connection" in low or "incompleteread" in low:
        return errors.NetworkError(_clean(msg))
    if isinstance(inner, yt_dlp.utils.ExtractorError) and getattr(inner, "expected", False):
        return errors.PermanentError(_clean(msg))
    return errors.RetryableError(_clean(msg))


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it wraps: yt-dlp's ``exc_info`` and ``cause``, Python's ``__cause__``/``__context__``."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or not isinstance(e, BaseException):
            continue
        seen.add(id(e))
        yield e
        info = getattr(e, "exc_info", None)
        if isinstance(info, tuple) and len(info) > 1:
            todo.append(info[1])
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]


_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def disk_full(exc: BaseException) -> errors.DiskFull | None:
    """A full disk (ENOSPC, or a quota), anywhere in ``exc``'s chain or in yt-dlp's text for it
    ("unable to write data: [Errno 28] No space left on device"); None otherwise.

    Not a network error: retrying at once cannot help, so :class:`~pipeline.errors.DiskFull` waits
    before its retry.
    """
    hit = any(isinstance(e, OSError) and e.errno in _NO_SPACE for e in _chain(exc))
    low = str(exc).lower()
    if hit or "no space left on device" in low or "disk quota exceeded" in low:
        return errors.DiskFull("disk full: no space left on the output disk while writing the download; free "
                               f"some space (the item is retried in {errors.DiskFull.default_retry_after / 60:.0f} "
                               "min, or run retry-failed)")
    return None


def _http_error(inner: Any, account: str | None) -> errors.TubemillError:
    status = inner.status
    host = _host(inner)
    if status == 429:
        return errors.RateLimited(f"HTTP 429 Too Many Requests from {host}", account=account,
                                  retry_after=_retry_after(inner))
    if status in (404, 410):
        return errors.NotFound(f"HTTP {status}: not found")
    if status == 403 and (urllib.parse.urlsplit("//" + host).hostname or "").endswith("googlevideo.com"):
        # YouTube's media servers refuse a URL whose JS challenge was not solved or that lacks a PO token:
        # not the account's cookies, so the account stays enabled.
        return errors.RetryableError("HTTP 403 from YouTube's media server: the JS challenge failed or a PO token "
                                     "is needed (see `tubemill doctor`)")
    if status in (401, 403) and account:
        return errors.AuthFailed(f"HTTP {status}: access refused for this account", account=account)
    if status == 403:
        return errors.RetryableError("HTTP 403: access refused (often temporary)")
    if status >= 500:
        return errors.NetworkError(f"HTTP {status}: server error")
    return errors.PermanentError(f"HTTP {status}: {inner.reason or 'error'}")


def _youtube_outcome(msg: str, low: str, inner: BaseException, account: str | None,
                     now: float) -> errors.TubemillError | None:
    """YouTube's outcomes, from its wording (yt-dlp passes YouTube's playability reason through)."""
    import yt_dlp

    reason = _reason(msg)
    if any(b in low for b in _BOT):
        return errors.BotCheck(f"YouTube asks to sign in to confirm you're not a bot: {_COOKIE_FIX}, add a PO-token "
                               "provider (see `tubemill doctor`) and slow down; this account cools down",
                               account=account, retry_after=900)
    if "this content isn't available, try again later" in low or "this content isn’t available, try again" in low:
        return errors.RateLimited("YouTube rate-limited this session for up to an hour ('This content isn't "
                                  "available, try again later'): slow down or add accounts", account=account,
                                  retry_after=3600)
    if _UPCOMING.search(low) and not any(f in low for f in _NO_FORMATS):
        starts = upcoming_start(msg, now)
        return errors.NotYetLive(f"not live yet: {reason} ({_when(starts, now)})", starts_at=starts)
    if any(m in low for m in _MEMBERS):
        who = f"account {account} is not a member of this channel" if account else _COOKIE_FIX.replace(
            "an account", "the account of a channel member")
        return errors.MembersOnly(f"members-only video: {who} ({reason})")
    if any(p in low for p in _PRIVATE):
        who = (f"account {account} has no access to it" if account
               else "only an account it was shared with can fetch it: " + _COOKIE_FIX)
        return errors.PrivateVideo(f"private video: {who}")
    if any(a in low for a in _AGE):
        who = (f"account {account} did not pass YouTube's age check (use an age-verified account)" if account
               else "needs a signed-in, age-verified account: " + _COOKIE_FIX)
        return errors.AgeRestricted(f"age-restricted video: {who}")
    if isinstance(inner, yt_dlp.utils.GeoRestrictedError) or any(g in low for g in _GEO):
        return errors.GeoBlocked(f"not available from this country: use a proxy in an allowed country (--proxy) "
                                 f"({reason})")
    if any(f in low for f in _NO_FORMATS) and "[youtube" in low:
        if js_runtime() is None:
            return errors.MissingJsRuntime("no JavaScript runtime found: YouTube's formats need Deno to solve its "
                                           "JS challenges; install it with `pip install deno` (or `make`), then "
                                           "retry the failed items")
        if ejs_version() is None:
            return errors.MissingJsRuntime("yt-dlp-ejs is not installed: YouTube's formats need its challenge-solver "
                                           "scripts; install `yt-dlp[default]`, then retry the failed items")
        return errors.NoAudio("YouTube offered no downloadable format: its JS challenge was not solved or it wants "
                              "a PO token (see `tubemill doctor`)")
    return None


def _retry_after(err: Any) -> float | None:
    try:
        value = err.response.get_header("Retry-After")
        return float(value) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def _host(err: Any) -> str:
    try:
        return urllib.parse.urlparse(err.response.url).netloc or "the server"
    except AttributeError:
        return "the server"


def _clean(msg: str) -> str:
    return re.sub(r"^ERROR:\s*(\[[^\]]+\]\s*)?", "", msg.replace("\r", "")).strip()[:500]


def _reason(msg: str) -> str:
    """The site's own words: no ``ERROR: [youtube] <id>:`` prefix and no yt-dlp login boilerplate."""
    text = " ".join(_clean(msg).split())
    text = re.sub(r"^[\w-]{6,}:\s+", "", text)  # the video id yt-dlp puts first
    text = re.sub(r"\s*You might want to use a VPN.*$", "", text)
    return _LOGIN_HINT.sub("", text).strip().rstrip(".") or text

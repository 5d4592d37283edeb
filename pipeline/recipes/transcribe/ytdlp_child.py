"""The yt-dlp child process: one yt-dlp call, fenced in, talking JSON lines to the stage that started it.

Why a process (:mod:`pipeline.recipes.transcribe.ytdlp_run` is the parent's side): yt-dlp reads a response in blocks and
calls its progress hook only when a block is complete, so a server trickling a byte every ten seconds
holds that read — and the thread — for hours, out of reach of cancel, pause and Ctrl-C. A process can be
killed at any instant; a thread cannot. The same fence bounds what an in-process call could not: an
ffmpeg it starts (killed with its process group), and whatever it prints (never the user's terminal).

Protocol. Stdin: one JSON object per line — ``extract`` (the call), optionally ``fetch`` (a caption track
through the same session), ``end`` (close the session: yt-dlp saves the cookie copy; the process then waits
for the next call). End of stdin ends the process, also in the middle of a download, so a parent that dies
leaves no orphan. Stdout is a private duplicate of fd 1; fd 1 itself is pointed at
stderr before yt-dlp is imported, so nothing yt-dlp prints can corrupt the events: ``ready``, ``phase``,
``progress``, ``log`` (redacted), ``info``, ``fetched``, ``ended``, ``error`` (already classified into our
error tree).

Inside, :class:`GuardedYoutubeDL` adds what yt-dlp has no option for:

- **outbound rule**: every request and every redirect hop is checked before it is sent. A host on a
  loopback, link-local or private-network address (127/8, ::1, 10/8, 172.16/12, 192.168/16, 169.254/16,
  fc00::/7, fe80::/10, also 0/8 and ::) is refused unless the call's source is itself on such an address
  *and* it is the same host (same name, or a shared address), or ``allow_private_redirects`` is on. So a
  public page cannot bounce Tubemill into the LAN or to a local service, and a local server may redirect
  within itself (``127.0.0.1`` → ``127.0.0.1:other-port``) but not to another local host (``127.0.0.2``,
  the router). A redirect to anything but http(s) (``file:``) is refused always. Names are resolved with
  the system resolver (a name that does not resolve is not refused: nothing can be reached, or a proxy
  resolves it); the check happens before connecting, so DNS rebinding between check and connect is
  outside what it covers.
- **media check**: once the download starts (yt-dlp's ``before_dl`` hook), each response is judged by its
  content type and first bytes before the body is read on: an HTML page, a ZIP, a PDF, an image is
  refused ("not media (text/html)") after at most one block.
- **page budget**: before the download, no response body may pass ``max_page_bytes`` (a 2 GB "page" with a
  Content-Length is refused before its first byte).
- **byte cap**: the bytes downloaded in this call (all files, all fragments) never pass ``cap_bytes``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import queue
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

# Before anything can print: fd 1 carries the protocol only (a duplicate), and fd 1 itself goes to stderr.
if __name__ == "__main__":
    _PROTO_FD = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

import yt_dlp  # noqa: E402
from yt_dlp.networking.exceptions import RequestError, TransportError  # noqa: E402
from yt_dlp.postprocessor.common import PostProcessor  # noqa: E402
from yt_dlp.utils import DownloadCancelled  # noqa: E402

from pipeline import errors  # noqa: E402
from pipeline.recipes.transcribe.ytdlp import (  # noqa: E402
    CallLimits,
    YtdlpLogger,
    _chain,
    check_live,
    classify_ytdlp_error,
    known_secrets,
    redact_text,
)

Emit = Callable[[dict[str, Any]], None]

PROGRESS_EVERY_S = 0.25
# An idle child (≈55 MB) waits this long for its next call before it exits: long enough to bridge the pauses
# of a batch (pacing, a long transcription), short enough not to sit in memory all day after one.
IDLE_EXIT_S = 600.0
HEAD_BYTES = 16  # enough to tell an HTML page, a ZIP or an MP4 apart

# ---------------------------------------------------------------------- addresses
_PRIVATE = [(ipaddress.ip_network(net), kind) for net, kind in (
    ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"), ("10.0.0.0/8", "private-network"),
    ("172.16.0.0/12", "private-network"), ("192.168.0.0/16", "private-network"), ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"), ("fc00::/7", "unique-local"), ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
)]


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """"loopback", "private-network", "link-local", "unique-local", "unspecified", or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for net, kind in _PRIVATE:
        if ip.version == net.version and ip in net:
            return kind
    return None


class Addresses:
    """Host → addresses, resolved once per call (IP literals without a lookup)."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}

    def of(self, host: str) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        host = host.strip("[]").split("%", 1)[0].lower().rstrip(".")
        try:
            return frozenset([ipaddress.ip_address(host)])
        except ValueError:
            pass
        if host not in self._cache:
            if host == "localhost" or host.endswith(".localhost"):
                ips = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
            else:
                ips = set()
                try:
                    for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                        ips.add(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                except (OSError, UnicodeError, ValueError):
                    pass  # does not resolve here: nothing to reach (or a proxy resolves it)
            self._cache[host] = frozenset(ips)
        return self._cache[host]


class OutboundRule:
    """Which requests one call may send (see the module docstring): private hosts only from a private
    source to that same host, or when ``allow_private``; redirects to http(s) only."""

    def __init__(self, source: str, allow_private: bool = False) -> None:
        self.addresses = Addresses()
        self.allow_private = allow_private
        try:
            parts = urllib.parse.urlsplit(source)
            self.source_host = parts.hostname if parts.scheme.lower() in ("http", "https") else None
        except ValueError:
            self.source_host = None
        src = self.addresses.of(self.source_host) if self.source_host else frozenset()
        self.source_addresses = src
        self.source_private = any(address_kind(ip) for ip in src)

    def private(self, host: str) -> tuple[str, str] | None:
        """(kind, address) when ``host`` is on a private address, else None."""
        for ip in sorted(self.addresses.of(host), key=str):
            kind = address_kind(ip)
            if kind:
                return kind, str(ip)
        return None

    def same_host(self, host: str) -> bool:
        if not self.source_host:
            return False
        if host.lower().rstrip(".") == self.source_host.lower().rstrip("."):
            return True
        return bool(self.addresses.of(host) & self.source_addresses)

    def refusal(self, url: str, redirect_from: str | None = None) -> str | None:
        """Why ``url`` may not be requested (a hop of a redirect from ``redirect_from``), or None."""
        try:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
        except ValueError:
            return f"refused a redirect to a malformed URL from {_host_of(redirect_from)}" if redirect_from else None
        scheme = parts.scheme.lower()
        if redirect_from is not None and scheme not in ("http", "https"):
            return (f"refused a redirect from {_host_of(redirect_from)} to a {scheme or 'relative'}: URL "
                    "(only http and https redirects are followed)")
        if not host or self.allow_private:
            return None
        found = self.private(host)
        if found is None or (self.source_private and self.same_host(host)):
            return None
        kind, ip = found
        what = f"a redirect from {_host_of(redirect_from)}" if redirect_from else f"a request for a source on " \
            f"{self.source_host or 'another host'}"
        why = ("the source is on another local host" if self.source_private
               else "the source is not on a local address")
        shown = host if host == ip else f"{host} ({ip})"
        return f"refused {what} to {shown}, a {kind} address: {why}; set allow_private_redirects to allow it"


def _host_of(url: str | None) -> str:
    try:
        return urllib.parse.urlsplit(url or "").hostname or "the server"
    except ValueError:
        return "the server"


# ---------------------------------------------------------------------- media or not
# Content types that are never audio or video; refused from the headers alone once the download started.
NON_MEDIA_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "application/zip", "application/x-zip-compressed", "application/pdf",
    "application/x-rar-compressed", "application/vnd.rar", "application/x-7z-compressed", "application/gzip",
    "application/x-gzip", "application/x-tar", "application/x-msdownload", "application/x-executable",
    "application/java-archive", "application/x-bzip2", "application/x-xz",
})
# Types a page, feed or API answer has: fine while extracting, but not the media itself.
_PAGE_TYPE = re.compile(r"^(?:text/|application/(?:[\w.+-]*\+)?(?:xml|json|javascript)$|application/xhtml)")
_HTML_START = re.compile(rb"^\s*<(?:!doctype\s+html|html|head|body|meta|title|script|div|!--)", re.I)
_NON_MEDIA_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive"), (b"PK\x05\x06", "a ZIP archive"), (b"%PDF-", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"), (b"Rar!\x1a\x07", "a RAR archive"), (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"BZh", "a bzip2 archive"), (b"\xfd7zXZ\x00", "an xz archive"), (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"), (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"GIF8", "a GIF image"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
_MEDIA_MAGIC = (b"ID3", b"OggS", b"fLaC", b"RIFF", b"\x1a\x45\xdf\xa3", b"FLV", b"#EXTM3U", b"#!AMR", b"FORM",
                b"caff", b"MAC ", b"wvpk", b".snd", b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", b"\x00\x00\x01\xba",
                b"\x00\x00\x01\xb3", b"WEBVTT")
_MP4_BOXES = (b"ftyp", b"moof", b"styp", b"sidx", b"moov", b"mdat", b"free", b"skip", b"wide", b"emsg")


def sniff(head: bytes) -> tuple[str, str]:
    """("media" | "nonmedia" | "unknown", what it looks like) from a response's first bytes."""
    if _HTML_START.match(head.lstrip(b"\xef\xbb\xbf")):
        return "nonmedia", "an HTML page"
    if head.lstrip().startswith(b"<?xml"):
        return "unknown", "XML"
    for magic, what in _NON_MEDIA_MAGIC:
        if head.startswith(magic):
            return "nonmedia", what
    if head.startswith(_MEDIA_MAGIC) or head[4:8] in _MP4_BOXES:
        return "media", "media"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "media", "MPEG audio"  # an MP3 frame or ADTS AAC
    if head[:1] == b"\x47":
        return "media", "an MPEG transport stream"
    return "unknown", "unknown bytes"


def _ctype(headers: Any) -> str:
    return str(headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()


def _mb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} KB"


# ---------------------------------------------------------------------- the guard
class OutboundBlocked(TransportError):
    """Raised inside a request handler (which passes RequestErrors on): yt-dlp treats it as that request
    failing; :attr:`error` is what the call reports if the call fails because of it."""

    def __init__(self, error: errors.TubemillError) -> None:
        super().__init__(msg=str(error))
        self.error = error


class GuardAbort(DownloadCancelled):
    """Raised from our hooks and wrappers: yt-dlp passes ``DownloadCancelled`` through every layer."""

    def __init__(self, error: errors.TubemillError) -> None:
        super().__init__(str(error))
        self.error = error


class Guard:
    """The fence of one call: outbound rule, media check, page budget, byte cap, progress events."""

    def __init__(self, limits: dict[str, Any], source: str, emit: Emit) -> None:
        known = {f.name for f in dataclasses.fields(CallLimits)}
        self.limits = CallLimits(**{k: v for k, v in limits.items() if k in known})
        self.cap = self.limits.cap_bytes
        self.page_budget = self.limits.max_page_bytes
        self.rule = OutboundRule(source, self.limits.allow_private)
        self.emit = emit
        self.phase = "extract"
        self.failure: errors.TubemillError | None = None
        self._done_bytes = 0
        self._read_total = 0  # bytes read from the media responses of this call
        self._current: dict[str, int] = {}
        self._last_emit = 0.0

    # -- failures
    def fail(self, error: errors.TubemillError) -> errors.TubemillError:
        self.failure = error
        return error

    def cap_error(self, seen: int) -> errors.TubemillError:
        return self.limits.cap_error(seen)

    # -- requests (called from the request handlers, before anything is sent)
    def check_url(self, url: str, redirect_from: str | None = None) -> None:
        why = self.rule.refusal(url, redirect_from)
        if why:
            raise OutboundBlocked(self.fail(errors.OutboundRefused(why)))

    # -- responses (called from YoutubeDL.urlopen, before the body is read)
    def check_response(self, res: Any) -> Any:
        ctype = _ctype(res.headers)
        try:
            length: int | None = int(res.headers.get("Content-Length"))
        except (TypeError, ValueError):
            length = None
        if self.phase == "download":
            if ctype in NON_MEDIA_TYPES or ctype.startswith("image/"):
                raise GuardAbort(self.fail(errors.NotMedia(f"not media ({ctype})")))
            if length is not None and self.total + length > self.cap:
                raise GuardAbort(self.fail(self.cap_error(self.total + length)))
            self._wrap(res, ctype, sniff_head=getattr(res, "status", 200) != 206, budget=None)
        else:
            if length is not None and length > self.page_budget and _PAGE_TYPE.match(ctype):
                raise GuardAbort(self.fail(errors.NotMedia(
                    f"not media ({ctype}): a {_mb(length)} page, over the {_mb(self.page_budget)} a page may be "
                    "(max_page_mb)")))
            self._wrap(res, ctype, sniff_head=False, budget=self.page_budget)
        return res

    def _wrap(self, res: Any, ctype: str, *, sniff_head: bool, budget: int | None) -> None:
        """Count (and, once the download started, judge) the body as it is read: yt-dlp's response
        adapters read through ``res.fp.read``, so this sees every byte before yt-dlp does."""
        fp = getattr(res, "fp", None)
        if fp is None or not hasattr(fp, "read"):
            return
        original = fp.read
        state = {"n": 0, "head": b"", "judged": not sniff_head}

        def read(*args: Any, **kwargs: Any) -> bytes:
            data = original(*args, **kwargs)
            state["n"] += len(data)
            if budget is None:  # the media itself: the cap holds before yt-dlp writes a byte of it
                self._read_total += len(data)
                if self._read_total > self.cap:
                    raise GuardAbort(self.fail(self.cap_error(self._read_total)))
            if budget is not None and state["n"] > budget:
                raise GuardAbort(self.fail(errors.NotMedia(
                    f"not media ({ctype or 'no content type'}): more than {_mb(budget)} of page (max_page_mb)")))
            if not state["judged"]:
                state["head"] += data[:HEAD_BYTES]
                if len(state["head"]) >= HEAD_BYTES or not data:
                    state["judged"] = True
                    self._judge(state["head"], ctype)
            return data

        fp.read = read

    def _judge(self, head: bytes, ctype: str) -> None:
        kind, what = sniff(head)
        if kind == "media":
            return
        if kind == "nonmedia":
            raise GuardAbort(self.fail(errors.NotMedia(f"not media ({ctype or 'no content type'}: {what})")))
        if _PAGE_TYPE.match(ctype):
            raise GuardAbort(self.fail(errors.NotMedia(f"not media ({ctype})")))

    # -- the download (yt-dlp's before_dl postprocessor hook and progress hook)
    def enter_download(self, info: dict[str, Any]) -> None:
        try:
            check_live(info)  # a live stream would download until the cap: say what it is instead
        except errors.NotYetLive as exc:
            raise GuardAbort(self.fail(exc)) from None
        formats = info.get("requested_formats") or [info]
        size = sum(int(f.get("filesize") or f.get("filesize_approx") or 0) for f in formats)
        if size > self.cap:
            raise GuardAbort(self.fail(self.cap_error(size)))
        self.phase = "download"
        self.emit({"ev": "phase", "phase": "download", "expected_bytes": size or None})

    @property
    def total(self) -> int:
        return self._done_bytes + sum(self._current.values())

    def progress_hook(self, d: dict[str, Any]) -> None:
        status = d.get("status")
        key = str(d.get("tmpfilename") or d.get("filename") or "")
        n = int(d.get("downloaded_bytes") or 0)
        if status == "downloading":
            self._current[key] = n
        elif status == "finished":
            self._current.pop(key, None)
            self._done_bytes += n
        total = self.total
        if total > self.cap:
            raise GuardAbort(self.fail(self.cap_error(total)))
        now = time.monotonic()
        if status != "downloading" or now - self._last_emit >= PROGRESS_EVERY_S:
            self._last_emit = now
            expected = d.get("total_bytes") or d.get("total_bytes_estimate")
            self.emit({"ev": "progress", "status": status, "bytes": total, "file_bytes": n,
                       "file_total": int(expected) if expected else None})


class _BeforeDownload(PostProcessor):
    """yt-dlp's ``before_dl`` hook: the formats are chosen, the transfer is next."""

    def __init__(self, guard: Guard) -> None:
        super().__init__(None)
        self.guard = guard

    def run(self, info: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        self.guard.enter_download(info)
        return [], info


def _guarded_handlers(handlers: Any, guard: Guard) -> list[type]:
    """yt-dlp's request handler classes, each HTTP one with the outbound check on the request and on
    every redirect hop. (Subclasses keep the class name, so yt-dlp's handler keys and preferences hold.)"""
    out: list[type] = []
    for rh in handlers:
        key = getattr(rh, "RH_KEY", "")
        if key == "Requests":
            out.append(_guard_requests(rh, guard))
        elif key == "Urllib":
            out.append(_guard_urllib(rh, guard))
        else:
            out.append(rh)
    return out


def _guard_requests(base: type, guard: Guard) -> type:
    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.is_redirect:
            location = response.headers.get("location") or ""
            guard.check_url(urllib.parse.urljoin(response.url, location), redirect_from=response.url)
        return response

    def _create_instance(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = base._create_instance(self, *args, **kwargs)
        session.hooks["response"].append(hook)  # runs on each response before requests follows it
        return session

    def _send(self: Any, request: Any) -> Any:
        guard.check_url(request.url)
        return base._send(self, request)

    return type(base.__name__, (base,), {"_create_instance": _create_instance, "_send": _send})


def _guard_urllib(base: type, guard: Guard) -> type:
    import urllib.request

    def _create_instance(self: Any, *args: Any, **kwargs: Any) -> Any:
        opener = base._create_instance(self, *args, **kwargs)
        for h in opener.handlers:
            if isinstance(h, urllib.request.HTTPRedirectHandler):
                follow = h.redirect_request

                def redirect_request(req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str,
                                     _follow: Any = follow) -> Any:
                    guard.check_url(newurl, redirect_from=req.full_url)
                    return _follow(req, fp, code, msg, headers, newurl)

                h.redirect_request = redirect_request
        return opener

    def _send(self: Any, request: Any) -> Any:
        guard.check_url(request.url)
        return base._send(self, request)

    return type(base.__name__, (base,), {"_create_instance": _create_instance, "_send": _send})


class GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """A YoutubeDL whose every request goes through :class:`Guard` (handlers built by us, responses checked
    in :meth:`urlopen`, the one door both extractors and downloaders use)."""

    def __init__(self, params: dict[str, Any], guard: Guard) -> None:
        self.guard = guard
        super().__init__(params)
        self.add_post_processor(_BeforeDownload(guard), when="before_dl")

    def build_request_director(self, handlers: Any, preferences: Any = None) -> Any:
        return super().build_request_director(_guarded_handlers(handlers, self.guard), preferences)

    def urlopen(self, req: Any) -> Any:
        return self.guard.check_response(super().urlopen(req))


class ChildLogger(YtdlpLogger):
    """yt-dlp's log lines as ``log`` events, redacted here (the parent redacts again)."""

    def __init__(self, emit: Emit, secrets: frozenset[str]) -> None:
        super().__init__("tubemill.ytdlp.child", secrets)
        self.emit = emit

    def _line(self, level: str, msg: str) -> None:
        self.emit({"ev": "log", "level": level, "msg": self.redact(msg)})

    def debug(self, msg: str) -> None:
        self._line("debug", msg)

    def info(self, msg: str) -> None:
        self._line("debug", msg)

    def warning(self, msg: str) -> None:
        self._line("info", msg)

    def error(self, msg: str) -> None:
        self._line("info", msg)


# ---------------------------------------------------------------------- one call
_INFO_KEYS = ("id", "title", "duration", "ext", "extractor", "extractor_key", "live_status", "is_live",
              "release_timestamp", "webpage_url")


def trim_info(info: dict[str, Any] | None, lang: str | None) -> dict[str, Any]:
    """What the stages use of an info dict (the first entry of a playlist), captions only in ``lang``."""
    if info and info.get("entries"):
        info = next((e for e in info["entries"] if e), {})
    info = info or {}
    out = {k: info[k] for k in _INFO_KEYS if info.get(k) is not None}
    if lang:
        for table in ("subtitles", "automatic_captions"):
            tracks = info.get(table) or {}
            out[table] = {key: [{k: f[k] for k in ("ext", "url", "data", "name") if f.get(k) is not None}
                                for f in fmts or []]
                          for key, fmts in tracks.items() if key == lang or key.split("-")[0] == lang}
    return out


def describe_failure(exc: BaseException, guard: Guard, account: str | None, *, fetching: bool = False
                     ) -> errors.TubemillError:
    """Our error for a failed call: a guard's refusal first (wherever yt-dlp wrapped it, or only quoted its
    text, as its downloader does), else yt-dlp's own failure through the classifier."""
    for e in _chain(exc):
        if isinstance(e, GuardAbort | OutboundBlocked):
            return e.error
    if guard.failure is not None and str(guard.failure) in str(exc):
        return guard.failure
    if isinstance(exc, errors.TubemillError):
        return exc
    if fetching and isinstance(exc, RequestError):
        return errors.NetworkError(f"could not fetch captions: {redact_text(str(exc))}")
    return classify_ytdlp_error(exc, account)


class Session:
    """The YoutubeDL of one conversation (``extract``, then ``fetch`` through the same cookies and headers)."""

    def __init__(self, job: dict[str, Any], emit: Emit) -> None:
        opts = dict(job.get("opts") or {})
        self.secrets = known_secrets(opts)
        self.account = job.get("account")
        self.guard = Guard(job.get("limits") or {}, str(job.get("source") or job.get("url") or ""), emit)
        opts["logger"] = ChildLogger(emit, self.secrets)
        opts["progress_hooks"] = [self.guard.progress_hook]
        if isinstance(opts.get("cookiesfrombrowser"), list):
            opts["cookiesfrombrowser"] = tuple(opts["cookiesfrombrowser"])
        self.ydl = GuardedYoutubeDL(opts, self.guard)

    def extract(self, job: dict[str, Any]) -> dict[str, Any]:
        try:
            info = self.ydl.extract_info(job["url"], download=bool(job.get("download")))
            return {"ev": "info", "info": trim_info(self.ydl.sanitize_info(info), job.get("lang"))}
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an event; the process carries on
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return self._error(exc)

    def fetch(self, job: dict[str, Any]) -> dict[str, Any]:
        self.guard.page_budget = int(job.get("max_bytes") or self.guard.page_budget)
        try:
            with self.ydl.urlopen(job["url"]) as res:
                data = res.read()
            return {"ev": "fetched", "text": data.decode("utf-8", errors="replace")}
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            return self._error(exc, fetching=True)

    def _error(self, exc: BaseException, fetching: bool = False) -> dict[str, Any]:
        err = describe_failure(exc, self.guard, self.account, fetching=fetching)
        record = errors.error_record(err)
        record["message"] = redact_text(str(record["message"]), self.secrets)
        return {"ev": "error", "error": record,
                "detail": redact_text(f"{type(exc).__name__}: {exc}", self.secrets)[:2000]}

    def close(self) -> None:
        self.ydl.close()  # saves the cookie jar: into the private copy it was given, never the user's file


def warm_up() -> None:
    """What every call pays once per process, paid while a spare waits for its job: yt-dlp's extractor
    table (each extractor's URL pattern is compiled on first use) and a YoutubeDL built once."""
    from yt_dlp.extractor import gen_extractor_classes

    probe = "http://127.0.0.1/x.mp3"
    for ie in gen_extractor_classes():
        ie.suitable(probe)
    yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": YtdlpLogger("tubemill.ytdlp.warmup")}).close()


def warm_up_pages() -> None:
    """What the first HTML page costs a process (≈1 s here): the generic extractor asks every extractor for
    embeds, which imports each one's module and compiles its patterns. Done once, while the child is
    idle between calls, on an empty page (no request); best effort."""
    from yt_dlp.extractor import gen_extractor_classes

    ydl = yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True, "logger": YtdlpLogger("tubemill.ytdlp.warmup")})
    page = "<html><head><title>warm-up</title></head><body></body></html>"
    try:
        for ie in gen_extractor_classes():
            try:
                for _ in ie.extract_from_webpage(ydl, "http://127.0.0.1/warm-up.html", page):
                    break
            except Exception:  # noqa: BLE001 - an extractor that chokes on an empty page changes nothing
                continue
    finally:
        ydl.close()


def serve(ops: queue.Queue[str | None], emit: Emit, state: dict[str, bool]) -> None:
    """Answer ops until stdin ends (or nothing comes for :data:`IDLE_EXIT_S`). A process serves many calls,
    one after the other (each ``extract`` … ``end`` with a YoutubeDL of its own), so the warm-up is paid once;
    the parent kills it only to stop a call (cancel, a stall, the cap)."""
    session: Session | None = None
    served = pages_warm = False
    try:
        while True:
            if served and session is None and not pages_warm and ops.empty():
                warm_up_pages()  # idle after a call: the next page this child reads will not pay for it
                pages_warm = True
            try:
                line = ops.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                return
            if line is None:
                return
            job = json.loads(line)
            op = job.get("op")
            state["busy"] = True
            if op == "extract":
                if session is not None:
                    session.close()
                _apply_environment(job)
                session = Session(job, emit)
                event = session.extract(job)
            elif op == "fetch" and session is not None:
                event = session.fetch(job)
            elif op == "end":
                if session is not None:
                    session.close()
                    session = None
                served = True
                event = {"ev": "ended"}
            else:
                event = {"ev": "error", "error": errors.error_record(errors.RetryableError(
                    f"yt-dlp child: unknown op {op!r}")), "detail": ""}
            state["busy"] = False  # before the answer: the parent may close stdin the moment it has it
            emit(event)
    finally:
        if session is not None:
            session.close()


def _apply_environment(job: dict[str, Any]) -> None:
    """The parent's environment and folder as of this call (a spare was started earlier): proxies from the
    environment, certificates, PATH and relative paths then mean what they mean in the parent."""
    env = job.get("env")
    if isinstance(env, dict):
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
    cwd = job.get("cwd")
    if cwd:
        try:
            os.chdir(cwd)
        except OSError:
            pass


def main() -> None:
    out = os.fdopen(_PROTO_FD, "w", encoding="utf-8", buffering=1)
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        line = json.dumps(event, default=str)
        with lock:
            out.write(line + "\n")
            out.flush()

    ops: queue.Queue[str | None] = queue.Queue()
    state = {"busy": False}

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                ops.put(line)
        if state["busy"]:
            os._exit(0)  # the parent is gone or killed the call: stop now, mid-download or not
        ops.put(None)

    threading.Thread(target=read_stdin, name="stdin", daemon=True).start()
    warm_up()
    emit({"ev": "ready", "pid": os.getpid()})
    serve(ops, emit, state)
    out.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(130)

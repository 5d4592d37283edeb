"""The fence around one yt-dlp call in the child process: :class:`GuardedYoutubeDL` adds what yt-dlp has
no option for.

- **outbound rule**: every request and every redirect hop is checked before it is sent
  (:mod:`.ytdlp_outbound`: no private addresses from a public source, http(s) redirects only);
- **media check**: once the download starts (yt-dlp's ``before_dl`` hook), each response is judged by its
  content type and first bytes before the body is read on (:mod:`.ytdlp_sniff`): an HTML page, a ZIP, a
  PDF, an image is refused ("not media (text/html)") after at most one block;
- **page budget**: before the download, no response body may pass ``max_page_bytes`` (a 2 GB "page" with a
  Content-Length is refused before its first byte);
- **byte cap**: the bytes downloaded in this call (all files, all fragments) never pass ``cap_bytes``.

Imports yt-dlp, so only the child (:mod:`.ytdlp_child`) imports this, after it has fenced off fd 1.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from yt_dlp import YoutubeDL
from yt_dlp.networking.exceptions import TransportError
from yt_dlp.postprocessor.common import PostProcessor
from yt_dlp.utils import DownloadCancelled

from pipeline import errors
from pipeline.recipes.transcribe.ytdlp_limits import CallLimits, size_text
from pipeline.recipes.transcribe.ytdlp_live import check_live
from pipeline.recipes.transcribe.ytdlp_outbound import OutboundRule
from pipeline.recipes.transcribe.ytdlp_sniff import NON_MEDIA_TYPES, PAGE_TYPE, content_type, sniff

Emit = Callable[[dict[str, Any]], None]

PROGRESS_EVERY_S = 0.25
HEAD_BYTES = 16  # enough to tell an HTML page, a ZIP or an MP4 apart


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
        ctype = content_type(res.headers)
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
            if length is not None and length > self.page_budget and PAGE_TYPE.match(ctype):
                raise GuardAbort(self.fail(errors.NotMedia(
                    f"not media ({ctype}): a {size_text(length)} page, over the {size_text(self.page_budget)} a page "
                    "may be (max_page_mb)")))
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
                    f"not media ({ctype or 'no content type'}): more than {size_text(budget)} of page (max_page_mb)")))
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
        if PAGE_TYPE.match(ctype):
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


class GuardedYoutubeDL(YoutubeDL):
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

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

Inside, :class:`~pipeline.recipes.transcribe.ytdlp_guard.GuardedYoutubeDL` adds what yt-dlp has no option
for: the outbound rule (:mod:`.ytdlp_outbound`), the media check (:mod:`.ytdlp_sniff`), the page budget and
the byte cap. This module is the process: its conversation, its sessions and its warm-up. Run as
``python -m pipeline.recipes.transcribe.ytdlp_child``; what it imports is imported in every child.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import Any

# Before anything can print: fd 1 carries the protocol only (a duplicate), and fd 1 itself goes to stderr.
if __name__ == "__main__":
    _PROTO_FD = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

import yt_dlp  # noqa: E402
from yt_dlp.networking.exceptions import RequestError  # noqa: E402

from pipeline import errors  # noqa: E402
from pipeline.recipes.transcribe.ytdlp import (  # noqa: E402
    YtdlpLogger,
    _chain,
    classify_ytdlp_error,
    known_secrets,
    redact_text,
)
from pipeline.recipes.transcribe.ytdlp_guard import (  # noqa: E402
    Emit,
    Guard,
    GuardAbort,
    GuardedYoutubeDL,
    OutboundBlocked,
)
from pipeline.recipes.transcribe.ytdlp_procs import WARM_PAGES_FLAG  # noqa: E402

# An idle child (≈55 MB) waits this long for its next call before it exits: long enough to bridge the pauses
# of a batch (pacing, a long transcription), short enough not to sit in memory all day after one.
IDLE_EXIT_S = 600.0


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
_INFO_KEYS = ("id", "title", "track", "duration", "ext", "extractor", "extractor_key", "live_status", "is_live",
              "release_timestamp", "webpage_url")
_GENERIC = ("generic", "html5mediaembed")  # whose ``url`` is a page's plain media file, kept for playback


def trim_info(info: dict[str, Any] | None, lang: str | None) -> dict[str, Any]:
    """What the stages use of an info dict (the first entry of a playlist), captions only in ``lang``."""
    if info and info.get("entries"):
        info = next((e for e in info["entries"] if e), {})
    info = info or {}
    out = {k: info[k] for k in _INFO_KEYS if info.get(k) is not None}
    if str(info.get("extractor_key") or "").lower() in _GENERIC and isinstance(info.get("url"), str):
        out["url"] = info["url"]  # a site's format URL is signed and short-lived: never passed on
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


def serve(ops: queue.Queue[str | None], emit: Emit, state: dict[str, bool], *, pages_warm: bool = False) -> None:
    """Answer ops until stdin ends (or nothing comes for :data:`IDLE_EXIT_S`). A process serves many calls,
    one after the other (each ``extract`` … ``end`` with a YoutubeDL of its own), so the warm-up is paid once;
    the parent kills it only to stop a call (cancel, a stall, the cap)."""
    session: Session | None = None
    served = False
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
    pages = WARM_PAGES_FLAG in sys.argv[1:]
    if pages:  # started ahead of a batch (the preview): its first page should not pay for the embeds either
        warm_up_pages()
    emit({"ev": "ready", "pid": os.getpid()})
    serve(ops, emit, state, pages_warm=pages)
    out.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        os._exit(130)

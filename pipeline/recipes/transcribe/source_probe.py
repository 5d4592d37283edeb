"""Durations and titles of direct media before anything is downloaded: ffprobe of the container header.

A direct file URL lists without a request, so it has no duration and only its file name for a title, and
the preview's media total and estimate would be guesses. ffprobe reads the header (a few kilobytes, or a
ranged read of an MP4's index) with a short timeout, four at a time, and the whole probe ends by a total
deadline: a slow server costs a few seconds once, never a stuck preview; what was not probed by then keeps
"unknown" and the download records it.

The probe keeps the outbound rule of every other request of ours (:mod:`.ytdlp_outbound`): ffprobe follows
no redirect by itself (``-max_redirects 0``, http/https/tcp/tls only, so never ``file:``); each hop is read
from ffprobe's own trace, checked, and probed again, at most :data:`MAX_HOPS`. A batch proxy other than
http(s) cannot be given to ffprobe, so then nothing is probed rather than sent around it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.recipes.transcribe.source_entries import Entry, clean_title
from pipeline.recipes.transcribe.source_kinds import MEDIA_EXTS
from pipeline.recipes.transcribe.ytdlp_outbound import OutboundRule

PROBE_BUDGET_S = 4.0  # the whole probe of one listing, however many URLs it has
PROBE_TIMEOUT_S = 3.0  # one ffprobe run
PROBE_WORKERS = 4
MAX_HOPS = 3
_PROTOCOLS = "http,https,tcp,tls,httpproxy"
_LOCATION = re.compile(r"header='Location:\s*([^']+)'", re.I)
_STATUS = re.compile(r"header='HTTP/\d(?:\.\d)?\s+(\d{3})")


@dataclass(frozen=True)
class Probed:
    """What a container header says: its duration and its title tag (either may be missing)."""

    duration: float | None = None
    title: str | None = None


def _ffprobe() -> str | None:
    from pipeline.common.ffmpeg import ffprobe_exe

    return ffprobe_exe()


def media_seconds(value: Any) -> float | None:
    """A duration a listing or a probe reported, as seconds; None for anything that is not a sane one."""
    try:
        d = float(value)
    except (TypeError, ValueError):
        return None
    return d if 0 < d < 1e9 else None


def _title_tag(data: Mapping[str, Any]) -> str | None:
    """The ``title`` tag of the container, else of a stream (Ogg and Opus keep theirs per stream)."""
    tagged = [(data.get("format") or {}).get("tags") or {}] + [s.get("tags") or {} for s in data.get("streams") or []]
    for tags in tagged:
        for key, value in tags.items():
            if str(key).lower() == "title" and clean_title(value):
                return clean_title(value)
    return None


def _run(cmd: list[str], timeout: float, proxy: str | None = None) -> subprocess.CompletedProcess[str] | None:
    """ffprobe, killed at ``timeout``; a proxy goes by environment, never the command line (it may hold a
    password, and every local user can read a process's arguments)."""
    env = {**os.environ, "http_proxy": proxy} if proxy else None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.SubprocessError):
        return None


def probe_file(path: Path, timeout: float = 30.0) -> Probed:
    """Duration and title tag of a downloaded or local file; empty when there is no ffprobe or it cannot read."""
    exe = _ffprobe()
    res = _run([exe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "--", str(path)],
               timeout) if exe else None
    return _parse(res)


def _probe_local(path: Path, deadline: float) -> Probed:
    left = min(PROBE_TIMEOUT_S, deadline - time.monotonic())
    return probe_file(path, left) if left >= 0.2 else Probed()


def _parse(res: subprocess.CompletedProcess[str] | None) -> Probed:
    if res is None or res.returncode != 0:
        return Probed()
    try:
        data = json.loads(res.stdout or "{}")
    except ValueError:
        return Probed()
    if not isinstance(data, dict):
        return Probed()
    return Probed(duration=media_seconds((data.get("format") or {}).get("duration")), title=_title_tag(data))


def probe_url(url: str, source: str, *, proxy: str | None = None, deadline: float | None = None) -> Probed:
    """ffprobe of ``url`` (the media of the entry listed from ``source``), hop by checked hop, by ``deadline``
    (a ``time.monotonic()`` value) at the latest."""
    exe = _ffprobe()
    if exe is None:
        return Probed()
    deadline = time.monotonic() + PROBE_TIMEOUT_S if deadline is None else deadline
    rule = OutboundRule(source)
    base = [exe, "-protocol_whitelist", _PROTOCOLS, "-max_redirects", "0", "-rw_timeout",
            str(int(PROBE_TIMEOUT_S * 1e6))]
    prev: str | None = None if url == source else source
    for _ in range(MAX_HOPS + 1):
        if rule.refusal(url, redirect_from=prev) is not None:
            return Probed()
        left = min(PROBE_TIMEOUT_S, deadline - time.monotonic())
        if left < 0.2:
            return Probed()
        res = _run([*base, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", "--", url], left,
                   proxy)
        if res is not None and res.returncode == 0:
            return _parse(res)
        if res is None or "input/output error" not in (res.stderr or "").lower():
            return Probed()
        left = min(PROBE_TIMEOUT_S, deadline - time.monotonic())  # a redirect? its headers say where to
        trace = _run([*base, "-loglevel", "trace", "--", url], left, proxy) if left >= 0.2 else None
        status = _STATUS.search(trace.stderr or "") if trace is not None else None
        where = _LOCATION.search(trace.stderr or "") if trace is not None else None
        if status is None or where is None or not status.group(1).startswith("3"):
            return Probed()
        prev, url = url, urllib.parse.urljoin(url, where.group(1).strip())
    return Probed()


def _target(e: Entry) -> str | None:
    """What tells ``e``'s duration: its local file, its own direct media URL, or its page's media."""
    if e.duration is not None and e.title_from != "file name":
        return None
    if e.local_path:
        return e.local_path
    url = e.media_url or e.url
    if not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return None
    name = parts.path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return url if parts.scheme.lower() in ("http", "https") and ext in MEDIA_EXTS else None


def _proxy(ydl_opts: Mapping[str, Any] | None) -> tuple[bool, str | None]:
    """(may probe, the proxy for ffprobe): a proxy ffprobe cannot use means no probe at all."""
    proxy = str((ydl_opts or {}).get("proxy") or "").strip()
    if not proxy:
        return True, None
    return proxy.lower().startswith(("http://", "https://")), proxy


def probe_entries(entries: list[Entry], ydl_opts: Mapping[str, Any] | None = None, *,
                  budget_s: float = PROBE_BUDGET_S, workers: int = PROBE_WORKERS) -> int:
    """Fill in durations (and replace file-name titles by title tags) of direct media and local files, in place,
    ``workers`` at a time, all within ``budget_s``; returns how many entries learned something.

    A title the listing gave (a feed's, a page's) is never replaced; only a file-name stand-in is.
    """
    allowed, proxy = _proxy(ydl_opts)
    todo = [(e, url) for e in entries if (url := _target(e)) is not None and (allowed or e.local_path)]
    if not todo or _ffprobe() is None:
        return 0
    deadline = time.monotonic() + budget_s
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tubemill-probe")
    futures = {(pool.submit(_probe_local, Path(url), deadline) if e.local_path else
                pool.submit(probe_url, url, e.url or url, proxy=proxy, deadline=deadline)): e for e, url in todo}
    done, _ = wait(futures, timeout=budget_s + 0.5)  # a name lookup is the one step ffprobe's timeouts miss
    pool.shutdown(wait=False, cancel_futures=True)
    learned = 0
    for fut in done:
        e, found = futures[fut], fut.result()
        if found.duration is not None and e.duration is None:
            e.duration = found.duration
        if found.title and e.title_from == "file name":
            e.title, e.title_from = found.title, "tags"
        learned += found != Probed()
    return learned

"""What kind of source one line is (a local path, a YouTube video, playlist or channel, a direct media file,
a page for yt-dlp to read), or why it cannot be one: decided from the text and a ``stat``, without a request,
so a typo is reported on its line before anything is fetched."""

from __future__ import annotations

import ipaddress
import re
import stat
import urllib.parse
from pathlib import Path

from pipeline.errors import InvalidInput

MEDIA_EXTS = frozenset(
    ["mp3", "m4a", "aac", "wav", "flac", "ogg", "oga", "opus", "wma", "webm", "mp4", "m4v", "mkv", "mov", "avi",
     "wmv", "mpg", "mpeg", "ts", "3gp"]
)
# Folders whose files are the kernel's, not media: reading /proc/kcore "as a video" helps nobody.
SYSTEM_DIRS = ("/proc", "/sys", "/dev")
_YT_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com")
_HOST_LABEL = re.compile(r"^[\w-]{1,63}$")  # \w: internationalized names are labels too


def os_reason(exc: OSError) -> str:
    """The words for an ``OSError`` in a line's report: the system's own, else the exception's name."""
    return exc.strerror or type(exc).__name__


def _check_local(line: str) -> str | None:
    """Why an existing path cannot be a source (``None`` when it can); raises nothing.

    ``FileNotFoundError`` comes back as ``"missing"`` so the caller can give the
    "no such file" hints; any other ``stat`` failure (permission, name too long, a
    symlink loop) is the reason itself.
    """
    try:
        p = Path(line).expanduser()
    except RuntimeError:
        return "cannot expand ~ here (no such user)"
    try:
        st = p.stat()
        real = p.resolve()
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return "missing"
    except RuntimeError:
        return "a symlink loop"
    except OSError as exc:
        return f"cannot read this path ({os_reason(exc)})"
    if stat.S_ISDIR(st.st_mode) and real == Path(real.anchor):
        return "the filesystem root is not a media folder; name the folder that holds your media"
    for top in SYSTEM_DIRS:
        inside = real == Path(top) or Path(top) in real.parents
        if inside and (stat.S_ISDIR(st.st_mode) or top != "/dev"):
            return f"a system path ({top}), not media"
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return "not a regular file or folder (a device, pipe or socket)"
    return None


def _url_problem(u: urllib.parse.SplitResult) -> str | None:
    """Why a parsed http(s) URL cannot be fetched, or ``None``: caught here, not by a traceback in yt-dlp."""
    try:
        host, port = u.hostname, u.port  # .port raises for "99999" or "abc"
    except ValueError as exc:
        return f"malformed URL ({exc})"
    if not host:
        return "malformed URL: no host name"
    if port == 0:
        return "malformed URL: port 0"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        return f"malformed URL: {host[:60]!r} is not a host name"
    return None


def _classify_path(line: str) -> str:
    """``local`` for a usable path; else ``InvalidInput`` with the most helpful reason (a missing file, a URL
    typed without its scheme, text that is neither)."""
    problem = _check_local(line)
    if problem is None:
        return "local"
    if problem != "missing":
        raise InvalidInput(problem)
    if line.startswith(("/", "~", "./", "../")) or re.match(r"^[A-Za-z]:\\", line):
        raise InvalidInput("no such file or folder")
    if re.match(r"^[\w.-]+\.[a-z]{2,}(/|$)", line):
        raise InvalidInput("looks like a URL without http:// or https://")
    raise InvalidInput("not a URL or an existing file")


def classify(line: str) -> str:
    """``local`` | ``video`` | ``playlist`` | ``channel`` | ``media`` (direct file) | ``page`` (let yt-dlp decide).

    Raises ``InvalidInput`` (and nothing else) for text that is neither a fetchable URL
    nor a usable path. ``file:`` URLs are refused: a local file is given as its path,
    and a list of URLs that reaches into the disk by URL is more likely a trick than a typo.
    """
    if re.match(r"(?i)^file:", line):
        raise InvalidInput("file: URLs are refused; give the file's path instead (e.g. /home/me/talk.mp3)")
    if "://" not in line:
        return _classify_path(line)
    try:
        u = urllib.parse.urlsplit(line)
    except ValueError as exc:  # "Invalid IPv6 URL" and friends
        raise InvalidInput(f"malformed URL ({exc})") from None
    if u.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"unsupported scheme {u.scheme[:20]!r} (use http or https)")
    if " " in line:
        raise InvalidInput("malformed URL (a space in it)")
    problem = _url_problem(u)
    if problem:
        raise InvalidInput(problem)
    host = (u.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in _YT_HOSTS):
        q = urllib.parse.parse_qs(u.query)
        if u.path.startswith(("/@", "/channel/", "/c/", "/user/")):
            return "channel"
        if "list" in q and "v" not in q or u.path.startswith("/playlist"):
            return "playlist"
        return "video"
    ext = u.path.rsplit(".", 1)[-1].lower() if "." in u.path.rsplit("/", 1)[-1] else ""
    if ext in MEDIA_EXTS:
        return "media"
    return "page"

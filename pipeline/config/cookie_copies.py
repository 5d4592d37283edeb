"""The private copies yt-dlp gets of a cookie file, one per call, and the refreshed cookies kept from them.

yt-dlp saves its whole cookie jar back to ``cookiefile`` when a YoutubeDL closes: comments dropped, lines it
could not parse deleted, and every Set-Cookie of every server the call touched added. So yt-dlp never gets
the user's file (nor the one saved on the Settings page): each call gets a fresh 0600 copy of it, made from
the usable lines only, deleted afterwards. With ``keep_refreshed`` the cookies yt-dlp saved are kept in
Tubemill's own copy for the next call, but only for domains the user's file already has.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path

from pipeline.config.cookie_files import HTTPONLY, NETSCAPE_HEADER, check_cookies, problem_list, validate_cookie_file
from pipeline.config.private_files import SECRETS_DIR, private_dir, remove_file, secrets_dir, write_private
from pipeline.errors import InvalidInput

log = logging.getLogger("tubemill.secrets")

COPIES_DIR = "cookie-copies"
_KEPT_MARK = "# tubemill: refreshed from the cookie file with sha256 "
_STALE_COPY_S = 2 * 86400.0
_warned: set[tuple[str, str]] = set()  # (account, sha256) whose line problems were logged once


def copies_dir(home: Path) -> Path:
    """``<home>/secrets/cookie-copies`` (0700): yt-dlp's per-call copies and the kept refreshed cookies."""
    return private_dir(secrets_dir(home) / COPIES_DIR)


def _label(account: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", account or "cookies").strip(".-")[:64] or "cookies"


def _kept_path(home: Path, account: str | None) -> Path:
    return Path(home) / SECRETS_DIR / COPIES_DIR / f"{_label(account)}.kept.txt"


def _render(lines: list[str], mark: str = "") -> bytes:
    head = [NETSCAPE_HEADER] + ([mark] if mark else [])
    return ("\n".join(head + lines) + "\n").encode("utf-8")


def _sweep_copies(folder: Path, now: float) -> None:
    """Copies left by a process that died (its pid is gone) or older than two days: they hold cookies."""
    for p in folder.glob("*.txt"):
        parts = p.name.split(".")  # <account>.<pid>.<12 hex>.txt; the kept file is <account>.kept.txt
        if len(parts) < 4 or not re.fullmatch(r"[0-9a-f]{12}", parts[-2]) or not parts[-3].isdigit():
            continue
        pid = int(parts[-3])
        try:
            stale = now - p.stat().st_mtime > _STALE_COPY_S
            if not stale and pid != os.getpid():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    stale = True
                except PermissionError:
                    pass
            if stale:
                p.unlink()
        except OSError:
            continue


def cookie_copy(home: Path, account: str | None, source: str | os.PathLike[str], *,
                keep_refreshed: bool = False) -> Path:
    """A fresh private copy of the cookie file ``source`` for one yt-dlp call (the caller deletes it with
    :func:`release_cookie_copy`). Only usable lines go in, under the Netscape header yt-dlp requires, so
    yt-dlp never prints a bad line (value included) and never refuses the file. Line problems are logged
    once per file version, by line number.

    Raises ``InvalidInput`` when the file is missing, unreadable or has no usable cookie.
    """
    src = Path(source)
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cookie file {src.name} cannot be read ({exc.strerror or exc})") from None
    validate_cookie_file(data)
    check = check_cookies(data)
    digest = hashlib.sha256(data).hexdigest()
    if check.problems and (str(account), digest) not in _warned:
        _warned.add((str(account), digest))
        log.warning("cookie file %s: %d line(s) left out: %s", src.name, len(check.problems),
                    problem_list(check.problems))
    lines = check.lines
    if keep_refreshed:
        kept = _read_kept(home, account, digest)
        if kept is not None:
            lines = kept
    folder = copies_dir(home)
    now = time.time()
    _sweep_copies(folder, now)
    path = folder / f"{_label(account)}.{os.getpid()}.{os.urandom(6).hex()}.txt"
    return write_private(path, _render(lines))


def _read_kept(home: Path, account: str | None, digest: str) -> list[str] | None:
    """The kept refreshed cookies, if they were refreshed from this very version of the user's file
    (a replaced file wins over what was kept from the old one)."""
    try:
        data = _kept_path(home, account).read_bytes()
    except OSError:
        return None
    head = data.split(b"\n", 2)
    if len(head) < 2 or head[1] != (_KEPT_MARK + digest).encode():
        return None
    lines = check_cookies(data).lines
    return lines or None


def _domain(line: str) -> str:
    body = line[len(HTTPONLY):] if line.startswith(HTTPONLY) else line
    return body.split("\t", 1)[0].strip().lstrip(".").lower()


def release_cookie_copy(home: Path, account: str | None, copy: str | os.PathLike[str],
                        source: str | os.PathLike[str] | None = None, *, keep_refreshed: bool = False) -> None:
    """After the yt-dlp call: with ``keep_refreshed``, keep what yt-dlp saved into the copy (cookies of
    domains the user's file has, nothing else), then delete the copy. Never writes the user's file."""
    copy = Path(copy)
    try:
        if keep_refreshed and source is not None:
            _keep_refreshed(home, account, copy, Path(source))
    finally:
        try:
            copy.unlink()
        except OSError:
            pass


def _keep_refreshed(home: Path, account: str | None, copy: Path, source: Path) -> None:
    try:
        user = source.read_bytes()
        saved = copy.read_bytes()
    except OSError:
        return
    allowed = {_domain(ln) for ln in check_cookies(user).lines}

    def first_party(line: str) -> bool:
        d = _domain(line)
        return d in allowed or any(d.endswith("." + a) for a in allowed)

    lines = [ln for ln in check_cookies(saved).lines if first_party(ln)]
    if not lines:
        return
    mark = _KEPT_MARK + hashlib.sha256(user).hexdigest()
    write_private(_kept_path(home, account), _render(lines, mark))


def discard_kept_cookies(home: Path, account: str | None) -> bool:
    """Forget the refreshed cookies kept for ``account`` (the next call starts from the user's file)."""
    return remove_file(_kept_path(home, account))

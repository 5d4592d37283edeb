"""Cookie files: the Netscape cookies.txt of each download account, checked the way yt-dlp reads them.

Kept as the Netscape text yt-dlp reads (``cookiefile``), one 0600 file per account under
``<home>/secrets/cookies``. We check the shape on the way in (line by line: yt-dlp refuses a
whole file for one bad line and prints bad lines, values included) and list only names, ages and
counts, never the contents. The copies yt-dlp actually gets are :mod:`pipeline.config.cookie_copies`.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import NamedTuple

from pipeline.config.private_files import SECRETS_DIR, TEMP_PREFIX, private_dir, remove_file, secrets_dir, write_private
from pipeline.errors import InvalidInput

log = logging.getLogger("tubemill.secrets")

COOKIES_DIR = "cookies"
MAX_COOKIE_BYTES = 5 * 2**20
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADERS = ("# netscape http cookie file", "# http cookie file")
_EXPIRY = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # what yt-dlp's cookie loader accepts (else it drops the line)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # yt-dlp reads the file in text mode: universal newlines
HTTPONLY = "#HttpOnly_"
NETSCAPE_HEADER = "# Netscape HTTP Cookie File"
MAX_REPORTED = 5  # problems listed in one message; the count says how many more


class CookieFile(NamedTuple):
    """A stored cookie file as listed: never its contents."""

    name: str
    path: Path
    mtime: float
    n_cookies: int | None  # None when listed without counting (the engine's periodic scan)


def cookies_dir(home: Path) -> Path:
    """``<home>/secrets/cookies`` (0700): one ``<account>.txt`` per download account."""
    return private_dir(secrets_dir(home) / COOKIES_DIR)


class CookieCheck(NamedTuple):
    """A cookie file, read the way yt-dlp reads it: the lines it can use, and what is wrong with the others.

    ``problems`` name line numbers and fields, never a value: they are shown in the terminal and the app.
    """

    lines: list[str]  # usable cookie lines as written (no line ending), in file order
    problems: list[str]  # "line 4: the expiry (field 5) is not a number"
    header: bool  # the file starts with the Netscape header


def check_cookies(data: bytes) -> CookieCheck:
    """Every line of a Netscape cookies.txt checked against what yt-dlp's loader needs.

    yt-dlp prints a line it cannot use, value included, to stderr, and refuses a whole file for
    one line whose "include subdomains" flag disagrees with the domain's leading dot. So we check
    first: 7 tab-separated fields, a domain, a flag that matches it, an expiry that is a number.
    Lines that fail are left out of the copy yt-dlp gets, and reported by number.
    """
    text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: list[str] = []
    problems: list[str] = []
    raw_lines = _LINE_BREAK.split(text)
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    first = next((ln for ln in raw_lines if ln.strip()), "")
    header = first.strip().lower().startswith(_HEADERS)
    for n, line in enumerate(raw_lines, 1):
        body = line[len(HTTPONLY):] if line.startswith(HTTPONLY) else line
        if body is line and (not line.strip() or line.lstrip().startswith("#")):
            continue  # comments and blank lines
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"line {n}: not UTF-8 text")
            continue
        why = _cookie_line_problem(body)
        if why:
            problems.append(f"line {n}: {why}")
        else:
            lines.append(line)
    return CookieCheck(lines, problems, header)


def _cookie_line_problem(body: str) -> str | None:
    fields = body.split("\t")
    if len(fields) != 7:
        return f"{len(fields)} tab-separated field{'s' if len(fields) != 1 else ''}; a cookie line has 7"
    domain, flag, _path, _secure, expires = fields[:5]
    if not domain.strip():
        return "the domain (field 1) is empty"
    if flag not in ("TRUE", "FALSE"):
        return "field 2 (include subdomains) is not TRUE or FALSE"
    if (flag == "TRUE") != domain.startswith("."):
        return (f"field 2 (include subdomains) is {flag} but the domain "
                f"{'does not start' if flag == 'TRUE' else 'starts'} with a dot (yt-dlp refuses the whole file)")
    if expires and not _EXPIRY.fullmatch(expires):
        return "the expiry (field 5) is not a number of seconds"
    return None


def _cookie_lines(text: str) -> int:
    """Usable cookie entries in Netscape text (``#HttpOnly_`` lines are cookies too)."""
    return len(check_cookies(text.encode("utf-8", errors="surrogateescape")).lines)


def problem_list(problems: list[str]) -> str:
    """The first ``MAX_REPORTED`` problems in one line, and how many more: a message, not a report."""
    shown = "; ".join(problems[:MAX_REPORTED])
    more = len(problems) - MAX_REPORTED
    return shown + (f"; and {more} more" if more > 0 else "")


def validate_cookie_file(data: bytes) -> int:
    """The number of usable cookies in ``data``, or ``InvalidInput`` saying why it is not a usable Netscape
    cookie file: line numbers and what is wrong, never a value.

    A file with some bad lines is usable (the bad lines are left out of yt-dlp's copy and reported by
    :func:`cookie_problems`); a file with none left is refused here.
    """
    if len(data) > MAX_COOKIE_BYTES:
        raise InvalidInput(f"cookie file is {len(data) / 2**20:.1f} MB; a cookies.txt is far smaller")
    if b"\0" in data:
        raise InvalidInput("cookie file is binary; export cookies as a Netscape cookies.txt (text)")
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith((b"[", b"{")):
        raise InvalidInput("this looks like a JSON cookie export; export cookies in Netscape cookies.txt format")
    check = check_cookies(data)
    if check.lines:
        return len(check.lines)
    if check.problems and all(p.endswith("not UTF-8 text") for p in check.problems):
        raise InvalidInput("cookie file is not UTF-8 text; export cookies as a Netscape cookies.txt "
                           f"({problem_list(check.problems)})")
    if not check.header:
        detail = f" ({problem_list(check.problems)})" if check.problems else ""
        raise InvalidInput("not a Netscape cookie file: expected the line '# Netscape HTTP Cookie File' "
                           f"or tab-separated lines of 7 fields{detail}")
    if check.problems:
        raise InvalidInput(f"the cookie file has the Netscape header but no usable cookies: "
                           f"{problem_list(check.problems)}")
    raise InvalidInput("the cookie file has the Netscape header but no cookies in it")


def cookie_problems(data: bytes) -> list[str]:
    """What is wrong with single lines of a usable cookie file ("line 4: …"), for a warning; never values."""
    return check_cookies(data).problems


def _account(name: str) -> str:
    name = (name or "").strip()
    if not _ACCOUNT.match(name):
        raise InvalidInput(f"account name {name!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a "
                           "letter or digit")
    return name


def cookie_path(home: Path, account_name: str) -> Path:
    """Where the account's cookies live (whether or not they exist); for yt-dlp's ``cookiefile``."""
    return Path(home) / SECRETS_DIR / COOKIES_DIR / f"{_account(account_name)}.txt"


def save_cookie_file(home: Path, account_name: str, data: bytes) -> Path:
    """Validate and store an account's cookies.txt (replacing any earlier one) as a 0600 file."""
    path = cookie_path(home, account_name)
    n = validate_cookie_file(data)
    cookies_dir(home)
    write_private(path, data)
    log.info("stored %d cookie(s) for account %s", n, account_name)
    return path


def list_cookie_files(home: Path, *, count: bool = True) -> list[CookieFile]:
    """Stored cookie files: account name, path, modified time, cookie count. Never the contents.

    ``count=False`` skips reading the files: the scheduler rescans every few seconds and needs
    only names, paths and mtimes.
    """
    folder = Path(home) / SECRETS_DIR / COOKIES_DIR
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.txt")):
        if path.name.startswith((TEMP_PREFIX, ".")):
            continue
        try:
            mtime = path.stat().st_mtime
            n = _cookie_lines(path.read_text(encoding="utf-8-sig", errors="replace")) if count else None
        except OSError:
            continue
        out.append(CookieFile(path.stem, path, mtime, n))
    return out


def delete_cookie_file(home: Path, account_name: str) -> bool:
    """Remove the account's cookies; True if there were some."""
    return remove_file(cookie_path(home, account_name))


def accounts_overview(home: Path, now: float | None = None) -> list[dict[str, object]]:
    """One row per download account for the System page: name, cookie count, age of the file.

    Per-account pacing (cooldowns, next allowed download) will add its columns here.
    """
    now = time.time() if now is None else now
    return [{"account": c.name, "cookies": c.n_cookies, "age_s": max(0.0, now - c.mtime), "updated": c.mtime}
            for c in list_cookie_files(home)]

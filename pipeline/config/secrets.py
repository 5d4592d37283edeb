"""Secrets: API keys and cookie files, as files of mode 0600 under ``<home>/secrets`` (0700).

Never in TinyDB, settings.toml, logs or exports. Each file is written atomically
(a temp file created 0600 from the start, fsynced, ``os.replace``d), so a crash
leaves the old secret or the new one, and no other user can read it even for an
instant. An environment variable wins over the file (``OPENAI_API_KEY``): that is
what a server operator expects, and the UI says which source is in use.

Cookie files are kept as the Netscape text yt-dlp reads (``cookiefile``); we check
the shape on the way in and list only names, ages and counts, never the contents.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.common.llm import LLMConfig
from pipeline.config.settings import Settings, load_settings
from pipeline.config.ytdlp_options import SECRET_OPTION, redact_ytdlp_options
from pipeline.errors import InvalidInput
from state.storage import fsync_dir

log = logging.getLogger("tubemill.secrets")

SECRETS_DIR = "secrets"
COOKIES_DIR = "cookies"
DIR_MODE = 0o700
FILE_MODE = 0o600
MAX_COOKIE_BYTES = 5 * 2**20
ENV_VARS = {"openai_api_key": "OPENAI_API_KEY"}
_TEMP_PREFIX = ".tmp-"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADERS = ("# netscape http cookie file", "# http cookie file")


class CookieFile(NamedTuple):
    name: str
    path: Path
    mtime: float
    n_cookies: int | None  # None when listed without counting (the engine's periodic scan)


# -- files -------------------------------------------------------------------------------------------------------


def secrets_dir(home: Path) -> Path:
    """``<home>/secrets``, created with mode 0700 (and re-chmodded if something loosened it)."""
    from state.lock import ensure_home

    return _private_dir(ensure_home(home) / SECRETS_DIR)


def cookies_dir(home: Path) -> Path:
    return _private_dir(secrets_dir(home) / COOKIES_DIR)


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; the file is mode 0600 at every instant."""
    path = Path(path)
    tmp = path.with_name(f"{_TEMP_PREFIX}{path.name}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have narrowed it further; never wider
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.chmod(path, FILE_MODE)
    fsync_dir(path.parent)
    return path


def _secret_path(home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise InvalidInput(f"not a secret name: {name!r} (lowercase letters, digits and _)")
    return Path(home) / SECRETS_DIR / name


# -- named secrets (API keys, tokens) ----------------------------------------------------------------------------


def set_secret(home: Path, name: str, value: str) -> Path:
    """Store ``value`` (surrounding whitespace trimmed: keys are pasted) in ``<home>/secrets/<name>``."""
    value = (value or "").strip()
    if not value:
        raise InvalidInput(f"{name}: the value is empty")
    if any(c in value for c in "\r\n\0"):
        raise InvalidInput(f"{name}: the value must be one line")
    path = _secret_path(home, name)
    secrets_dir(home)
    return write_private(path, value.encode("utf-8"))


def _file_secret(home: Path, name: str) -> str | None:
    path = _secret_path(home, name)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def _env_secret(name: str) -> str | None:
    var = ENV_VARS.get(name)
    if var is None:
        return None
    return (os.environ.get(var) or "").strip() or None


def get_secret(home: Path, name: str) -> str | None:
    """The secret's value: its environment variable when set, else the file, else None."""
    return _env_secret(name) or _file_secret(home, name)


def secret_source(home: Path, name: str) -> str | None:
    """Where :func:`get_secret` finds it: ``"environment"``, ``"file"`` or None."""
    if _env_secret(name):
        return "environment"
    if _file_secret(home, name):
        return "file"
    return None


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def delete_secret(home: Path, name: str) -> bool:
    """Remove the stored file (the environment is not ours to change); True if there was one."""
    return _remove(_secret_path(home, name))


def mask(value: str | None) -> str:
    """A recognizable but useless form: ``sk-…wxyz``. At most the last 4 characters show; short values none."""
    if not value:
        return ""
    if len(value) < 12:
        return "•" * 8
    prefix = "sk-" if value.startswith("sk-") else ""
    return f"{prefix}…{value[-4:]}"


def llm_config_for(home: Path, settings: Settings | None = None,
                   options: Mapping[str, Any] | None = None) -> LLMConfig:
    """The LLM config every caller uses: model and server from a batch's options, else the settings;
    the key from the env or the 0600 file.

    Pass ``settings`` (a stage has ``ctx.settings``, the engine's live copy): without it
    settings.toml is read again on every call, which a stage run per item should not do.
    When ``OPENAI_API_KEY`` is set the config carries no key (the client reads the
    environment); otherwise the stored key rides in ``api_key``, which repr hides.
    """
    if settings is None:
        settings = load_settings(home)
    opts = options or {}
    return LLMConfig.from_env(model=opts.get("llm_model") or settings.llm_model or None,
                              base_url=opts.get("llm_base_url") or settings.llm_base_url or None,
                              api_key=llm_api_key(home))


def llm_api_key(home: Path) -> str | None:
    """The key to pass as ``LLMConfig(api_key=…)``: the stored one, or None when ``OPENAI_API_KEY`` is set."""
    return None if _env_secret("openai_api_key") else _file_secret(home, "openai_api_key")


# -- cookie files ------------------------------------------------------------------------------------------------


_EXPIRY = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # what yt-dlp's cookie loader accepts (else it drops the line)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # yt-dlp reads the file in text mode: universal newlines
_HTTPONLY = "#HttpOnly_"
NETSCAPE_HEADER = "# Netscape HTTP Cookie File"
MAX_REPORTED = 5  # problems listed in one message; the count says how many more


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
        body = line[len(_HTTPONLY):] if line.startswith(_HTTPONLY) else line
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


def _problem_list(problems: list[str]) -> str:
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
                           f"({_problem_list(check.problems)})")
    if not check.header:
        detail = f" ({_problem_list(check.problems)})" if check.problems else ""
        raise InvalidInput("not a Netscape cookie file: expected the line '# Netscape HTTP Cookie File' "
                           f"or tab-separated lines of 7 fields{detail}")
    if check.problems:
        raise InvalidInput(f"the cookie file has the Netscape header but no usable cookies: "
                           f"{_problem_list(check.problems)}")
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
        if path.name.startswith((_TEMP_PREFIX, ".")):
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
    return _remove(cookie_path(home, account_name))


def accounts_overview(home: Path, now: float | None = None) -> list[dict[str, object]]:
    """One row per download account for the System page: name, cookie count, age of the file.

    Per-account pacing (cooldowns, next allowed download) will add its columns here.
    """
    now = time.time() if now is None else now
    return [{"account": c.name, "cookies": c.n_cookies, "age_s": max(0.0, now - c.mtime), "updated": c.mtime}
            for c in list_cookie_files(home)]


# -- the private copies yt-dlp gets ------------------------------------------------------------------------------
# yt-dlp saves its whole cookie jar back to ``cookiefile`` when a YoutubeDL closes: comments dropped, lines it
# could not parse deleted, and every Set-Cookie of every server the call touched added. So yt-dlp never gets
# the user's file (nor the one saved on the Settings page): each call gets a fresh 0600 copy of it, made from
# the usable lines only, deleted afterwards. With ``keep_refreshed`` the cookies yt-dlp saved are kept in
# Tubemill's own copy for the next call, but only for domains the user's file already has.

COPIES_DIR = "cookie-copies"
_KEPT_MARK = "# tubemill: refreshed from the cookie file with sha256 "
_STALE_COPY_S = 2 * 86400.0
_warned: set[tuple[str, str]] = set()  # (account, sha256) whose line problems were logged once


def copies_dir(home: Path) -> Path:
    """``<home>/secrets/cookie-copies`` (0700): yt-dlp's per-call copies and the kept refreshed cookies."""
    return _private_dir(secrets_dir(home) / COPIES_DIR)


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
                    _problem_list(check.problems))
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
    body = line[len(_HTTPONLY):] if line.startswith(_HTTPONLY) else line
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
    return _remove(_kept_path(home, account))


# -- private batch options ---------------------------------------------------------------------------------------
# A batch's options are stored in its state file and shown in manifests and `status`; a proxy with a password or
# a yt-dlp option carrying a header or a login must be neither. Those values live in a 0600 file per batch and
# the stored options keep "***" in their place; the engine merges them back in memory when it runs the batch.

BATCH_OPTIONS_DIR = "batch-options"


def split_private_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options safe to store and show, the secret values taken out of them)."""
    public = dict(options)
    private: dict[str, Any] = {}
    proxy = public.get("proxy")
    if isinstance(proxy, str) and "@" in proxy:
        private["proxy"], public["proxy"] = proxy, "***"
    ytdlp = public.get("ytdlp_options")
    if isinstance(ytdlp, Mapping):
        shown = redact_ytdlp_options(dict(ytdlp))
        hidden = {k: v for k, v in ytdlp.items() if shown.get(k) != v or SECRET_OPTION.search(str(k))}
        if hidden:
            private["ytdlp_options"] = hidden
            public["ytdlp_options"] = shown
    return public, private


def _batch_options_path(home: Path, batch_id: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", batch_id):
        raise InvalidInput(f"not a batch id: {batch_id!r}")
    return Path(home) / SECRETS_DIR / BATCH_OPTIONS_DIR / f"{batch_id}.json"


def save_private_options(home: Path, batch_id: str, private: Mapping[str, Any]) -> None:
    import json

    if not private:
        return
    path = _batch_options_path(home, batch_id)
    _private_dir(secrets_dir(home) / BATCH_OPTIONS_DIR)
    write_private(path, json.dumps(dict(private)).encode())


def with_private_options(home: Path, batch_id: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The batch's options with its secret values back in place (memory only: never written to the store)."""
    import json

    out = dict(options)
    try:
        private = json.loads(_batch_options_path(home, batch_id).read_text(encoding="utf-8"))
    except (OSError, ValueError, InvalidInput):
        return out
    if isinstance(private.get("proxy"), str):
        out["proxy"] = private["proxy"]
    if isinstance(private.get("ytdlp_options"), dict):
        out["ytdlp_options"] = {**(out.get("ytdlp_options") or {}), **private["ytdlp_options"]}
    return out

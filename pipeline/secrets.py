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

import logging
import os
import re
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.errors import InvalidInput
from pipeline.llm import LLMConfig
from pipeline.settings import Settings
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
    return _private_dir(Path(home) / SECRETS_DIR)


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

    When ``OPENAI_API_KEY`` is set the config carries no key (the client reads the
    environment); otherwise the stored key rides in ``api_key``, which repr hides.
    """
    if settings is None:
        from pipeline.settings import load_settings

        settings = load_settings(home)
    opts = options or {}
    return LLMConfig.from_env(model=opts.get("llm_model") or settings.llm_model or None,
                              base_url=opts.get("llm_base_url") or settings.llm_base_url or None,
                              api_key=llm_api_key(home))


def llm_api_key(home: Path) -> str | None:
    """The key to pass as ``LLMConfig(api_key=…)``: the stored one, or None when ``OPENAI_API_KEY`` is set."""
    return None if _env_secret("openai_api_key") else _file_secret(home, "openai_api_key")


# -- cookie files ------------------------------------------------------------------------------------------------


def _cookie_lines(text: str) -> int:
    """Cookie entries in Netscape text: 7 tab-separated fields (``#HttpOnly_`` lines are cookies too)."""
    n = 0
    for line in text.splitlines():
        line = line.strip("\r\n")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        if len(line.split("\t")) == 7:
            n += 1
    return n


def validate_cookie_file(data: bytes) -> int:
    """The number of cookies in ``data``, or ``InvalidInput`` saying why it is not a Netscape cookie file."""
    if len(data) > MAX_COOKIE_BYTES:
        raise InvalidInput(f"cookie file is {len(data) / 2**20:.1f} MB; a cookies.txt is far smaller")
    if b"\0" in data:
        raise InvalidInput("cookie file is binary; export cookies as a Netscape cookies.txt (text)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("cookie file is not UTF-8 text; export cookies as a Netscape cookies.txt") from exc
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        raise InvalidInput("this looks like a JSON cookie export; export cookies in Netscape cookies.txt format")
    header = stripped.lower().startswith(_HEADERS)
    n = _cookie_lines(text)
    if not header and not n:
        raise InvalidInput("not a Netscape cookie file: expected the line '# Netscape HTTP Cookie File' "
                           "or tab-separated lines of 7 fields")
    if not n:
        raise InvalidInput("the cookie file has the Netscape header but no cookies in it")
    return n


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


# -- private batch options ---------------------------------------------------------------------------------------
# A batch's options are stored in its state file and shown in manifests and `status`; a proxy with a password or
# a yt-dlp option carrying a header or a login must be neither. Those values live in a 0600 file per batch and
# the stored options keep "***" in their place; the engine merges them back in memory when it runs the batch.

BATCH_OPTIONS_DIR = "batch-options"


def split_private_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(options safe to store and show, the secret values taken out of them)."""
    from pipeline.ytdlp import SECRET_OPTION, redact_ytdlp_options

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

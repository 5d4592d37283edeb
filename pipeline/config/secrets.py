"""Secrets: API keys and cookie files, as files of mode 0600 under ``<home>/secrets`` (0700).

Never in TinyDB, settings.toml, logs or exports. Each file is written atomically
(a temp file created 0600 from the start, fsynced, ``os.replace``d), so a crash
leaves the old secret or the new one, and no other user can read it even for an
instant. An environment variable wins over the file (``OPENAI_API_KEY``): that is
what a server operator expects, and the UI says which source is in use.

Cookie files are kept as the Netscape text yt-dlp reads (``cookiefile``); we check
the shape on the way in and list only names, ages and counts, never the contents.

This module holds the named secrets (API keys, tokens) and the LLM config built from them; the
other parts are beside it, and their names are importable from here: the private files
themselves (``private_files``), cookie files (``cookie_files``), the per-call copies yt-dlp gets
(``cookie_copies``) and the secret values of a batch's options (``private_options``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.common.llm import LLMConfig
from pipeline.config.cookie_copies import COPIES_DIR, cookie_copy, copies_dir, discard_kept_cookies, release_cookie_copy
from pipeline.config.cookie_files import (
    COOKIES_DIR,
    MAX_COOKIE_BYTES,
    MAX_REPORTED,
    NETSCAPE_HEADER,
    CookieCheck,
    CookieFile,
    accounts_overview,
    check_cookies,
    cookie_path,
    cookie_problems,
    cookies_dir,
    delete_cookie_file,
    list_cookie_files,
    save_cookie_file,
    validate_cookie_file,
)
from pipeline.config.private_files import DIR_MODE, FILE_MODE, SECRETS_DIR, remove_file, secrets_dir, write_private
from pipeline.config.private_options import (
    BATCH_OPTIONS_DIR,
    save_private_options,
    split_private_options,
    with_private_options,
)
from pipeline.config.settings import Settings, load_settings
from pipeline.errors import InvalidInput

__all__ = [
    "BATCH_OPTIONS_DIR", "COOKIES_DIR", "COPIES_DIR", "DIR_MODE", "ENV_VARS", "FILE_MODE", "MAX_COOKIE_BYTES",
    "MAX_REPORTED", "NETSCAPE_HEADER", "SECRETS_DIR", "CookieCheck", "CookieFile", "accounts_overview",
    "check_cookies", "cookie_copy", "cookie_path", "cookie_problems", "cookies_dir", "copies_dir", "delete_cookie_file",
    "delete_secret", "discard_kept_cookies", "get_secret", "list_cookie_files", "llm_api_key", "llm_config_for",
    "MEDIA_KEYS", "mask", "media_api_key", "release_cookie_copy", "save_cookie_file", "save_private_options",
    "secret_source", "secrets_dir",
    "set_secret", "split_private_options", "validate_cookie_file", "with_private_options", "write_private",
]

ENV_VARS = {"openai_api_key": "OPENAI_API_KEY",
            # stock pictures and footage for generated videos (Openverse needs no key)
            "pexels_api_key": "PEXELS_API_KEY", "pixabay_api_key": "PIXABAY_API_KEY"}
MEDIA_KEYS = {"pexels": "pexels_api_key", "pixabay": "pixabay_api_key"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")


# -- named secrets (API keys, tokens) ----------------------------------------------------------------------------


def _secret_path(home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise InvalidInput(f"not a secret name: {name!r} (lowercase letters, digits and _)")
    return Path(home) / SECRETS_DIR / name


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


def delete_secret(home: Path, name: str) -> bool:
    """Remove the stored file (the environment is not ours to change); True if there was one."""
    return remove_file(_secret_path(home, name))


def mask(value: str | None) -> str:
    """A recognizable but useless form: ``sk-…wxyz``. At most the last 4 characters show; short values none."""
    if not value:
        return ""
    if len(value) < 12:
        return "•" * 8
    prefix = "sk-" if value.startswith("sk-") else ""
    return f"{prefix}…{value[-4:]}"


class LLMChoice:
    """For a recipe's options that may name the LLM's model and server: what :func:`llm_config_for` reads."""

    llm_model: str | None
    llm_base_url: str | None

    def llm_options(self) -> dict[str, str]:
        out = {"llm_model": self.llm_model, "llm_base_url": self.llm_base_url}
        return {k: v for k, v in out.items() if v}


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


def media_api_key(home: Path, provider: str) -> str | None:
    """A stock provider's key (``PEXELS_API_KEY`` / ``PIXABAY_API_KEY``, else the 0600 file); None for Openverse.

    The visuals stage asks for it at run time and hands it only to the provider's client: it is
    never part of a batch's options, a cache key, visuals.json or the item's meta.
    """
    name = MEDIA_KEYS.get(provider)
    return get_secret(home, name) if name else None

"""What settings.toml's ``[accounts.NAME]`` and ``[ytdlp]`` tables may hold, checked without importing yt-dlp.

These checks are settings validation: loading settings and storing a batch's options
must refuse a bad proxy, an unknown browser or an engine-owned yt-dlp option, and must
know which option keys carry secrets — all below the transcribe recipe, which builds
the actual yt-dlp calls from them (:mod:`pipeline.recipes.transcribe.ytdlp` imports
these names). Error messages never repeat a password.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from pipeline.errors import InvalidInput

# yt-dlp options the engine sets itself; pass-through may not override them (each says what to use instead).
ENGINE_OWNED: dict[str, str] = {
    "cookiefile": "use --cookies FILE (an account) instead",
    "cookiesfrombrowser": "use --cookies-from-browser BROWSER (an account) instead",
    "proxy": "use --proxy URL, or `proxy` in [accounts.NAME] of settings.toml, instead",
    "wait_for_video": "use --wait-for-live instead (yt-dlp's own wait would hold a worker and an account)",
    "logger": "the engine's logger turns yt-dlp output into typed errors",
    "progress_hooks": "the stages report progress themselves",
    "postprocessor_hooks": "the stages report progress themselves",
    "outtmpl": "each stage names its own files",
    "paths": "each stage writes only inside its item folder",
}
# Option keys whose values are secrets (never logged, shown or exported).
SECRET_OPTION = re.compile(r"cookie|passw|user(?:name)?$|token|secret|auth|proxy|netrc|credential|api[_-]?key|"
                           r"client_certificate", re.I)
SECRET_HEADER = re.compile(r"authorization|cookie|token|key|secret", re.I)
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s:@]+(?::[^/\s@]*)?@", re.I)
PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")
# yt-dlp's SUPPORTED_BROWSERS / SUPPORTED_KEYRINGS (yt_dlp.cookies), copied so that loading settings
# does not import yt-dlp; `tubemill doctor` checks them against the installed yt-dlp.
BROWSERS = frozenset({"brave", "chrome", "chromium", "edge", "firefox", "opera", "safari", "vivaldi", "whale"})
KEYRINGS = frozenset({"KWALLET", "KWALLET5", "KWALLET6", "GNOMEKEYRING", "BASICTEXT"})
_BROWSER_SPEC = re.compile(r"""(?x)
    (?P<name>[^+:]+)
    (?:\s*\+\s*(?P<keyring>[^:]+))?
    (?:\s*:\s*(?!:)(?P<profile>.+?))?
    (?:\s*::\s*(?P<container>.+))?
""")


def redact_url(text: str) -> str:
    """``socks5://user:pass@host:1080`` → ``socks5://***@host:1080``, anywhere in ``text``."""
    return _URL_CREDENTIALS.sub(r"\1***@", str(text))


# ---------------------------------------------------------------------- accounts: browsers and proxies
def parse_browser_spec(spec: str) -> tuple[str, str | None, str | None, str | None]:
    """``BROWSER[+KEYRING][:PROFILE][::CONTAINER]`` → yt-dlp's ``cookiesfrombrowser`` tuple
    (name, profile, keyring, container), parsed as yt-dlp's own ``--cookies-from-browser`` does."""
    m = _BROWSER_SPEC.fullmatch((spec or "").strip())
    if m is None:
        raise InvalidInput(f"--cookies-from-browser {spec!r}: expected BROWSER[+KEYRING][:PROFILE][::CONTAINER]")
    name, keyring, profile, container = m.group("name", "keyring", "profile", "container")
    name = name.strip().lower()
    if name not in BROWSERS:
        raise InvalidInput(f"--cookies-from-browser: unsupported browser {name!r} "
                           f"(one of: {', '.join(sorted(BROWSERS))})")
    if keyring is not None:
        keyring = keyring.strip().upper()
        if keyring not in KEYRINGS:
            raise InvalidInput(f"--cookies-from-browser: unsupported keyring {keyring!r} "
                               f"(one of: {', '.join(sorted(KEYRINGS))})")
    return name, profile, keyring, container


def check_proxy(url: str) -> str:
    """The proxy URL, checked: a scheme yt-dlp supports and a host. The error never repeats a password."""
    url = (url or "").strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in PROXY_SCHEMES or not parts.hostname:
        raise InvalidInput(f"proxy {redact_url(url)!r}: expected SCHEME://[USER:PASSWORD@]HOST:PORT with "
                           f"a scheme of {', '.join(PROXY_SCHEMES)}")
    return url


def proxy_address(url: str | None) -> str | None:
    """``socks5://user:pw@10.0.0.2:1080`` → ``socks5://10.0.0.2:1080``: which address, never the credentials."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def check_account_settings(name: str, conf: Mapping[str, Any]) -> dict[str, str]:
    """One ``[accounts.NAME]`` table of settings.toml: ``proxy`` and/or ``cookies_from_browser``."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", str(name)):
        raise ValueError(f"account name {name!r}: use 1–64 letters, digits, '.', '_' or '-'")
    if not isinstance(conf, Mapping):
        raise ValueError(f"[accounts.{name}] must be a table")
    out: dict[str, str] = {}
    for key, value in conf.items():
        try:
            if key == "proxy":
                out[key] = check_proxy(str(value))
            elif key == "cookies_from_browser":
                parse_browser_spec(str(value))
                out[key] = str(value)
            else:
                raise ValueError(f"[accounts.{name}]: unknown setting {key!r} (proxy, cookies_from_browser)")
        except InvalidInput as exc:
            raise ValueError(f"[accounts.{name}] {exc}") from None
    return out


# ---------------------------------------------------------------------- pass-through options
def check_ytdlp_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Pass-through options, checked and normalised: keys are yt-dlp's Python names (``extractor-args`` →
    ``extractor_args``), the engine's own keys are refused, and ``extractor_args`` leaves become lists of
    strings as yt-dlp expects (``"web,tv"`` → ``["web", "tv"]``)."""
    out: dict[str, Any] = {}
    for raw_key, value in opts.items():
        key = str(raw_key).strip().replace("-", "_")
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", key):
            raise InvalidInput(f"yt-dlp option {raw_key!r}: expected a yt-dlp parameter name such as "
                               "extractor_args or socket_timeout")
        if key in ENGINE_OWNED:
            raise InvalidInput(f"yt-dlp option {key!r} is set by Tubemill: {ENGINE_OWNED[key]}")
        if key == "extractor_args":
            value = _extractor_args(value)
        out[key] = value
    return out


def _extractor_args(value: Any) -> dict[str, dict[str, list[str]]]:
    if not isinstance(value, Mapping):
        raise InvalidInput('extractor_args must be a JSON object, e.g. {"youtube": {"player_client": '
                           '["default"]}}')
    out: dict[str, dict[str, list[str]]] = {}
    for ie, args in value.items():
        if not isinstance(args, Mapping):
            raise InvalidInput(f"extractor_args[{ie!r}] must be an object of argument: values")
        out[str(ie).lower()] = {str(k): ([str(x) for x in v] if isinstance(v, list | tuple) else str(v).split(","))
                                for k, v in args.items()}
    return out


def redact_ytdlp_options(opts: Any) -> Any:
    """Options as they may be shown or logged: secret keys and secret headers → ``***``, URL passwords cut."""
    if isinstance(opts, Mapping):
        out = {}
        for k, v in opts.items():
            if SECRET_OPTION.search(str(k)) and v not in (None, "", False):
                out[k] = "***"
            elif str(k).lower() in ("http_headers", "headers") and isinstance(v, Mapping):
                out[k] = {h: ("***" if SECRET_HEADER.search(str(h)) else redact_ytdlp_options(x))
                          for h, x in v.items()}
            else:
                out[k] = redact_ytdlp_options(v)
        return out
    if isinstance(opts, list | tuple):
        return [redact_ytdlp_options(v) for v in opts]
    if isinstance(opts, str):
        return redact_url(opts)
    return opts

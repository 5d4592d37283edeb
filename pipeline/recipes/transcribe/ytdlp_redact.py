"""What a yt-dlp log line or message may show: the redactor every yt-dlp line of ours passes through
(cookie values, ``Authorization``, ``key=``/``token=``/``sig=`` query values, proxy passwords), the
secrets one call carries, and the quiet logger that applies both.

The yt-dlp child redacts each line before it leaves the process, and the parent again before it logs:
both sides take it from here, apart from the options that decide what the secrets are.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.config.ytdlp_options import SECRET_HEADER, SECRET_OPTION, redact_url

_HEADER_NAMES = r"(?:set-cookie|cookie|authorization|proxy-authorization|x-[\w-]*(?:key|token|auth|secret)[\w-]*)"
_QUOTED_HEADER = re.compile(r"""(?i)(['"])(""" + _HEADER_NAMES + r""")\1(\s*:\s*)(['"])(?:\\.|(?!\4).)*\4""")
_HEADER_LINE = re.compile(r"(?im)\b(" + _HEADER_NAMES + r")(\s*:\s*)(?!\s*['\"]?\*\*\*)[^\r\n]+")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}")
_SECRET_QUERY = re.compile(
    r"(?i)([?&;#](?:[\w.-]*(?:key|token|secret|passw(?:or)?d|auth|signature|credential)[\w.-]*|sig|lsig|pot|sid|"
    r"pwd|pass|session(?:id)?)=)[^&\s'\"#<>]+")
_COOKIE_REPR = re.compile(r"""(\bvalue=)(['"])(?:\\.|(?!\2).)*\2""")
_ESCAPED_TAB_LINE = re.compile(r"""(['"])(?:(?!\1)[^\\]|\\.)*?\\t(?:(?!\1)[^\\]|\\.)*?\1""")
_TAB_LINE = re.compile(r"(?m)^([^\t\n]*(?:\t[^\t\n]*){4}\t[^\t\n]*\t)[^\n]*")
MIN_SECRET_LEN = 6  # shorter known values ("1", "en") would blank out ordinary words


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` as it may be logged or shown: every known secret value (``secrets``: cookie values, a proxy
    password), ``Cookie``/``Set-Cookie``/``Authorization`` header values, secret query values
    (``key=``, ``token=``, ``sig=``…), passwords in URLs, cookie-file lines (a tab-separated line, or
    its ``repr`` as yt-dlp's cookie loader prints it) and cookie reprs are replaced by ``***``."""
    out = redact_url(str(text))
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        out = out.replace(secret, "***")
    out = _QUOTED_HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}***{m[4]}", out)
    out = _HEADER_LINE.sub(r"\1\2***", out)
    out = _AUTH_SCHEME.sub(r"\1 ***", out)
    out = _SECRET_QUERY.sub(r"\1***", out)
    out = _COOKIE_REPR.sub(r"\1\2***\2", out)
    out = _ESCAPED_TAB_LINE.sub(r"\1***\1", out)
    return _TAB_LINE.sub(r"\1***", out)


def known_secrets(opts: Mapping[str, Any]) -> frozenset[str]:
    """The secret values a yt-dlp call carries, for :func:`redact_text`: its cookie file's values, the
    proxy's user and password, secret headers, logins and secret extractor arguments (PO tokens)."""
    out: set[str] = set()
    cookiefile = opts.get("cookiefile")
    if cookiefile:  # our private copy: a header, then clean 7-field lines (parsed here without pipeline.config.secrets)
        try:
            for line in Path(cookiefile).read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) == 7 and (not line.startswith("#") or line.startswith("#HttpOnly_")):
                    out.add(fields[6])
        except OSError:
            pass
    proxy = opts.get("proxy")
    if isinstance(proxy, str) and "@" in proxy:
        try:
            parts = urllib.parse.urlsplit(proxy)
            for v in (parts.username, parts.password):
                if v:
                    out.update({v, urllib.parse.unquote(v)})
        except ValueError:
            pass
    for key in ("username", "password", "videopassword", "ap_username", "ap_password", "twofactor"):
        if isinstance(opts.get(key), str):
            out.add(opts[key])
    for name, value in (opts.get("http_headers") or {}).items():
        if SECRET_HEADER.search(str(name)) and value:
            out.add(str(value))
            out.update(p.split("=", 1)[1].strip() for p in str(value).split(";") if "=" in p)

    def walk(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and SECRET_OPTION.search(key):
            out.update({value, value.rsplit("+", 1)[-1]})

    walk("extractor_args", opts.get("extractor_args") or {})
    return frozenset(s for s in out if len(s) >= MIN_SECRET_LEN)


class YtdlpLogger:
    """yt-dlp prints ERROR lines to stderr even when quiet; ours become typed errors, so log them at debug.

    Lines pass through :func:`redact_text`: a proxy password, a cookie value or a signed URL must not
    reach a log (the CLI prints warnings, and with ``-v`` these lines too).
    """

    def __init__(self, name: str = "tubemill.ytdlp", secrets: Iterable[str] = ()) -> None:
        self.log = logging.getLogger(name)
        self.secrets = frozenset(secrets)

    def redact(self, msg: str) -> str:
        return redact_text(msg, self.secrets)

    def debug(self, msg: str) -> None:
        self.log.debug("%s", self.redact(msg))

    def info(self, msg: str) -> None:
        self.log.debug("%s", self.redact(msg))

    def warning(self, msg: str) -> None:
        self.log.info("%s", self.redact(msg))

    def error(self, msg: str) -> None:
        self.log.info("%s", self.redact(msg))

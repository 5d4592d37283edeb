"""Checks of the download accounts: each cookie file (format, YouTube login cookies, expiry, age,
permissions), browser accounts, and proxies (shown by host; a password in a readable settings.toml
is reported). Never a cookie value or a password."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.app.doctor.check import WARN, Check, Status

COOKIE_EXPIRY_WARN_S = 7 * 86400
# What yt-dlp counts as signed in to YouTube (YoutubeBaseInfoExtractor._has_auth_cookies): LOGIN_INFO plus
# one of the SAPISID family; the SID family is shown too (its absence means an export from a signed-out tab).
YT_LOGIN_INFO = "LOGIN_INFO"
YT_SAPISID = ("SAPISID", "__Secure-1PAPISID", "__Secure-3PAPISID")
YT_SID = ("SID", "__Secure-1PSID", "__Secure-3PSID")
YT_DOMAINS = ("youtube.com",)


def cookie_facts(data: bytes) -> dict[str, Any]:
    """Counts and dates from a Netscape cookies.txt — never a cookie value.

    ``signed_in`` follows yt-dlp's own rule (LOGIN_INFO plus a SAPISID-family cookie on youtube.com).
    """
    text = data.decode("utf-8-sig", errors="replace")
    total, youtube, names, expiries = 0, 0, set(), []
    for raw in text.splitlines():
        line = raw.strip("\r\n")
        if line.startswith("#HttpOnly_"):
            line = line[len("#HttpOnly_"):]
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 7:
            continue
        total += 1
        domain, name = fields[0].lstrip(".").lower(), fields[5]
        if not any(domain == d or domain.endswith("." + d) for d in YT_DOMAINS):
            continue
        youtube += 1
        if name in (YT_LOGIN_INFO, *YT_SAPISID, *YT_SID):
            names.add(name)
            try:
                exp = float(fields[4])
            except ValueError:
                exp = 0.0
            if exp > 0:
                expiries.append(exp)
    return {"cookies": total, "youtube": youtube, "login_names": sorted(names),
            "signed_in": YT_LOGIN_INFO in names and any(n in names for n in YT_SAPISID),
            "earliest_expiry": min(expiries) if expiries else None}



def check_cookie_file(name: str, path: Path, now: float) -> Check:
    """One cookie account: readable, Netscape format, YouTube login cookies, earliest expiry, file age."""
    from pipeline.config.secrets import validate_cookie_file
    from pipeline.errors import InvalidInput

    row = f"account:{name}"
    export_fix = ("export cookies.txt again from a browser signed in to YouTube (a private window, then close it), "
                  "and add it on the Settings page")
    try:
        data = path.read_bytes()
        st = path.stat()
    except OSError as exc:
        return Check(row, False, f"cookie file unreadable: {exc.strerror or exc}", "check the path and permissions")
    try:
        validate_cookie_file(data)
    except InvalidInput as exc:
        return Check(row, False, str(exc), export_fix)
    f = cookie_facts(data)
    parts = [f"{f['cookies']} cookie(s), {f['youtube']} for youtube.com",
             f"login cookies: {', '.join(f['login_names']) or 'none'}"]
    if f["earliest_expiry"] is not None:
        parts.append(f"earliest login expiry {_day(f['earliest_expiry'])}")
    parts.append(f"file {_age(now - st.st_mtime)} old")
    problems: list[tuple[Status, str, str]] = []  # (severity, what, fix): every one is reported
    exp = f["earliest_expiry"]
    if not f["signed_in"]:
        problems.append((WARN, "not signed in to YouTube (yt-dlp needs LOGIN_INFO and SAPISID)", export_fix))
    elif exp is not None and exp <= now:
        problems.append((False, "login cookies expired", export_fix))
    elif exp is not None and exp - now < COOKIE_EXPIRY_WARN_S:
        problems.append((WARN, "login cookies expire within a week", export_fix))
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        problems.append((WARN, f"readable by other users (mode {mode:o})", f"chmod 600 {path}"))
    detail = "; ".join(parts)
    if not problems:
        return Check(row, True, detail)
    ok: Status = False if any(p[0] is False for p in problems) else WARN
    return Check(row, ok, f"{detail}: " + "; ".join(p[1] for p in problems), "; ".join(p[2] for p in problems))



def check_accounts(home: Path, settings: Any, extra: list[Path], now: float) -> list[Check]:
    from pipeline.config.secrets import list_cookie_files
    from pipeline.config.ytdlp_options import proxy_address

    rows = []
    conf: dict[str, dict[str, str]] = dict(getattr(settings, "accounts", {}) or {})
    exposed = _exposed_proxy_password(home, conf)
    files = [(c.name, c.path) for c in list_cookie_files(home, count=False)]
    files += [(p.stem, p) for p in extra]
    for name, path in files:
        row = check_cookie_file(name, path, now)
        proxy = (conf.get(name) or {}).get("proxy")
        if proxy:
            row = Check(row.name, row.ok, f"{row.detail}; proxy {proxy_address(proxy)}", row.fix)
        rows.append(_with_exposure(row, exposed if proxy else None))
    named = {n for n, _ in files}
    for name, a in conf.items():
        if name in named:
            continue
        bits = []
        if a.get("cookies_from_browser"):
            bits.append(f"cookies read from browser {a['cookies_from_browser']!r} at each download")
        if a.get("proxy"):
            bits.append(f"proxy {proxy_address(a['proxy'])}")
        if not bits:
            continue
        rows.append(_with_exposure(_browser_check(f"account:{name}", a, "; ".join(bits)),
                                   exposed if a.get("proxy") else None))
    if not rows:
        rows.append(Check("accounts", True, "no download accounts: downloads are anonymous (add a cookies.txt on the "
                                            "Settings page for signed-in downloads)"))
    return rows



def _exposed_proxy_password(home: Path, conf: dict[str, dict[str, str]]) -> str | None:
    """Why a proxy password in settings.toml is exposed (the file readable by others), or None."""
    import urllib.parse

    from pipeline.config.settings import SETTINGS_NAME

    if not any(urllib.parse.urlsplit(a.get("proxy") or "").password for a in conf.values()):
        return None
    path = home / SETTINGS_NAME
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return f"{path} holds a proxy password and is readable by other users (mode {mode:o})" if mode & 0o077 else None



def _with_exposure(row: Check, exposed: str | None) -> Check:
    if not exposed:
        return row
    fix = f"chmod 600 {exposed.split(' holds ', 1)[0]}"
    return Check(row.name, False if row.ok is False else WARN, f"{row.detail}; {exposed}",
                 f"{row.fix}; {fix}" if row.fix else fix)



def _browser_check(row: str, conf: dict[str, str], detail: str) -> Check:
    spec = conf.get("cookies_from_browser")
    if spec:
        from yt_dlp.cookies import SUPPORTED_BROWSERS

        from pipeline.config.ytdlp_options import parse_browser_spec

        browser = parse_browser_spec(spec)[0]
        if browser not in SUPPORTED_BROWSERS:
            return Check(row, False, f"{detail}: this yt-dlp cannot read {browser}",
                         f"use one of {', '.join(sorted(SUPPORTED_BROWSERS))}")
    return Check(row, True, detail)



def _age(seconds: float) -> str:
    """A file's age in the unit a person reads it in (minutes, hours, days)."""
    seconds = max(0.0, seconds)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"



def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")

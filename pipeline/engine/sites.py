"""Which site a download talks to, for pacing per (account, site).

Why: a site that rate-limits sees one identity per account, so its pushback (429s, bot
checks) should slow that account there and nowhere else; a podcast host or a NAS never
asked to be treated like YouTube. The key is decided from the source text alone (no DNS,
no request): names of one service share a key (``youtu.be`` and ``googlevideo.com`` are
``youtube.com``), and a site with its own ``[pacing.sites]`` table keys its subdomains.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Any

from pipeline.config.settings import ANY_SITE, LOCAL_SITE, PacingSettings

# One service under several names: pushback on one is pushback on all.
ALIASES = {"youtu.be": "youtube.com", "googlevideo.com": "youtube.com", "youtube-nocookie.com": "youtube.com",
           "ytimg.com": "youtube.com", "x.com": "twitter.com", "fb.watch": "facebook.com", "b23.tv": "bilibili.com",
           "vimeocdn.com": "vimeo.com", "tiktokcdn.com": "tiktok.com", "cdninstagram.com": "instagram.com",
           "sndcdn.com": "soundcloud.com"}
LOCAL_SUFFIXES = (".localhost", ".local", ".home.arpa")  # names that never leave the local network


def local_host(host: str) -> bool:
    """Loopback, the private network (RFC 1918, unique local) or link-local: never paced."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(LOCAL_SUFFIXES):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local


def site_of(source: Any, pacing: PacingSettings | None = None) -> str:
    """The pacing key of a source: ``"local"`` (files, loopback, private network), a known site's name, any
    other web host's name (without ``www.``), or ``"*"`` for text that names no web host (a bare id, a search,
    another scheme)."""
    text = str(source or "").strip().split(" ", 1)[0]
    if text.startswith("file:") or text.startswith(("/", "~", "./", "../", "\\\\")) or (
            text[:1].isalpha() and text[1:3] in (":\\", ":/")):
        return LOCAL_SITE
    if "://" not in text:
        return ANY_SITE
    try:
        parts = urllib.parse.urlsplit(text)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return ANY_SITE
    if not host or parts.scheme.lower() not in ("http", "https"):
        return ANY_SITE  # another scheme (a stream, the planner's sim://) is no plain web host: paced strictly
    if local_host(host):
        return LOCAL_SITE
    own = pacing.sites if pacing is not None else {}
    strict = pacing.strict_sites if pacing is not None else PacingSettings().strict_sites
    labels = host.split(".")
    for i in range(len(labels) - 1):  # the most specific suffix first: m.youtube.com, then youtube.com
        suffix = ".".join(labels[i:])
        if suffix in own:
            return suffix
        if suffix in ALIASES:
            return ALIASES[suffix]
        if suffix in strict:
            return suffix
    return host.removeprefix("www.")


def shown(site: str) -> str:
    """A site key for people."""
    return {ANY_SITE: "any site", LOCAL_SITE: "the local network"}.get(site, site)

"""The outbound rule of one yt-dlp call: which hosts its requests and redirect hops may reach.

A host on a loopback, link-local or private-network address (127/8, ::1, 10/8, 172.16/12, 192.168/16,
169.254/16, fc00::/7, fe80::/10, also 0/8 and ::) is refused unless the call's source is itself on such an
address *and* it is the same host (same name, or a shared address), or ``allow_private_redirects`` is on.
So a public page cannot bounce Tubemill into the LAN or to a local service, and a local server may redirect
within itself (``127.0.0.1`` → ``127.0.0.1:other-port``) but not to another local host (``127.0.0.2``, the
router). A redirect to anything but http(s) (``file:``) is refused always. Names are resolved with the
system resolver (a name that does not resolve is not refused: nothing can be reached, or a proxy resolves
it); the check happens before connecting, so DNS rebinding between check and connect is outside what it
covers.

Pure address logic, no yt-dlp: :mod:`.ytdlp_guard` applies it to every request the child sends.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse

_PRIVATE = [(ipaddress.ip_network(net), kind) for net, kind in (
    ("127.0.0.0/8", "loopback"), ("::1/128", "loopback"), ("10.0.0.0/8", "private-network"),
    ("172.16.0.0/12", "private-network"), ("192.168.0.0/16", "private-network"), ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"), ("fc00::/7", "unique-local"), ("0.0.0.0/8", "unspecified"), ("::/128", "unspecified"),
)]


def address_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """"loopback", "private-network", "link-local", "unique-local", "unspecified", or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for net, kind in _PRIVATE:
        if ip.version == net.version and ip in net:
            return kind
    return None


class Addresses:
    """Host → addresses, resolved once per call (IP literals without a lookup)."""

    def __init__(self) -> None:
        self._cache: dict[str, frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}

    def of(self, host: str) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        host = host.strip("[]").split("%", 1)[0].lower().rstrip(".")
        try:
            return frozenset([ipaddress.ip_address(host)])
        except ValueError:
            pass
        if host not in self._cache:
            if host == "localhost" or host.endswith(".localhost"):
                ips = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
            else:
                ips = set()
                try:
                    for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM):
                        ips.add(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                except (OSError, UnicodeError, ValueError):
                    pass  # does not resolve here: nothing to reach (or a proxy resolves it)
            self._cache[host] = frozenset(ips)
        return self._cache[host]


class OutboundRule:
    """Which requests one call may send (see the module docstring): private hosts only from a private
    source to that same host, or when ``allow_private``; redirects to http(s) only."""

    def __init__(self, source: str, allow_private: bool = False) -> None:
        self.addresses = Addresses()
        self.allow_private = allow_private
        try:
            parts = urllib.parse.urlsplit(source)
            self.source_host = parts.hostname if parts.scheme.lower() in ("http", "https") else None
        except ValueError:
            self.source_host = None
        src = self.addresses.of(self.source_host) if self.source_host else frozenset()
        self.source_addresses = src
        self.source_private = any(address_kind(ip) for ip in src)

    def private(self, host: str) -> tuple[str, str] | None:
        """(kind, address) when ``host`` is on a private address, else None."""
        for ip in sorted(self.addresses.of(host), key=str):
            kind = address_kind(ip)
            if kind:
                return kind, str(ip)
        return None

    def same_host(self, host: str) -> bool:
        if not self.source_host:
            return False
        if host.lower().rstrip(".") == self.source_host.lower().rstrip("."):
            return True
        return bool(self.addresses.of(host) & self.source_addresses)

    def refusal(self, url: str, redirect_from: str | None = None) -> str | None:
        """Why ``url`` may not be requested (a hop of a redirect from ``redirect_from``), or None."""
        try:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
        except ValueError:
            return f"refused a redirect to a malformed URL from {_host_of(redirect_from)}" if redirect_from else None
        scheme = parts.scheme.lower()
        if redirect_from is not None and scheme not in ("http", "https"):
            return (f"refused a redirect from {_host_of(redirect_from)} to a {scheme or 'relative'}: URL "
                    "(only http and https redirects are followed)")
        if not host or self.allow_private:
            return None
        found = self.private(host)
        if found is None or (self.source_private and self.same_host(host)):
            return None
        kind, ip = found
        what = f"a redirect from {_host_of(redirect_from)}" if redirect_from else f"a request for a source on " \
            f"{self.source_host or 'another host'}"
        why = ("the source is on another local host" if self.source_private
               else "the source is not on a local address")
        shown = host if host == ip else f"{host} ({ip})"
        return f"refused {what} to {shown}, a {kind} address: {why}; set allow_private_redirects to allow it"


def _host_of(url: str | None) -> str:
    try:
        return urllib.parse.urlsplit(url or "").hostname or "the server"
    except ValueError:
        return "the server"

"""One download identity and its pacing per site: plain data the :class:`~pipeline.engine.ratelimit.AccountPool`
steers by (the rules live there)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config.settings import ANY_SITE
from pipeline.config.ytdlp_options import proxy_address

ANONYMOUS = "anonymous"


class Lease(str):
    """An account's name bound to the site of one download: the scheduler hands these to the pool (and keeps
    one per running download), so the outcome of a download lands on the site it came from."""

    site: str

    def __new__(cls, name: str, site: str = ANY_SITE) -> Lease:
        obj = super().__new__(cls, name)
        obj.site = site
        return obj


def split(name: str) -> tuple[str, str]:
    return str(name), getattr(name, "site", ANY_SITE)


@dataclass
class SitePace:
    """One account's pacing on one site."""

    multiplier: float = 1.0
    next_ready_at: float = 0.0
    cooldown_until: float = 0.0
    cool_reason: str | None = None
    last_start: float | None = None
    last_delay: float = 0.0
    downloads: int = 0
    rate_limits: int = 0
    rate_run: int = 0  # refusals in a row here
    busy: int = field(default=0, compare=False)  # downloads running here now

    def idle(self, now: float) -> bool:
        """Nothing here a fresh state would not say (dropped when saving)."""
        return (self.multiplier == 1.0 and self.next_ready_at <= now and self.cooldown_until <= now
                and not self.busy and not self.rate_run)


SITE_FIELDS = tuple(f for f in SitePace.__dataclass_fields__ if f != "busy")


@dataclass
class Account:
    """One download identity: a cookie file (a path handed to yt-dlp, never stored or shown), or a
    browser whose cookie store yt-dlp reads (``browser``: ``"firefox"``, ``"chrome:Profile 1"``), or
    neither (anonymous); optionally behind its own ``proxy`` (a secret: shown only as ``shown_proxy``).
    One IP per identity is the point: a site that sees two accounts on one address links them.

    Pacing lives per site in ``sites``; ``multiplier``, ``next_ready_at``, ``last_start`` and
    ``last_delay`` read (and set) those of the site it used last. ``cooldown_until`` is the account's own."""

    name: str
    cookiefile: str | None = field(default=None, repr=False)
    browser: str | None = field(default=None, repr=False)
    proxy: str | None = field(default=None, repr=False)
    cooldown_until: float = 0.0
    downloads: int = 0
    failures: int = 0
    rate_limits: int = 0
    failure_run: int = 0
    disabled: str | None = None
    disabled_at: float | None = None
    cool_reason: str | None = None  # why the last cooldown started, for "waiting until … because …"
    cookie_mtime: float | None = None
    source: str = "anonymous"  # what the identity is, for display: "cookies file", "browser firefox", "anonymous"
    shown_proxy: str | None = None  # the proxy without its user and password, for display
    recent: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (host, item) of the failure run
    sites: dict[str, SitePace] = field(default_factory=dict, repr=False)
    last_site: str = ANY_SITE
    legacy: dict[str, Any] | None = field(default=None, repr=False)  # pacing of a file from before sites

    @property
    def cookies(self) -> bool:
        """Signed in (cookie file or browser): paced as a person, and refused cookies disable it."""
        return self.cookiefile is not None or self.browser is not None

    def _last(self) -> SitePace:
        return self.sites.get(self.last_site) or SitePace()

    def _set_last(self, key: str, value: Any) -> None:
        setattr(self.sites.setdefault(self.last_site, SitePace()), key, value)

    multiplier = property(lambda self: self._last().multiplier, lambda self, v: self._set_last("multiplier", v))
    next_ready_at = property(lambda self: self._last().next_ready_at,
                             lambda self, v: self._set_last("next_ready_at", v))
    last_start = property(lambda self: self._last().last_start, lambda self, v: self._set_last("last_start", v))
    last_delay = property(lambda self: self._last().last_delay, lambda self, v: self._set_last("last_delay", v))

    @property
    def busy(self) -> bool:
        return any(s.busy for s in self.sites.values())

    def reenable(self) -> None:
        """Good cookies again: enabled, with the backoff it earned forgotten."""
        self.disabled, self.disabled_at, self.failure_run = None, None, 0
        for s in self.sites.values():
            s.multiplier, s.rate_run = 1.0, 0

    def describe(self) -> None:
        """Refresh the display fields from the identity (no secret reaches them)."""
        if self.cookiefile is not None:
            self.source = "cookies file"
        elif self.browser is not None:
            self.source = f"browser {self.browser.split(':', 1)[0].split('+', 1)[0].strip().lower()}"
        else:
            self.source = "anonymous"
        self.shown_proxy = proxy_address(self.proxy)

    def state(self, now: float, site: str | None = None, *, paced: bool = True) -> tuple[str, float]:
        """(state, seconds until ready) on ``site`` (None: the site it used last), for display."""
        state, wait, _ = self.why(now, site, paced=paced)
        return state, wait

    def why(self, now: float, site: str | None = None, *, paced: bool = True,
            pace: SitePace | None = None) -> tuple[str, float, str | None]:
        """(state, seconds until ready, the cooldown's reason) on ``site`` (``pace``: its state, when known)."""
        s = pace or self.sites.get(self.last_site if site is None else site) or SitePace()
        if self.disabled:
            return "disabled", 0.0, self.disabled
        if s.busy and (paced or site is None):
            return "downloading", 0.0, None
        if self.cooldown_until > now:
            return "cooling down", self.cooldown_until - now, self.cool_reason
        if s.cooldown_until > now:
            return "cooling down", s.cooldown_until - now, s.cool_reason
        if s.next_ready_at > now:
            return "waiting", s.next_ready_at - now, None
        return "ready", 0.0, None


PERSISTED = ("cooldown_until", "downloads", "failures", "rate_limits", "failure_run", "disabled", "disabled_at",
              "cookie_mtime", "source", "shown_proxy", "cool_reason", "last_site")
LEGACY_FIELDS = ("multiplier", "next_ready_at", "last_start", "last_delay")  # per account in files from before sites

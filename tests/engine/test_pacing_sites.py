"""Pacing per (account, site): strict sites keep the account ranges, other hosts a light one, the local
network none at all; a site's pushback stays on that site; ``[pacing.sites]`` and old state files load."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import LOCAL_SITE, PacingSettings, load_settings, save_settings
from pipeline.engine.clock import FakeClock
from pipeline.engine.core import Engine
from pipeline.engine.pacing import Pacing, on_site
from pipeline.engine.ratelimit import ANONYMOUS, AccountPool, Lease, read_account_rows
from pipeline.engine.sites import site_of
from tests.conftest import fast_settings
from tests.engine.test_ratelimit import drive


class SitePool(AccountPool):
    """The real pool, noting which (account, site) started a download when (virtual time)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.starts: list[tuple[str, str, float]] = []

    def acquire(self, names: list[str], now: float) -> Any:
        acct = super().acquire(names, now)
        if acct is not None:
            self.starts.append((acct.name, getattr(names[0], "site", "*"), now))
        return acct


def test_site_keys_from_the_source_text() -> None:
    """Names of one service share a key, any other host is its own, the local network and files are "local"."""
    p = PacingSettings(sites={"nas.example": {"delay_min_s": 1}})
    cases = {
        "https://www.youtube.com/watch?v=abc": "youtube.com", "https://youtu.be/abc": "youtube.com",
        "https://rr3---sn-x.googlevideo.com/videoplayback": "youtube.com", "https://m.youtube.com/x": "youtube.com",
        "https://x.com/a/status/1": "twitter.com", "https://vimeo.com/1": "vimeo.com",
        "https://feeds.podcast.example/ep1.mp3": "feeds.podcast.example", "https://www.example.org/a": "example.org",
        "http://media.nas.example/a.mp3": "nas.example",
        "http://127.0.0.1:8080/a.mp3": LOCAL_SITE, "http://[::1]/a": LOCAL_SITE, "http://localhost/a": LOCAL_SITE,
        "http://10.1.2.3/a": LOCAL_SITE, "http://192.168.1.20/a": LOCAL_SITE, "http://172.16.0.9/a": LOCAL_SITE,
        "http://169.254.1.1/a": LOCAL_SITE, "http://nas.local/a.mp3": LOCAL_SITE,
        "file:///srv/a.mp3": LOCAL_SITE, "/srv/media/a talk.mp3": LOCAL_SITE, "~/a.mp3": LOCAL_SITE,
        "v1 sleep=1@probe_net": "*", "dQw4w9WgXcQ": "*", "sim://video/3": "*", "rtmp://live.example/x": "*",
    }
    assert {src: site_of(src, p) for src in cases} == cases
    assert p.delay_range(False, "youtube.com") == (10.0, 20.0) and p.delay_range(True, "youtube.com") == (180, 300)
    assert p.delay_range(False, "example.org") == (0.0, 1.0) and p.delay_range(True, LOCAL_SITE) == (0.0, 0.0)
    assert p.delay_range(False) == (10.0, 20.0)  # no site (the plan, old callers): the strict ranges


def test_a_429_on_one_site_never_slows_another() -> None:
    """Three refusals from YouTube slow and cool the account there only; its downloads elsewhere go on."""
    pool = AccountPool(PacingSettings(queue_aware=False, cooldown_s=600), rng=random.Random(1))
    pool.ensure(ANONYMOUS)
    yt, pod = on_site([ANONYMOUS], "youtube.com"), on_site([ANONYMOUS], "podcast.example")
    t = 0.0
    for _ in range(3):
        assert pool.acquire(yt, t) is not None
        pool.rate_limited(Lease(ANONYMOUS, "youtube.com"), t + 1, retry_after=5)
        refused = t + 1
        t = pool.next_ready(yt, t) or t
    acct = pool.get(ANONYMOUS)
    assert acct is not None
    assert acct.sites["youtube.com"].multiplier == pytest.approx(1.5 ** 3)
    assert acct.sites["youtube.com"].cooldown_until == refused + 600 and acct.cooldown_until == 0
    now = refused + 1
    assert pool.acquire(yt, now) is None
    for _ in range(5):  # the podcast host: at once, then 0-1 s apart, multiplier 1
        assert pool.acquire(pod, now) is not None, now
        pool.success(Lease(ANONYMOUS, "podcast.example"), now + 0.5)
        ready = pool.next_ready(pod, now)
        assert ready is not None and ready <= now + 1.0 + 1e-9
        now = max(ready, now + 0.5)
    assert acct.sites["podcast.example"].multiplier == 1.0
    state, wait = acct.state(now, "youtube.com")
    assert state == "cooling down" and wait > 0
    rows = {r["site"]: r for r in pool.snapshot(now)[0]["sites"]}
    assert rows["youtube.com"]["state"] == "cooling down" and rows["podcast.example"]["multiplier"] == 1.0


def test_loopback_downloads_run_back_to_back(make_engine: Callable[..., Engine], media_server: Any) -> None:
    """Two items from the loopback server, default pacing (anonymous 10-20 s on strict sites), a clock that
    never moves: both download at the same instant, and the account owes no wait on the local network."""
    from pipeline.recipes.transcribe.sources import expand

    clock = FakeClock()
    settings = fast_settings(pacing=PacingSettings())
    pool = SitePool(settings.pacing, rng=random.Random(2))
    e = make_engine(clock=clock, settings=settings, accounts=pool)
    urls = [media_server.media_url("mp3"), media_server.media_url("m4a")]
    e.submit("local", [x.to_item() for x in expand("\n".join(urls)).entries], recipe=["download"])
    s = e.wait("local", timeout=60)
    assert s.counts["done"] == 2, e.items("local")
    assert [(site, t) for _, site, t in pool.starts] == [(LOCAL_SITE, clock.now())] * 2
    acct = pool.get(ANONYMOUS)
    assert acct is not None and acct.sites[LOCAL_SITE].next_ready_at <= clock.now()
    assert acct.sites[LOCAL_SITE].downloads == 2


def test_engine_paces_youtube_while_a_podcast_host_goes_on(make_engine: Callable[..., Engine]) -> None:
    """On virtual time: a YouTube item refused twice (Retry-After 30 s) slows only YouTube; the podcast
    host's four downloads start 0-1 s apart meanwhile, and nobody spends an attempt."""
    clock = FakeClock()
    settings = fast_settings(pacing=PacingSettings(queue_aware=False), pools={"net": 4, "cpu": 2, "gpu": 0, "llm": 2})
    pool = SitePool(settings.pacing, rng=random.Random(3))
    e = make_engine(clock=clock, settings=settings, accounts=pool)
    sources = ["https://www.youtube.com/watch?v=aaaaaaaaaaa ratelimit=2@probe_net",
               *(f"https://feeds.podcast.example/ep{i}.mp3" for i in range(4))]
    e.submit("mixed", sources, recipe=["probe_net"], options={"retry_limit": 0})
    s = drive(e, clock, "mixed")
    assert s.counts["done"] == 5 and s.counts["failed"] == 0
    pod = [t for _, site, t in pool.starts if site == "feeds.podcast.example"]
    yt = [t for _, site, t in pool.starts if site == "youtube.com"]
    assert len(pod) == 4 and len(yt) == 3
    assert all(0 <= b - a <= 1.0 + 1e-6 for a, b in zip(pod, pod[1:], strict=False)), pod
    assert pod[-1] - pod[0] < yt[1] - yt[0]  # the podcast batch never waited for YouTube's backoff
    acct = pool.get(ANONYMOUS)
    assert acct is not None and acct.sites["youtube.com"].multiplier > 1.5
    assert acct.sites["feeds.podcast.example"].multiplier == 1.0


def test_settings_per_site_and_old_keys(tmp_path: Path) -> None:
    """``[pacing]`` keeps its old keys (the strict ranges); ``[pacing.sites."host"]`` overrides one site and
    survives a save; an unknown key names itself."""
    home = tmp_path / "h"
    home.mkdir()
    (home / "settings.toml").write_text(
        '[pacing]\nanon_delay_min_s = 5.0\nanon_delay_max_s = 8.0\ngeneric_delay_max_s = 2.0\n'
        '[pacing.sites."YouTube.com"]\ndelay_min_s = 60\ndelay_max_s = 90\n'
        '[pacing.sites."nas.example"]\nanon_delay_min_s = 3\n'
        '[pacing.sites.local]\ndelay_max_s = 0.5\n')
    p = load_settings(home).pacing
    assert p.delay_range(False, "vimeo.com") == (5.0, 8.0) and p.delay_range(True, "vimeo.com") == (180, 300)
    assert p.delay_range(False, "youtube.com") == (60.0, 90.0) and p.delay_range(True, "youtube.com") == (60, 90)
    assert p.delay_range(False, "nas.example") == (3.0, 3.0) and p.delay_range(True, "nas.example") == (0.0, 2.0)
    assert p.delay_range(False, "other.example") == (0.0, 2.0)
    assert p.delay_range(False, LOCAL_SITE) == (0.0, 0.5) and p.paced(LOCAL_SITE)
    assert site_of("http://cdn.nas.example/a.mp3", p) == "nas.example"
    save_settings(home, load_settings(home))
    assert load_settings(home).pacing == p
    (home / "settings.toml").write_text('[pacing.sites."a.example"]\ndelay_mni_s = 1\n')
    with pytest.raises(ValueError, match="delay_mni_s"):
        load_settings(home)
    assert not PacingSettings().paced(LOCAL_SITE) and PacingSettings().paced("example.org")


def test_a_state_file_from_before_sites_still_loads(tmp_path: Path) -> None:
    """An accounts.json with one pace per account: counters and cooldowns stay, its multiplier and wait
    carry to the strict sites (a restart does not make a flagged account hot), never to the local network."""
    t = 1_700_000_000.0
    old = {"saved_at": t, "held": None, "accounts": {ANONYMOUS: {
        "multiplier": 2.1, "next_ready_at": t + 15, "cooldown_until": 0.0, "last_start": t, "last_delay": 15.0,
        "downloads": 7, "failures": 2, "rate_limits": 2, "failure_run": 0, "disabled": None, "disabled_at": None,
        "cookie_mtime": None, "source": "anonymous", "shown_proxy": None, "cool_reason": None}}}
    (tmp_path / "accounts.json").write_text(json.dumps(old))
    pacing = Pacing(tmp_path, AccountPool(PacingSettings(queue_aware=False), rng=random.Random(4)))
    pacing.load()
    pool = pacing.accounts
    acct = pool.get(ANONYMOUS)
    assert acct is not None and acct.downloads == 7 and acct.rate_limits == 2
    assert pool.acquire(on_site([ANONYMOUS], LOCAL_SITE), t) is not None  # the local network never waited
    assert pool.acquire(on_site([ANONYMOUS], "youtube.com"), t) is None
    assert pool.next_ready(on_site([ANONYMOUS], "youtube.com"), t) == t + 15
    assert pool.draw_delay(acct, site="youtube.com") >= 10 * 2.1
    assert pool.draw_delay(acct, site="podcast.example") <= 1.0
    rows, _ = read_account_rows(tmp_path, t)
    assert rows[0]["account"] == ANONYMOUS and rows[0]["multiplier"] == 2.1
    pacing.save(t)
    saved = json.loads((tmp_path / "accounts.json").read_text())["accounts"][ANONYMOUS]
    assert "sites" in saved and saved["legacy"]["multiplier"] == 2.1
    again = AccountPool(PacingSettings())
    again.load(json.loads((tmp_path / "accounts.json").read_text()))
    assert again.next_ready(on_site([ANONYMOUS], "vimeo.com"), t) == t + 15

"""Nothing stuck: one bad URL or one flaky host never cools the account that every other download needs, and
whatever waits says why and until when, with the wait counted in the ETA (real engine, loopback server)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from pipeline.config.settings import RetryPolicy
from pipeline.engine.core import Engine
from pipeline.engine.ratelimit import ANONYMOUS
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import NO_PACING, fast_settings
from tests.media_server import MediaServer

QUICK = RetryPolicy(limit=3, base_s=0.05, cap_s=0.2, jitter=0.0, rate_limit_wait_s=0.1)
REAL_COOLING = replace(NO_PACING, failure_run=3, cooldown_s=1800.0)  # the defaults that froze a batch for 30 min


def submit(e: Engine, name: str, urls: list[str]) -> None:
    e.submit(name, [x.to_item() for x in expand("\n".join(urls)).entries], recipe="transcribe",
             options={"summarizer": "offline", "captions": "never"})


def test_one_bad_url_retried_never_cools_the_account(make_engine: Callable[..., Engine],
                                                     media_server: MediaServer) -> None:
    """A URL whose server resets every connection fails four attempts in a row on its own; the account (the
    only one) is never cooled, so the next batch's downloads run at once (they once waited 30 min)."""
    e = make_engine(settings=fast_settings(retry=QUICK, pacing=REAL_COOLING))
    t0 = time.monotonic()
    submit(e, "bad", [media_server.url("/reset-early.mp3")])
    s = e.wait("bad", timeout=60)
    assert s.state == "done" and s.counts["failed"] == 1, s
    (bad,) = e.items("bad")
    assert bad["attempts"] == 4 and bad["error"]["type"] == "NetworkError"
    acct = e.accounts.get(ANONYMOUS)
    assert acct is not None and acct.cooldown_until == 0 and acct.failures == 4
    submit(e, "next", [media_server.media_url("mp3"), media_server.media_url("m4a")])
    assert e.wait("next", timeout=60).counts["done"] == 2
    assert time.monotonic() - t0 < 60


def test_a_waiting_queue_says_who_why_and_until_when(make_engine: Callable[..., Engine],
                                                     media_server: MediaServer) -> None:
    """With the only account cooling down, the batch shows "downloads wait …: anonymous cooling down (why)"
    and its ETA includes the wait, instead of "0 running" and "ETA 2 s"."""
    e = make_engine(settings=fast_settings(retry=QUICK, pacing=REAL_COOLING))
    acct = e.accounts.ensure(ANONYMOUS)
    acct.cooldown_until = e.clock.now() + 600
    acct.cool_reason = "3 transient failures in a row on 3 items and 2 hosts"
    submit(e, "held", [media_server.media_url("mp3")])
    deadline = time.monotonic() + 10
    s = e.summary("held")
    while time.monotonic() < deadline and not s.held:
        time.sleep(0.1)
        s = e.summary("held")
    assert s.held and "anonymous cooling down" in s.held and "2 hosts" in s.held and "9m" in s.held, s.held
    assert s.eta_s is not None and s.eta_s >= 590 and s.counts["running"] == 0


def test_a_full_disk_holds_the_item_without_spending_attempts_or_cooling(make_engine: Callable[..., Engine]
                                                                         ) -> None:
    """DiskFull is our disk's trouble: the item waits (the given time) and goes on, with no attempt spent and
    nothing counted against the account."""
    from pipeline import errors
    from pipeline.engine.stage import Stage, StageResult, register

    calls: list[int] = []

    def fill(item: dict, ctx: object) -> StageResult:
        calls.append(1)
        if len(calls) < 3:
            raise errors.DiskFull("disk full while writing audio", retry_after=0.1)
        return StageResult()

    register(Stage("test_disk_full", fill, resource="net", account_bound=True))
    e = make_engine(settings=fast_settings(retry=RetryPolicy(limit=0, base_s=0.05, cap_s=0.1, jitter=0.0),
                                           pacing=REAL_COOLING))
    e.submit("disk", ["one"], recipe=["test_disk_full"])
    s = e.wait("disk", timeout=30)
    assert s.counts["done"] == 1 and len(calls) == 3, s  # retry_limit 0, yet it went on: no attempt spent
    acct = e.accounts.get(ANONYMOUS)
    assert acct is not None and acct.failures == 0 and acct.cooldown_until == 0

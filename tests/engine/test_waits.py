"""Every wait explained: each item left in a batch says why it is not running, to the owner, to a follower
(through the home's wait file) and in ``tubemill status``; the batch says why nothing runs."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import PacingSettings
from pipeline.engine.clock import FakeClock
from pipeline.engine.core import Engine
from pipeline.engine.waits import NO_ENGINE, clock_time, expand, from_files, ranges
from tests.conftest import fast_settings, wait_for


def test_a_paced_account_names_itself_its_site_and_the_time(make_engine: Callable[..., Engine],
                                                            home: Path) -> None:
    """After one YouTube download the anonymous account owes 10-20 s there: the next item says so, with the
    time; a follower engine and the wait file say the same."""
    clock = FakeClock()
    e = make_engine(clock=clock, settings=fast_settings(pacing=PacingSettings(queue_aware=False)))
    e.submit("yt", ["https://www.youtube.com/watch?v=aaaaaaaaaaa", "https://www.youtube.com/watch?v=bbbbbbbbbbb"],
             recipe=["probe_net"])
    wait_for(lambda: e.waits("yt").get(2, "").startswith("pacing:"))  # item 1 done and its pacing recorded
    acct = e.accounts.get("anonymous")
    assert acct is not None
    until = clock_time(acct.sites["youtube.com"].next_ready_at, clock.now())
    want = f"pacing: account anonymous on youtube.com until {until}"
    assert e.waits("yt") == {2: want}
    assert e.batch_wait("yt") == want
    wait_for(lambda: "anonymous waiting on youtube.com" in (e.summary("yt").held or ""))  # the pages' line
    follower = make_engine(clock=clock, takeover=False, settings=e.settings)
    assert follower.owner is False
    wait_for(lambda: follower.waits("yt") == {2: want}, timeout=10)
    assert follower.batch_wait("yt") == want
    clock.advance(30)
    assert e.wait("yt", timeout=10).counts["done"] == 2
    assert e.waits("yt") == {} and e.batch_wait("yt") is None


def test_a_retry_later_item_gives_its_retry_time(make_engine: Callable[..., Engine]) -> None:
    """A transient failure waits out its backoff (10 s here): the item says when and which attempt is next."""
    clock = FakeClock()
    e = make_engine(clock=clock)
    e.submit("r", ["v1 fail=1@probe_net", "v2 perm@probe_net"], recipe=["probe_net"])
    wait_for(lambda: e.items("r")[0]["status"] == "waiting" and e.items("r")[1]["status"] == "failed")
    due = e.items("r")[0]["next_attempt_at"]
    assert due == pytest.approx(clock.now() + 10)
    assert e.waits("r") == {1: f"retry at {clock_time(due, clock.now())} (attempt 2)"}
    assert e.batch_wait("r") == e.waits("r")[1]
    clock.advance(11)
    assert e.wait("r", timeout=10).counts["done"] == 1


def test_a_paused_batch_says_paused_also_in_status(make_engine: Callable[..., Engine], home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A batch queued paused: every item and the batch say "paused", in the engine and in ``tubemill status``
    (text: a "why waiting" per item; --json: a ``wait`` per item and for the batch)."""
    from pipeline.cli.status import cmd_status

    e = make_engine()
    e.submit("p", ["v1", "v2", "v3"], recipe="probe", paused=True)
    assert e.waits("p") == dict.fromkeys((1, 2, 3), "paused") and e.batch_wait("p") == "paused"
    wait_for(lambda: from_files(home, "p")[0] == dict.fromkeys((1, 2, 3), "paused"))
    assert cmd_status(argparse.Namespace(batch="p", json=True), home) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert doc["wait"] == "paused" and [it["wait"] for it in doc["items"]] == ["paused"] * 3
    cmd_status(argparse.Namespace(batch="p", json=False), home)
    out = capsys.readouterr().out
    assert "nothing runs: paused" in out and out.count("why waiting: paused") == 3
    e.resume("p")
    assert e.wait("p", timeout=20).counts["done"] == 3
    assert e.store is not None
    e.store.flush()  # status reads the files: let the last transitions reach them (group commit)
    cmd_status(argparse.Namespace(batch="p", json=True), home)
    doc = json.loads(capsys.readouterr().out)
    assert doc["wait"] is None and all(it["wait"] is None for it in doc["items"])


def test_busy_workers_and_no_engine(make_engine: Callable[..., Engine], home: Path) -> None:
    """Items behind busy workers say so; with no engine owning the home, they say nothing moves until one
    starts (a reader never claims a queue it cannot see)."""
    settings = fast_settings(pools={"net": 1, "cpu": 1, "gpu": 0, "llm": 1})
    e = make_engine(settings=settings)
    e.submit("busy", [f"v{i} sleep=0.6" for i in range(3)], recipe=["probe_cpu"])
    wait_for(lambda: e.summary("busy").counts["running"] == 1)
    reasons = e.waits("busy")
    assert sorted(reasons) == [2, 3] and set(reasons.values()) == {"queued: workers busy (cpu 1/1)"}
    assert e.batch_wait("busy") is None  # something runs
    e.shutdown(interrupt=True, timeout=5)
    left, batch = from_files(home, "busy")
    assert sorted(left) == [1, 2, 3] and set(left.values()) == {NO_ENGINE} and batch == NO_ENGINE


def test_ranges_round_trip() -> None:
    """Queues travel to followers as ranges of item numbers."""
    ns = [1, 2, 3, 7, 9, 10, 42]
    assert ranges(ns) == "1-3,7,9-10,42" and expand(ranges(ns)) == ns and expand("") == []

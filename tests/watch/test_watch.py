"""Subscriptions on loopback: a feed that gains entries (new ones once, old never, across a restart), a folder,
a failing check backing off with its reason, and the CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.watch import subs
from pipeline.watch.service import WatchService, attach, backoff_s
from tests.conftest import wait_for

CHANNEL = "UCabcdefghijklmnopqrstuv"
URL = f"https://www.youtube.com/channel/{CHANNEL}"


def batch_ids(engine, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [it["id"] for it in engine.items(name)]


def test_feed_gains_entries_processed_once_across_restart(home: Path, feeds, make_engine) -> None:  # type: ignore[no-untyped-def]
    feeds.videos[CHANNEL] = ["v2", "v1"]
    sub = subs.add(home, URL, every_s=3600, backfill=1, recipe="noop")
    assert sub["kind"] == "channel"
    engine = make_engine()
    svc = WatchService(engine, poll_s=0.05)
    r = svc.run_round()
    assert (r["checked"], r["new"], r["requests"]) == (1, 1, 1)  # one request: the RSS feed, newest 1 backfilled
    s = subs.get(home, sub["id"])
    assert s["batch"] and s["new_items_total"] == 1 and s["next_check"] > time.time() + 3000
    assert batch_ids(engine, s["batch"]) == ["v2"]
    assert svc.run_round()["checked"] == 0  # not due again for an hour

    feeds.videos[CHANNEL] = ["v3", "v2", "v1"]
    subs.check_now(home, sub["id"])
    assert svc.run_round()["new"] == 1
    assert batch_ids(engine, s["batch"]) == ["v2", "v3"]
    engine.wait(s["batch"], timeout=20)
    engine.shutdown()

    # A new owner (a restart): the schedule and what was seen come from the home.
    engine2 = make_engine()
    assert engine2.owner
    svc2 = attach(engine2, poll_s=0.05)
    try:
        subs.check_now(home, sub["id"])
        wait_for(lambda: subs.get(home, sub["id"])["checks"] == 3)
        assert subs.get(home, sub["id"])["last_new"] == 0  # unchanged feed: 304, nothing again
        feeds.videos[CHANNEL] = ["v4", "v3", "v2", "v1"]
        subs.check_now(home, sub["id"])
        wait_for(lambda: subs.get(home, sub["id"])["new_items_total"] == 3)
    finally:
        svc2.stop()
    assert batch_ids(engine2, s["batch"]) == ["v2", "v3", "v4"]  # v1 (before the subscription) never
    done = engine2.wait(s["batch"], timeout=20)
    assert done.counts.get("done") == 3


def test_plain_rss_feed_and_backfill_zero(home: Path, feeds, make_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import types

    import pipeline

    events: list[tuple] = []  # type: ignore[type-arg]
    fake = types.SimpleNamespace(emit=lambda h, event, payload: events.append((h, event, payload)))
    monkeypatch.setattr(pipeline, "notify", fake, raising=False)
    feeds.videos["pod.xml"] = ["e1"]
    sub = subs.add(home, f"{feeds.base}/pod.xml", every_s=60, recipe="noop")
    assert sub["kind"] == "feed"
    svc = WatchService(make_engine())
    assert svc.run_round()["new"] == 0  # backfill 0: what is there already is old
    feeds.videos["pod.xml"] = ["e2", "e1"]
    r = svc.run_round(now=time.time() + 61)
    assert r["new"] == 1
    [item] = svc.engine.items(subs.get(home, sub["id"])["batch"])
    assert item["source"] == f"{feeds.base}/media/e2.mp3" and item["title"] == "Episode e2"
    [(h, event, payload)] = events  # the round with nothing new told nobody
    assert (h, event, payload["count"], payload["subscription"]) == (home, "subscription.new_items", 1, sub["id"])
    assert payload["items"][0]["title"] == "Episode e2" and payload["batch"] == item_batch(home, sub["id"])


def item_batch(home: Path, sid: str) -> str:
    return subs.get(home, sid)["batch"]


def test_folder_watcher_waits_for_stable_files(home: Path, tmp_path: Path, make_engine) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "old.mp3").write_bytes(b"old" * 100)
    sub = subs.add(home, str(inbox), every_s=3600, recipe="noop")
    assert sub["kind"] == "folder"
    svc = WatchService(make_engine(), stable_s=0.3, poll_s=0.05)
    assert svc.run_round()["new"] == 0  # the file there before the subscription is old
    (inbox / "new.mp3").write_bytes(b"a" * 1000)
    (inbox / "notes.txt").write_text("not media")
    subs.check_now(home, sub["id"])  # its hour is up
    assert svc.run_round()["new"] == 0  # just appeared: not stable yet
    assert subs.get(home, sub["id"])["next_check"] < time.time() + 1  # looked at again soon, not in an hour
    with open(inbox / "new.mp3", "ab") as f:
        f.write(b"b" * 1000)  # still being copied in
    time.sleep(0.35)
    assert svc.run_round()["new"] == 0  # it changed since: waits again
    time.sleep(0.35)
    assert svc.run_round()["new"] == 1
    s = subs.get(home, sub["id"])
    [item] = svc.engine.items(s["batch"])
    assert item["source"] == str(inbox / "new.mp3")
    time.sleep(0.35)
    assert svc.run_round(now=time.time() + 4000)["new"] == 0  # handled once


def test_failing_check_backs_off_with_its_reason(home: Path, feeds, make_engine) -> None:  # type: ignore[no-untyped-def]
    feeds.videos[CHANNEL] = ["v1"]
    feeds.status[CHANNEL] = 503
    sub = subs.add(home, URL, every_s=60, recipe="noop")
    svc = WatchService(make_engine(), backoff_cap_s=200)
    t = time.time()
    svc.run_round(now=t)
    s = subs.get(home, sub["id"])
    assert "HTTP 503" in s["last_error"] and s["failures"] == 1 and s["next_check"] == pytest.approx(t + 60)
    svc.run_round(now=t + 60)
    s = subs.get(home, sub["id"])
    assert s["failures"] == 2 and s["next_check"] == pytest.approx(t + 60 + 120)
    svc.run_round(now=t + 180)
    s = subs.get(home, sub["id"])
    assert s["failures"] == 3 and s["next_check"] == pytest.approx(t + 180 + 200)  # capped
    assert svc.run_round(now=t + 300)["checked"] == 0  # backing off: not due
    feeds.status.pop(CHANNEL)
    svc.run_round(now=t + 400)
    s = subs.get(home, sub["id"])
    assert s["last_error"] is None and s["failures"] == 0 and s["next_check"] == pytest.approx(t + 460)
    assert [backoff_s(1800, n) for n in (1, 2, 3)] == [1800, 3600, 7200] and backoff_s(1800, 30) == 6 * 3600


def test_cli_add_list_pause_resume_check_remove(home: Path, feeds, capsys) -> None:  # type: ignore[no-untyped-def]
    h = ["--home", str(home)]
    assert main([*h, "watch", "add", URL, "--every", "2h", "--recipe", "noop", "--backfill", "3",
                 "--match-title", "talk", "-o", "language=en"]) == 0
    out = capsys.readouterr().out
    sid = out.split()[1].rstrip(":")
    s = subs.get(home, sid)
    assert (s["every_s"], s["backfill"], s["options"], s["filters"]) == (7200, 3, {"language": "en"},
                                                                          {"match_title": "talk"})
    assert main([*h, "watch", "pause", sid]) == 0 and subs.get(home, sid)["paused"]
    main([*h, "watch", "list"])
    assert "paused" in capsys.readouterr().out
    assert main([*h, "watch", "resume", sid]) == 0 and not subs.get(home, sid)["paused"]
    assert main([*h, "watch", "check", sid]) == 0 and subs.get(home, sid)["check_requested"]
    assert main([*h, "watch", "add", URL, "--recipe", "noop"]) != 0  # already subscribed
    assert main([*h, "watch", "add", "-o", "proxy_password=x", f"{feeds.base}/f.xml"]) != 0  # no secrets stored
    assert "secrets" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*h, "watch", "add", URL, "--every", "10s"])
    assert main([*h, "watch", "remove", sid]) == 0
    assert subs.list_subs(home) == [] and main([*h, "watch", "remove", sid]) != 0
    assert not os.path.exists(home / "watch" / "seen" / f"{sid}.txt")


def test_not_a_feed_is_listed_by_ytdlp(home: Path, feeds, make_engine) -> None:  # type: ignore[no-untyped-def]
    feeds.pages["talks.html"] = f'<html><body><video src="{feeds.base}/media/a.mp4"></video></body></html>'
    sub = subs.add(home, f"{feeds.base}/talks.html", every_s=60, backfill=5, recipe="noop")
    svc = WatchService(make_engine())
    assert svc.run_round()["new"] == 1
    s = subs.get(home, sub["id"])
    assert (s["last_via"], s["last_note"]) == ("yt-dlp", "not an RSS or Atom feed")
    assert svc.run_round(now=time.time() + 61)["new"] == 0

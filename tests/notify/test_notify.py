"""Notifications: a signed webhook to a loopback receiver (retries, hangs), Apprise through a fake module at
its import boundary, events from real engine batches, and no secret in any file but the secrets."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import notify
from pipeline.config.settings import NotifySettings, load_settings, save_settings
from tests.conftest import fast_settings
from tests.notify.conftest import Receiver

FAST = NotifySettings(timeout_s=1.0, max_attempts=3, backoff_s=0.05, backoff_cap_s=0.2)


def setup_home(home: Path, url: str = "", **kw: Any) -> None:
    save_settings(home, fast_settings(notify=replace(FAST, webhook_url=url, **kw)))


def log_text(home: Path) -> str:
    return (home / "notify" / "notifications.log").read_text()


def test_webhook_signature_verifies_with_the_secret_only(home: Path, receiver: Receiver) -> None:
    """The signature over timestamp.body verifies with the stored 0600 secret, fails with another or an old stamp."""
    setup_home(home, receiver.url)
    notify.emit(home, "batch.done", {"batch_id": "b1", "name": "demo", "counts": {"done": 2}})
    assert notify.flush(10)
    [(headers, body)] = receiver.requests
    secret = (home / "secrets" / "webhook_secret").read_text().strip()
    assert os.stat(home / "secrets" / "webhook_secret").st_mode & 0o777 == 0o600 and len(secret) == 64
    ts, sig = headers["x-tubemill-timestamp"], headers["x-tubemill-signature"]
    assert sig.startswith("sha256=") and headers["content-type"] == "application/json"
    assert notify.verify(secret, body, ts, sig)
    assert not notify.verify("0" * 64, body, ts, sig)
    assert not notify.verify(secret, body.replace(b"demo", b"dem0"), ts, sig)
    assert not notify.verify(secret, body, ts, sig, now=float(ts) + 3600)  # a replay an hour later
    rec = json.loads(body)
    assert rec["event"] == "batch.done" and rec["payload"]["name"] == "demo"
    assert headers["x-tubemill-delivery"] == rec["id"]


def test_rotated_secret_signs_from_then_on(home: Path, receiver: Receiver) -> None:
    """After a rotation the new key signs; the old one no longer verifies."""
    setup_home(home, receiver.url)
    old = notify.webhook_secret(home)
    new = notify.rotate_webhook_secret(home)
    notify.emit(home, "batch.done", {"name": "x"})
    assert notify.flush(10)
    [(h, body)] = receiver.requests
    assert new != old
    assert notify.verify(new, body, h["x-tubemill-timestamp"], h["x-tubemill-signature"])
    assert not notify.verify(old, body, h["x-tubemill-timestamp"], h["x-tubemill-signature"])


def test_500_then_200_is_retried_and_delivered_once(home: Path, receiver: Receiver) -> None:
    """A 500 is retried after the backoff, the 200 ends it: two requests, one delivery id, each attempt logged."""
    setup_home(home, receiver.url)
    receiver.script = [500, 200]
    notify.emit(home, "batch.failed", {"name": "demo", "counts": {"failed": 1}})
    assert notify.flush(10)
    assert len(receiver.requests) == 2
    ids = {json.loads(b)["id"] for _, b in receiver.requests}
    assert len(ids) == 1
    text = log_text(home)
    assert "attempt 1/3: HTTP 500: retry in 0.05s" in text
    assert text.count(": delivered") == 1 and "attempt 2/3: HTTP 200: delivered" in text


def test_4xx_is_not_retried_and_5xx_gives_up_bounded(home: Path, receiver: Receiver) -> None:
    """A 404 is final at once; endless 503s stop after max_attempts."""
    setup_home(home, receiver.url)
    receiver.script = [404]
    notify.emit(home, "batch.done", {"name": "a"})
    assert notify.flush(10)
    assert len(receiver.requests) == 1 and "HTTP 404 (not retried): given up" in log_text(home)
    receiver.script = [503] * 10
    notify.emit(home, "batch.done", {"name": "b"})
    assert notify.flush(10)
    assert len(receiver.requests) == 1 + 3 and "attempt 3/3: HTTP 503: given up" in log_text(home)


def test_hanging_receiver_never_blocks_the_engine(home: Path, receiver: Receiver, make_engine: Any) -> None:
    """While the receiver hangs, emit returns at once and a batch finishes on time; the attempt times out."""
    setup_home(home, receiver.url, timeout_s=1.5, max_attempts=1)
    receiver.script = ["hang"] * 5
    t0 = time.monotonic()
    for i in range(20):
        notify.emit(home, "subscription.new_items", {"sub_id": f"s{i}", "count": 1})
    emit_s = time.monotonic() - t0
    e = make_engine(settings=load_settings(home))
    t0 = time.monotonic()
    bid = e.submit("during-hang", [f"v{i}" for i in range(4)], recipe=["probe_cpu"])
    s = e.wait(bid, timeout=10)
    batch_s = time.monotonic() - t0
    assert s.state == "done" and s.counts["done"] == 4
    assert emit_s < 0.05, f"20 emits took {emit_s:.3f}s"
    assert batch_s < 1.5, f"the batch took {batch_s:.2f}s while the receiver hung"
    assert notify.flush(15)
    assert "timed out after 1.5s" in log_text(home)


def test_real_engine_batches_emit_done_and_failed(home: Path, receiver: Receiver, make_engine: Any) -> None:
    """A clean probe batch sends batch.done, one with a permanent failure batch.failed; both are toast events."""
    setup_home(home, receiver.url)
    e = make_engine(settings=load_settings(home))
    ok = e.submit("clean", ["a", "b"], recipe=["probe_cpu", "noop_llm"])
    assert e.wait(ok, timeout=10).state == "done"
    bad = e.submit("broken", ["x perm@probe_cpu", "y"], recipe=["probe_cpu"])
    assert e.wait(bad, timeout=10).state == "done"
    assert notify.flush(10)
    got = {json.loads(b)["payload"]["name"]: json.loads(b) for _, b in receiver.requests}
    assert got["clean"]["event"] == "batch.done" and got["clean"]["payload"]["counts"]["done"] == 2
    assert got["clean"]["payload"]["batch_id"] == ok
    assert got["broken"]["event"] == "batch.failed" and got["broken"]["payload"]["counts"]["failed"] == 1
    assert [r["event"] for r in notify.read_events(home)] == ["batch.done", "batch.failed"]
    assert notify.read_events(home, after=notify.read_events(home)[-1]["time"]) == []


def test_stop_on_error_sends_batch_failed(home: Path, receiver: Receiver, make_engine: Any) -> None:
    """on_error=stop pauses the batch on the first failure and says so as batch.failed with the reason."""
    setup_home(home, receiver.url)
    e = make_engine(settings=load_settings(home))
    bid = e.submit("halt", ["x perm@probe_cpu"], recipe=["probe_cpu"], options={"on_error": "stop"})
    e.wait(bid, timeout=10)
    time.sleep(0.3)  # the finishing hook runs on its own thread after the wait sees every item done
    assert notify.flush(10)
    [(_, body)] = receiver.requests  # the batch then finishing with nothing new sends nothing more
    rec = json.loads(body)
    assert rec["event"] == "batch.failed" and rec["payload"]["reason"] == "stopped: item 1 failed"


def test_held_for_long_is_reported_once(home: Path) -> None:
    """A batch held past held_after_s is reported once; moving again resets it; a paused one is not held."""
    setup_home(home, held_after_s=10)
    for now in (100.0, 105.0, 111.0, 120.0):
        notify.note_held(home, "b1", "slow", "governor: free RAM 200 MB < 1024 MB", now)
    notify.note_held(home, "b1", "slow", None, 121.0)
    notify.note_held(home, "b1", "slow", "downloads wait 5m", 122.0)
    notify.note_held(home, "b1", "slow", "downloads wait 5m", 131.0)
    assert notify.flush(10)
    held = [r for r in notify.read_events(home) if r["event"] == "batch.held"]
    assert [r["payload"]["held_s"] for r in held] == [11.0]
    assert held[0]["payload"]["reason"].startswith("governor")


class FakeApprise:
    """The two calls we make of apprise.Apprise, with its real return types (add -> bool, notify -> bool)."""

    sent: list[tuple[str, str]] = []
    answers: list[bool] = []

    def __init__(self) -> None:
        self.urls: list[str] = []

    def add(self, url: str) -> bool:
        ok = "://" in url
        if ok:
            self.urls.append(url)
        return ok

    def notify(self, title: str, body: str) -> bool:
        FakeApprise.sent.append((title, body))
        return FakeApprise.answers.pop(0) if FakeApprise.answers else True


def test_apprise_when_importable_with_retry(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With apprise importable the URLs (a 0600 secret) are notified; a False answer is retried."""
    monkeypatch.setitem(sys.modules, "apprise", type(sys)("apprise"))
    sys.modules["apprise"].Apprise = FakeApprise  # type: ignore[attr-defined]
    FakeApprise.sent, FakeApprise.answers = [], [False, True]
    setup_home(home)
    assert notify.set_apprise_urls(home, "tgram://BOTTOKEN999/123 mailto://user:MAILPASS777@example.com") == [
        "tgram://BOTTOKEN999/123", "mailto://user:MAILPASS777@example.com"]
    assert "BOTTOKEN999" not in (home / "settings.toml").read_text()
    notify.emit(home, "batch.done", {"name": "clip", "counts": {"done": 3}})
    assert notify.flush(10)
    assert FakeApprise.sent == [("Tubemill: clip done", "Batch clip finished: 3 done.")] * 2
    text = log_text(home)
    assert "apprise 2 URL(s) attempt 1/3: apprise, 2 URL(s): not sent: retry" in text
    assert "attempt 2/3: apprise, 2 URL(s): sent: delivered" in text
    assert "BOTTOKEN999" not in text and "MAILPASS777" not in text


def test_apprise_absent_is_said_not_raised(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apprise URLs set without the package: the log says so, nothing raises, the webhook-less event is kept."""
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    setup_home(home)
    notify.set_apprise_urls(home, ["tgram://BOTTOKEN999/123"])
    notify.emit(home, "batch.done", {"name": "clip"})
    assert notify.flush(10)
    assert "apprise URLs are set but apprise is not installed" in log_text(home)
    assert notify.read_events(home)[0]["event"] == "batch.done"


def test_no_secret_outside_the_secrets_folder(home: Path, receiver: Receiver, make_engine: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing key, signatures, Apprise tokens and the webhook's path never land in the log, events or state."""
    monkeypatch.setitem(sys.modules, "apprise", type(sys)("apprise"))
    sys.modules["apprise"].Apprise = FakeApprise  # type: ignore[attr-defined]
    FakeApprise.answers = []
    setup_home(home, receiver.url)
    notify.set_apprise_urls(home, ["tgram://BOTTOKEN999/123"])
    receiver.script = [500, 200]
    e = make_engine(settings=load_settings(home))
    assert e.wait(e.submit("leak", ["a"], recipe=["probe_cpu"]), timeout=10).state == "done"
    assert notify.flush(10)
    e.shutdown(timeout=5)
    secret = notify.webhook_secret(home)
    sigs = [h["x-tubemill-signature"].removeprefix("sha256=") for h, _ in receiver.requests]
    assert len(sigs) == 2
    hay = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and "secrets" not in p.parts}
    assert any(p.name == "notifications.log" for p in hay)
    for needle in [secret, *sigs, "BOTTOKEN999", "PATHTOKEN123"]:
        # the webhook URL itself is a setting (settings.toml); its path stays out of everything else
        leaks = [str(p) for p, data in hay.items() if needle.encode() in data
                 and not (needle == "PATHTOKEN123" and p.name == "settings.toml")]
        assert not leaks, f"{needle[:12]}… found in {leaks}"
    assert "http://127.0.0.1:" in log_text(home) and "/…" in log_text(home)


def test_notify_section_round_trips_through_settings_toml(home: Path) -> None:
    """[notify] is saved and read back like the other sections; an unknown event is refused by name."""
    save_settings(home, fast_settings(notify=NotifySettings(webhook_url="https://example.com/h", held_after_s=60,
                                                            events=("batch.done",))))
    text = (home / "settings.toml").read_text()
    assert "[notify]" in text and 'webhook_url = "https://example.com/h"' in text
    conf = load_settings(home).notify
    assert conf.webhook_url == "https://example.com/h" and conf.held_after_s == 60 and conf.events == ("batch.done",)
    (home / "settings.toml").write_text('[notify]\nevents = ["batch.exploded"]\n')
    with pytest.raises(ValueError, match="batch.exploded"):
        load_settings(home)


def test_real_engine_batch_held_by_the_governor(home: Path, receiver: Receiver, make_engine: Any) -> None:
    """A batch the governor holds (low RAM) past held_after_s sends one batch.held with the reason; freed, it ends."""
    from pipeline.config.settings import GovernorSettings
    from pipeline.engine.governor import Governor, Readings

    setup_home(home, receiver.url, held_after_s=1.0, events=("batch.held",))
    ram = {"mb": 100.0}
    gov = Governor(home / "output", GovernorSettings(min_free_ram_mb=500, min_free_disk_mb=0, cache_s=0.0),
                   probe=lambda: Readings(ram_total_mb=8000, ram_available_mb=ram["mb"], disk_free_mb=50_000,
                                          cpu_percent=5.0, gpus=[], gpu_error="no GPU in test"))
    e = make_engine(settings=load_settings(home), governor=gov)
    bid = e.submit("starved", ["a", "b"], recipe=["probe_cpu"])
    deadline = time.monotonic() + 10
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # held on: still one event, not one a second
    ram["mb"] = 4000.0
    assert e.wait(bid, timeout=10).counts["done"] == 2
    assert notify.flush(10)
    [(_, body)] = receiver.requests  # batch.done is not in events: filtered
    rec = json.loads(body)
    assert rec["event"] == "batch.held" and rec["payload"]["batch_id"] == bid
    assert "free RAM 100 MB is below 500 MB" in rec["payload"]["reason"] and rec["payload"]["held_s"] >= 1.0


def test_a_process_exiting_right_after_emit_still_delivers_with_retry(home: Path, receiver: Receiver) -> None:
    """A CLI run ends right after batch.done: the exit drain still sends it, through a 500 and its retry."""
    import subprocess

    from tests.conftest import ROOT

    setup_home(home, receiver.url)
    receiver.script = [500, 200]
    code = f"from pipeline import notify; notify.emit({str(home)!r}, 'batch.done', {{'name': 'cli'}})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)
    assert [json.loads(b)["payload"]["name"] for _, b in receiver.requests] == ["cli", "cli"]
    assert "attempt 2/3: HTTP 200: delivered" in log_text(home)

"""Download accounts: pacing, backoff, cooldown, auth failures and the queue-aware pace.

The pool's own rules are checked on explicit times; the engine's use of it on a
``FakeClock`` (no real sleeping) with probe stages (``probe_net`` is account-bound),
and once through the real download stage against the loopback server.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config.settings import PacingSettings
from pipeline.engine.clock import FakeClock
from pipeline.engine.core import Engine
from pipeline.engine.ratelimit import ANONYMOUS, AccountPool, read_account_rows
from tests.conftest import NO_PACING, fast_settings

COOKIE = "# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t2000000000\tacct\t{name}\n"


def pool(**kw: Any) -> AccountPool:
    p = AccountPool(PacingSettings(**kw), rng=random.Random(7))
    p.ensure("alice", "/c/alice.txt", 1.0)
    p.ensure("bob", "/c/bob.txt", 1.0)
    p.ensure(ANONYMOUS)
    return p


# ---------------------------------------------------------------------------------------------- the pool's rules
def test_spacing_is_random_within_range_start_to_start() -> None:
    p = pool(queue_aware=False)
    now, starts, delays = 0.0, [], []
    for _ in range(200):
        a = p.acquire(["alice"], now)
        assert a is not None
        starts.append(now)
        p.success("alice", now + 5.0)  # a 5 s download
        now = p.get("alice").next_ready_at  # type: ignore[union-attr]
        delays.append(now - starts[-1])
    assert all(180 <= d <= 300 for d in delays)
    assert max(delays) - min(delays) > 60, "the delay must vary (a fixed period looks scripted)"
    anon = pool(queue_aware=False)
    a = anon.acquire([ANONYMOUS], 0.0)
    anon.success(ANONYMOUS, 1.0)
    assert 10 <= anon.get(ANONYMOUS).next_ready_at <= 20  # type: ignore[union-attr]


def test_one_download_per_account_and_the_idle_one_goes_first() -> None:
    p = pool()
    first = p.acquire(["alice", "bob"], 0.0)
    second = p.acquire(["alice", "bob"], 0.0)
    assert first and second and first.name != second.name
    assert p.acquire(["alice", "bob"], 0.0) is None  # both busy, however long we wait
    assert p.acquire(["alice", "bob"], 10_000.0) is None
    assert p.next_ready(["alice", "bob"], 0.0) is None


def test_429_multiplies_the_delay_honours_retry_after_and_success_decays_it() -> None:
    p = pool(queue_aware=False)
    p.acquire(["alice"], 0.0)
    p.rate_limited("alice", 10.0, retry_after=None)
    a = p.get("alice")
    assert a is not None and a.multiplier == pytest.approx(1.5)
    assert 10 + 180 * 1.5 <= a.next_ready_at <= 10 + 300 * 1.5
    p.acquire(["alice"], a.next_ready_at)
    p.rate_limited("alice", a.next_ready_at, retry_after=3600)
    assert a.multiplier == pytest.approx(2.25) and a.next_ready_at >= a.last_start + 3600  # type: ignore[operator]
    m = a.multiplier
    for _ in range(5):
        t = max(a.next_ready_at, a.cooldown_until)
        assert p.acquire(["alice"], t) is not None
        p.success("alice", t + 1)
        assert 180 * a.multiplier <= a.next_ready_at - t <= 300 * a.multiplier
    assert 1.0 < a.multiplier < m  # decays slowly, not at once
    for _ in range(200):
        p.acquire(["alice"], 1e9)
        p.success("alice", 1e9)
        p.get("alice").next_ready_at = 0  # type: ignore[union-attr]
    assert a.multiplier == 1.0


def test_a_run_of_failures_cools_the_account_down() -> None:
    """Transient failures in a row over several items and hosts are the account's trouble: it cools down, and
    says why. The same number on one item (a bad URL retried) or on one host (a flaky server) is not."""
    p = pool(failure_run=3, cooldown_s=1800, queue_aware=False)
    t = 0.0
    for i, host in enumerate(("a.example", "b.example", "a.example")):
        a = p.get("bob")
        t = max(t, a.next_ready_at)  # type: ignore[union-attr]
        assert p.acquire(["bob"], t) is not None
        p.failure("bob", t + 1, host=host, item=f"b:{i}")
    bob = p.get("bob")
    assert bob is not None and bob.cooldown_until == pytest.approx(t + 1 + 1800)
    assert bob.state(t + 2)[0] == "cooling down" and "3 items and 2 hosts" in (bob.cool_reason or "")
    wait, why = p.wait_reason(["bob"], t + 2)  # type: ignore[misc]
    assert wait == pytest.approx(1799) and "bob cooling down" in why and "2 hosts" in why
    for spread in ([("x.example", "b:1")] * 6, [("x.example", f"b:{i}") for i in range(6)]):
        r = pool(failure_run=3, cooldown_s=1800)
        for host, item in spread:
            r.acquire(["bob"], 1e6)
            r.failure("bob", 1e6, host=host, item=item)
            r.get("bob").next_ready_at = 0  # type: ignore[union-attr]
        assert r.get("bob").cooldown_until == 0, spread  # type: ignore[union-attr]
    assert p.acquire(["bob"], t + 1000) is None and p.acquire(["bob"], t + 1802) is not None
    # permanent errors (404s) are the video's fault, not the account's: they do not count
    q = pool(failure_run=2)
    for _ in range(5):
        q.acquire(["bob"], 1e6)
        q.failure("bob", 1e6, counts=False)
        q.get("bob").next_ready_at = 0  # type: ignore[union-attr]
    assert q.get("bob").cooldown_until == 0  # type: ignore[union-attr]


def test_auth_failure_disables_until_the_cookie_file_changes() -> None:
    p = pool()
    p.acquire(["bob"], 0.0)
    p.auth_failed("bob", 1.0, "HTTP 403")
    assert p.enabled(["alice", "bob"]) == ["alice"]
    assert p.acquire(["bob"], 1e9) is None
    assert p.get("bob").state(5.0)[0] == "disabled"  # type: ignore[union-attr]
    p.ensure("bob", "/c/bob.txt", 1.0)  # same file: still disabled
    assert p.enabled(["bob"]) == []
    p.ensure("bob", "/c/bob.txt", 2.0)  # the user exported fresh cookies
    assert p.enabled(["bob"]) == ["bob"]


def test_queue_aware_pace_and_hold() -> None:
    p = pool(min_buffer=20, target_buffer=50, max_buffer=100)
    alice = p.get("alice")
    assert alice is not None
    assert p.draw_delay(alice, buffer=3) == 180  # starving transcriber: the fast end
    mid = [p.draw_delay(alice, buffer=30) for _ in range(200)]
    assert min(mid) < 240 < max(mid)
    assert all(240 <= p.draw_delay(alice, buffer=60) <= 300 for _ in range(100))
    assert p.hold_reason(99) is None
    assert "max_buffer 100" in (p.hold_reason(100) or "")
    assert p.hold_reason(5, disk_free_mb=2100, floor_mb=2048, download_mb=80.0) is not None  # would cross the floor
    assert p.hold_reason(5, disk_free_mb=5000, floor_mb=2048, download_mb=80.0) is None
    off = pool(queue_aware=False)
    assert off.hold_reason(10_000) is None


def test_fast_first_phase_is_an_option() -> None:
    p = pool(fast_start_items=2, fast_start_factor=0.25, queue_aware=False)
    a = p.get("alice")
    assert a is not None
    assert all(45 <= p.draw_delay(a) <= 75 for _ in range(50))
    a.downloads = 2
    assert all(180 <= p.draw_delay(a) <= 300 for _ in range(50))
    assert PacingSettings().fast_start_items == 0  # not the default


def test_state_round_trips_without_cookie_paths(tmp_path: Path) -> None:
    from pipeline.engine.ratelimit import save_accounts

    p = pool()
    p.acquire(["alice"], 0.0)
    p.rate_limited("alice", 1.0, 60)
    p.auth_failed("bob", 2.0, "HTTP 401")
    save_accounts(tmp_path, p, 3.0)
    raw = (tmp_path / "accounts.json").read_text()
    assert "/c/alice.txt" not in raw and "cookiefile" not in raw
    rows, held = read_account_rows(tmp_path, 3.0)
    by = {r["account"]: r for r in rows}
    assert by["alice"]["state"] == "waiting" and by["alice"]["multiplier"] == 1.5 and by["alice"]["rate_limits"] == 1
    assert by["bob"]["state"] == "disabled"
    q = AccountPool()
    q.load(json.loads(raw))
    q.ensure("alice", "/c/alice.txt", 1.0)
    assert q.get("alice").multiplier == 1.5 and q.get("alice").cookiefile == "/c/alice.txt"  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------- in the engine
class SpyPool(AccountPool):
    """The real pool, noting which account started a download when (virtual time)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.starts: list[tuple[str, float]] = []

    def acquire(self, names: list[str], now: float) -> Any:
        acct = super().acquire(names, now)
        if acct is not None:
            self.starts.append((acct.name, now))
        return acct


def cookie_files(tmp_path: Path, *names: str) -> dict[str, str]:
    out = {}
    for name in names:
        path = tmp_path / f"{name}.txt"
        path.write_text(COOKIE.format(name=name))
        out[name] = str(path)
    return out


def drive(e: Engine, clock: FakeClock, ref: str, timeout: float = 30.0) -> Any:
    """Run the batch on virtual time: whenever nothing runs, jump the clock to the next wake-up."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        s = e.summary(ref)
        if s.state in ("done", "cancelled") and not s.counts.get("running"):
            return s
        if any(p.busy for p in e.pools()) or s.counts.get("running"):
            quiet = 0
            time.sleep(0.005)
            continue
        quiet += 1
        if quiet < 3:
            e.kick()
            time.sleep(0.01)
            continue
        wake = e.next_wakeup(clock.now())
        if wake is not None and wake > clock.now():
            clock.set(wake)
        else:
            time.sleep(0.01)
        quiet = 0
    raise AssertionError(f"batch {ref} did not finish: {e.summary(ref).counts}")


def paced_engine(make_engine: Callable[..., Engine], **pacing: Any) -> tuple[Engine, FakeClock, SpyPool]:
    clock = FakeClock()
    settings = fast_settings(pacing=PacingSettings(**{"queue_aware": False, **pacing}),
                             pools={"net": 4, "cpu": 2, "gpu": 0, "llm": 2})
    spy = SpyPool(settings.pacing, rng=random.Random(3))
    return make_engine(clock=clock, settings=settings, accounts=spy), clock, spy


def test_engine_spaces_each_accounts_downloads(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    e, clock, spy = paced_engine(make_engine)
    t0 = clock.now()
    e.submit("b", [f"v{i}" for i in range(12)], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob")})
    s = drive(e, clock, "b")
    assert s.counts["done"] == 12
    per: dict[str, list[float]] = {}
    for name, t in spy.starts:
        per.setdefault(name, []).append(t)
    assert sorted(per) == ["alice", "bob"] and all(len(v) == 6 for v in per.values())
    for times in per.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert all(180 - 1e-6 <= g <= 300 + 1e-6 for g in gaps), gaps
    # two accounts at 3-5 min: about 6 x 240 s, not 12 x 240 s
    assert 5 * 180 <= clock.now() - t0 <= 5 * 300 + 60
    assert {it["account"] for it in e.items("b")} == {"alice", "bob"}


def test_throttled_account_slows_while_the_other_keeps_going(make_engine: Callable[..., Engine],
                                                             tmp_path: Path) -> None:
    """Every download on alice gets a 429: alice backs off, bob does the work, nobody spends an attempt."""
    e, clock, spy = paced_engine(make_engine)
    e.submit("b", [f"v{i} throttle=alice@probe_net" for i in range(8)], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob"), "retry_limit": 0})
    s = drive(e, clock, "b")
    assert s.counts["done"] == 8 and s.counts["failed"] == 0  # retry_limit 0: any spent attempt would fail
    rows = {r["account"]: r for r in e.accounts_snapshot()[0]}
    assert rows["alice"]["rate_limits"] >= 2 and rows["alice"]["downloads"] == 0
    assert rows["alice"]["multiplier"] >= 1.5 ** 2
    assert rows["bob"]["downloads"] == 8 and rows["bob"]["multiplier"] == 1.0
    alice = [t for n, t in spy.starts if n == "alice"]
    gaps = [b - a for a, b in zip(alice, alice[1:], strict=False)]
    assert gaps and all(g2 >= g1 * 1.1 for g1, g2 in zip(gaps, gaps[1:], strict=False))
    assert all(g >= 180 * 1.5 for g in gaps)  # every retry on alice waited longer than the plain range


def test_auth_failure_disables_the_account_and_moves_its_queue(make_engine: Callable[..., Engine],
                                                               tmp_path: Path) -> None:
    e, clock, spy = paced_engine(make_engine)
    e.submit("b", [f"v{i} refuse=bob@probe_net" for i in range(6)], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob"), "retry_limit": 0})
    s = drive(e, clock, "b")
    assert s.counts["done"] == 6
    rows = {r["account"]: r for r in e.accounts_snapshot()[0]}
    assert rows["bob"]["state"] == "disabled" and rows["bob"]["downloads"] == 0
    assert [n for n, _ in spy.starts].count("bob") == 1  # refused once, never asked again
    assert rows["alice"]["downloads"] == 6


def test_all_accounts_disabled_fails_the_downloads_clearly(make_engine: Callable[..., Engine],
                                                           tmp_path: Path) -> None:
    e, clock, _ = paced_engine(make_engine)
    e.submit("b", [f"v{i} refuse=alice,bob@probe_net" for i in range(4)], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob")})
    s = drive(e, clock, "b")
    assert s.counts["failed"] == 4 and s.state == "done"
    errs = {it["error"]["type"] for it in e.items("b")}
    assert errs == {"AuthFailed"}
    assert any("every download account" in it["error"]["message"] for it in e.items("b"))


def test_never_two_downloads_at_once_on_one_account(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    journal = tmp_path / "journal.txt"
    settings = fast_settings(pacing=NO_PACING, pools={"net": 4, "cpu": 2, "gpu": 0, "llm": 2})
    e = make_engine(settings=settings)
    e.submit("b", [f"v{i} sleep=0.05@probe_net" for i in range(10)], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob"), "journal": str(journal)})
    assert e.wait("b", timeout=30).counts["done"] == 10
    spans: dict[str, list[tuple[float, float]]] = {}
    open_: dict[int, tuple[str, float]] = {}
    for line in journal.read_text().splitlines():
        n, stage, event, account, t = line.split()
        if stage != "probe_net":
            continue
        if event == "start":
            open_[int(n)] = (account, float(t))
        elif event == "done":
            acct, t0 = open_.pop(int(n))
            spans.setdefault(acct, []).append((t0, float(t)))
    assert sorted(spans) == ["alice", "bob"]
    for s in spans.values():
        s.sort()
        assert all(b0 >= a1 for (_, a1), (b0, _) in zip(s, s[1:], strict=False)), "overlapping downloads"


def test_queue_aware_hold_bounds_the_buffer(make_engine: Callable[..., Engine]) -> None:
    """With max_buffer=3, downloaded-but-not-transcribed items never exceed 3 (+1 in flight)."""
    settings = fast_settings(pacing=PacingSettings(anon_delay_min_s=0, anon_delay_max_s=0, min_buffer=1,
                                                   target_buffer=2, max_buffer=3),
                             pools={"net": 4, "cpu": 1, "gpu": 0, "llm": 2})
    e = make_engine(settings=settings)
    e.submit("b", [f"v{i} sleep=0.05@probe_cpu" for i in range(12)], recipe="probe")
    peak, held_seen = 0, False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        items = e.items("b")
        buffered = sum(1 for it in items if it.get("stage_index") == 1 and it["status"] != "done")
        peak = max(peak, buffered)
        held_seen |= bool(e.accounts_snapshot()[1])
        if all(it["status"] == "done" for it in items):
            break
        time.sleep(0.005)
    assert all(it["status"] == "done" for it in e.items("b"))
    assert peak <= 4 and held_seen


def test_status_shows_accounts_from_another_process(make_engine: Callable[..., Engine], tmp_path: Path,
                                                    home: Path) -> None:
    e, clock, _ = paced_engine(make_engine)
    e.submit("b", ["v1 throttle=alice@probe_net", "v2"], recipe="probe",
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob")})
    drive(e, clock, "b")
    e.shutdown()
    data = json.loads((home / "accounts.json").read_text())
    assert "alice" in data["accounts"] and str(tmp_path) not in json.dumps(data)
    rows, _ = read_account_rows(home, clock.now())
    assert {r["account"] for r in rows} >= {"alice", "bob"}


def test_loopback_429_slows_one_account_while_the_other_downloads(
        make_engine: Callable[..., Engine], media_server: Any, media_files: dict[str, Path], tmp_path: Path) -> None:
    """Real yt-dlp, real cookies: the server throttles alice's cookie with 429s; bob downloads everything."""
    from pipeline.recipes.transcribe.sources import expand

    mp3 = media_files["mp3"].read_bytes()
    seen: list[str] = []

    def route(req: Any) -> None:
        cookie = req.headers.get("Cookie") or ""
        seen.append(cookie)
        if "acct=alice" in cookie:
            req.send_status(429, headers={"Retry-After": "1"})
        else:
            req.send_bytes(mp3, "audio/mpeg")

    urls = []
    for i in range(5):
        media_server.add_route(f"/acct/talk{i}.mp3", route)
        urls.append(media_server.url(f"/acct/talk{i}.mp3"))
    pacing = PacingSettings(cookie_delay_min_s=0.2, cookie_delay_max_s=0.4, cooldown_s=60)
    e = make_engine(settings=fast_settings(pacing=pacing))
    items = [x.to_item() for x in expand("\n".join(urls)).entries]
    e.submit("b", items, recipe=["download"],
             options={"cookie_files": cookie_files(tmp_path, "alice", "bob"), "retry_limit": 0})
    s = e.wait("b", timeout=90)
    assert s.counts["done"] == 5, e.items("b")
    rows = {r["account"]: r for r in e.accounts_snapshot()[0]}
    assert rows["alice"]["rate_limits"] >= 1 and rows["alice"]["downloads"] == 0
    assert rows["alice"]["multiplier"] > 1.0
    assert rows["bob"]["downloads"] == 5
    assert any("acct=bob" in c for c in seen) and any("acct=alice" in c for c in seen)
    assert {it["account"] for it in e.items("b")} == {"bob"}


def test_cli_cookies_files_and_folders(home: Path, tmp_path: Path) -> None:
    """--cookies takes files and folders (each checked first); status shows every account's pacing."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    jar = tmp_path / "jar"
    jar.mkdir()
    cookie_files(jar, "alice", "bob")
    src = tmp_path / "src.txt"
    src.write_text("".join(f"v{i}\n" for i in range(4)))

    def tm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, env=cli_env(home),
                              capture_output=True, text=True, timeout=120)

    bad = tmp_path / "bad.txt"
    bad.write_text('[{"name": "x"}]')
    res = tm("run", str(src), "--recipe", "probe", "--cookies", str(bad))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "JSON cookie export" in res.stderr
    res = tm("run", str(src), "--recipe", "probe", "--cookies", str(tmp_path / "nope"))
    assert res.returncode == 2 and "no such file" in res.stderr
    res = tm("run", str(src), "--recipe", "probe", "--cookies", str(jar))
    assert res.returncode == 0, res.stderr
    st = tm("status")
    assert "download accounts:" in st.stdout and "alice" in st.stdout and "bob" in st.stdout
    doc = json.loads(tm("status", "--json").stdout)
    rows = {r["account"]: r for r in doc["accounts"]}
    assert rows["alice"]["downloads"] + rows["bob"]["downloads"] == 4
    batch = json.loads(tm("status", "src", "--json").stdout)["batch"]
    assert {r["account"] for r in batch["download_accounts"]} >= {"alice", "bob"}
    manifest = (home / "output" / "src" / "manifest.json").read_text()
    assert str(jar) not in manifest  # cookie paths are not repeated in exports


def test_downloads_hold_while_another_would_fill_the_disk(make_engine: Callable[..., Engine], home: Path) -> None:
    """Free disk barely above the floor: downloads wait (with the reason shown), then go when space returns."""
    from pipeline.config.settings import GovernorSettings
    from pipeline.engine.governor import Governor, Readings

    disk = {"free": 2100.0}

    def probe() -> Readings:
        return Readings(ram_total_mb=8000, ram_available_mb=8000, disk_free_mb=disk["free"], cpu_percent=1.0)

    gs = GovernorSettings(min_free_ram_mb=0, min_free_disk_mb=2048, min_free_gpu_mb=0, cache_s=0)
    settings = fast_settings(governor=gs)
    e = make_engine(settings=settings, governor=Governor(home, gs, probe=probe))
    e.submit("b", ["v1", "v2"], recipe="probe")
    time.sleep(0.8)
    assert e.summary("b").counts["done"] == 0
    held = e.accounts_snapshot()[1]
    assert held and "would not hold another download" in held
    deadline = time.monotonic() + 5
    while "downloads:" not in (e.summary("b").held or "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "downloads:" in (e.summary("b").held or "")  # the batch says why it is not moving
    disk["free"] = 50_000.0
    assert e.wait("b", timeout=10).counts["done"] == 2
    assert e.accounts_snapshot()[1] is None


# ---------------------------------------------------------------------------------------------- browsers and proxies
def test_browser_and_proxy_accounts_in_the_pool(home: Path) -> None:
    """A browser account is signed in (cookie pacing); rows show its kind and proxy host, never the password,
    and another process reads the same from accounts.json."""
    from pipeline.engine.ratelimit import save_accounts

    p = AccountPool(PacingSettings(), rng=random.Random(1))
    ff = p.ensure("ff", browser="firefox:default-release", proxy="socks5://bob:pw-Q9Q9@10.0.0.2:1080")
    anon = p.ensure("ip2", proxy="http://10.0.0.3:3128")
    assert ff.cookies and not anon.cookies
    assert p.settings.delay_range(ff.cookies) == (180.0, 300.0)
    rows = {r["account"]: r for r in p.snapshot(0)}
    assert rows["ff"]["source"] == "browser firefox" and rows["ff"]["proxy"] == "socks5://10.0.0.2:1080"
    assert rows["ip2"]["source"] == "anonymous" and rows["ip2"]["proxy"] == "http://10.0.0.3:3128"
    assert "pw-Q9Q9" not in repr(ff) and "pw-Q9Q9" not in json.dumps(p.to_dict(0))
    home.mkdir(parents=True)
    save_accounts(home, p, 0)
    other = {r["account"]: r for r in read_account_rows(home, 0)[0]}
    assert other["ff"]["source"] == "browser firefox" and other["ff"]["cookies"] is True
    assert other["ff"]["proxy"] == "socks5://10.0.0.2:1080"
    v = p.version
    p.ensure("ff", browser="firefox:default-release", proxy="socks5://bob:pw-Q9Q9@10.0.0.9:1080")
    assert p.version > v and p.get("ff").shown_proxy == "socks5://10.0.0.9:1080"  # type: ignore[union-attr]


class RecordingExecutor:
    """A thread pool that keeps the StageContext of every stage it is given (the engine's real submit call)."""

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(workers)
        self.contexts: list[Any] = []

    def submit(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        self.contexts.append(args[2])
        return self.pool.submit(fn, *args, **kw)

    def shutdown(self, wait: bool = True, **kw: Any) -> None:
        self.pool.shutdown(wait=wait)


def test_settings_accounts_and_batch_browsers_reach_the_stage(make_engine: Callable[..., Engine], home: Path,
                                                             tmp_path: Path) -> None:
    """[accounts.NAME] proxies and browsers become home accounts; --cookies-from-browser accounts are the batch's
    own; each download's StageContext carries that account's cookies or browser, its proxy, and [ytdlp]."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.config import secrets

    secrets.save_cookie_file(home, "alice", COOKIE.format(name="alice").encode())
    conf = {"alice": {"proxy": "http://10.0.0.3:3128"}, "ff": {"cookies_from_browser": "firefox:work"},
            "ip2": {"proxy": "socks5://u:pw@10.0.0.2:1080"}}
    ytdlp_conf = {"extractor_args": {"youtube": {"player_client": ["default"]}}}
    net = RecordingExecutor(3)
    others = {p: ThreadPoolExecutor(2) for p in ("cpu", "gpu", "llm")}
    e: Engine | None = None
    try:
        e = make_engine(settings=fast_settings(accounts=conf, ytdlp=ytdlp_conf,
                                               pools={"net": 3, "cpu": 2, "gpu": 0, "llm": 2}),
                        executors={"net": net, **others})
        e.submit("home-accts", [f"v{i}" for i in range(6)], recipe="probe")
        assert e.wait("home-accts", timeout=20).counts["done"] == 6
        seen = {c.account: c for c in net.contexts if c.stage == "probe_net"}
        assert set(seen) == {"alice", "ff", "ip2"}
        assert seen["alice"].cookiefile and seen["alice"].proxy == "http://10.0.0.3:3128"
        assert seen["ff"].browser == "firefox:work" and seen["ff"].cookiefile is None and seen["ff"].proxy is None
        assert seen["ip2"].proxy == "socks5://u:pw@10.0.0.2:1080" and not seen["ip2"].cookiefile
        assert all(c.ytdlp == ytdlp_conf for c in seen.values())
        assert "pw@" not in repr(seen["ip2"])  # the context's repr (logs, tracebacks) never shows the proxy
        net.contexts.clear()
        e.submit("own-accts", ["w1", "w2"], recipe="probe",
                 options={"cookie_browsers": {"chrome-Default": "chrome:Default"}})
        assert e.wait("own-accts", timeout=20).counts["done"] == 2
        mine = [c for c in net.contexts if c.stage == "probe_net"]
        assert {c.account for c in mine} == {"chrome-Default"} and all(c.browser == "chrome:Default" for c in mine)
    finally:
        if e is not None:
            e.shutdown(interrupt=True, timeout=5)
        net.shutdown()
        for ex in others.values():
            ex.shutdown()

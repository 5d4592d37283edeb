"""The `tubemill` command: runs, status JSON, resume semantics, control from another
process, Ctrl-C, and one clear line for bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from state.reader import read_summaries
from tests.conftest import ROOT, cli_env, sigint_default


def tm(home: Path, *args: str, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                          env=cli_env(home), capture_output=True, text=True, timeout=timeout, input=stdin)


def spawn(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)


def wait_for(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def batch_state(home: Path, name: str) -> str | None:
    for s in read_summaries(home):
        if s.name == name:
            return s.state
    return None


def one_clean_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tubemill: error:"), res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture
def src(tmp_path: Path) -> Path:
    p = tmp_path / "lectures.txt"
    p.write_text("# my lectures\n\nep1\nep2 fail=1@probe_cpu\n\nep3 perm@probe_gpu\nep4\nep1\n")
    return p


def test_run_status_json_and_manifest(home: Path, src: Path, tmp_path: Path) -> None:
    """A run prints plain progress when piped, exits 1 on failed items, and status --json has the contract shape."""
    manifest = tmp_path / "out" / "m.json"
    res = tm(home, "run", str(src), "--recipe", "probe", "--retry-limit", "0", "--output-manifest", str(manifest))
    assert res.returncode == 1, res.stderr
    assert "lectures: " in res.stdout and "of 4 done" in res.stdout
    assert "\x1b[" not in res.stdout  # no terminal control codes when not a tty
    st = tm(home, "status", "lectures", "--json")
    assert st.returncode == 0
    doc = json.loads(st.stdout)
    assert set(doc) == {"batch", "counts", "items", "summaries", "wait"}
    assert doc["batch"]["name"] == "lectures" and doc["batch"]["state"] == "done"
    assert doc["counts"]["done"] == 2 and doc["counts"]["failed"] == 2
    assert [i["source"] for i in doc["items"]] == ["ep1", "ep2 fail=1@probe_cpu", "ep3 perm@probe_gpu", "ep4"]
    assert set(doc["items"][0]) == {"n", "source", "id", "title", "status", "stage", "attempts", "error", "flags",
                                    "summary", "wait"}
    assert doc["items"][2]["error"]["type"] == "PermanentError"
    m = json.loads(manifest.read_text())
    assert len(m["items"]) == 4 and (Path(doc["batch"]["output_dir"]) / "manifest.csv").exists()
    plain = tm(home, "status")
    assert "lectures" in plain.stdout and "2/4" in plain.stdout


def test_existing_name_needs_resume(home: Path, src: Path) -> None:
    """Running a name twice is an error that says to add --resume; with --resume new lines are added."""
    assert tm(home, "run", str(src), "--recipe", "probe", "--retry-limit", "0").returncode == 1
    again = tm(home, "run", str(src), "--recipe", "probe")
    one_clean_error(again, "already exists", "--resume")
    src.write_text(src.read_text() + "ep5\n")
    res = tm(home, "run", str(src), "--recipe", "probe", "--resume")
    doc = json.loads(tm(home, "status", "lectures", "--json").stdout)
    assert doc["counts"]["done"] == 3 and len(doc["items"]) == 5
    assert res.returncode == 1  # the old failures are still failed


def test_retry_failed_command(home: Path, tmp_path: Path) -> None:
    """retry-failed with no engine running runs the failed items here and finishes them."""
    p = tmp_path / "b.txt"
    flag = tmp_path / "flag"
    flag.write_text("1")
    p.write_text(f"a\nb failif={flag}@probe_cpu\n")
    assert tm(home, "run", str(p), "--recipe", "probe").returncode == 1
    flag.unlink()
    res = tm(home, "retry-failed", "b")
    assert res.returncode == 0, res.stderr
    assert json.loads(tm(home, "status", "b", "--json").stdout)["counts"]["done"] == 2


@pytest.mark.parametrize(
    "args,needles",
    [
        (("run", "/no/such/file.txt"), ("cannot read input file", "no such file")),
        (("status", "nope"), ("no batch named 'nope'",)),
        (("pause", "nope"), ("no batch named 'nope'",)),
        (("run", "-", "--recipe", "nope"), ("unknown recipe 'nope'",)),
    ],
)
def test_bad_input_is_one_clear_line(home: Path, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    """Bad input: one line starting 'tubemill: error:', non-zero exit, no traceback."""
    one_clean_error(tm(home, *args, stdin="x\n"), *needles)


def test_directory_and_binary_inputs(home: Path, tmp_path: Path) -> None:
    """A folder without media, or a binary file given as input, is refused clearly."""
    empty = tmp_path / "empty"
    empty.mkdir()
    one_clean_error(tm(home, "run", str(empty)), "nothing to process")
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    one_clean_error(tm(home, "run", str(binary), "--recipe", "probe"), "not UTF-8")


def test_corrupt_state_file_is_named_and_moved(home: Path, src: Path) -> None:
    """A torn state file: status names it in one line; the next run moves it aside and still works."""
    first = tm(home, "run", str(src), "--recipe", "probe", "--batch-name", "first", "--retry-limit", "0")
    assert first.returncode == 1
    (state_file,) = (home / "batches").glob("*.json")
    state_file.write_bytes(state_file.read_bytes()[:50])
    one_clean_error(tm(home, "status", "first"), str(state_file), "unreadable")
    res = tm(home, "run", str(src), "--recipe", "probe", "--batch-name", "second", "--retry-limit", "0")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert str(state_file) in res.stderr and "moved to" in res.stderr
    assert [s.name for s in read_summaries(home)] == ["second"]
    assert len(list((home / "batches" / "corrupt").iterdir())) == 1


def test_invalid_lines_are_reported_and_the_rest_runs(home: Path, tmp_path: Path) -> None:
    """A malformed line is reported with its line number; the other lines run."""
    p = tmp_path / "mixed.txt"
    p.write_text("good1\nbad\x07line\ngood2\n")
    res = tm(home, "run", str(p), "--recipe", "probe")
    assert res.returncode == 1, "0 means every line given was done; a skipped line makes it 1"
    assert "line 2" in res.stderr and "control characters" in res.stderr
    assert read_summaries(home)[0].counts["done"] == 2


def test_second_run_hands_its_batch_to_the_owner(home: Path, tmp_path: Path) -> None:
    """While one process owns the home, a second `run` says who holds it and the owner runs the batch."""
    slow = tmp_path / "slow.txt"
    slow.write_text("".join(f"s{i} sleep=0.4\n" for i in range(4)))
    owner = spawn(home, "run", str(slow), "--recipe", "probe")
    try:
        wait_for(lambda: batch_state(home, "slow") == "active")
        quick = tmp_path / "quick.txt"
        quick.write_text("q1\nq2\n")
        res = tm(home, "run", str(quick), "--recipe", "probe")
        assert res.returncode == 0, res.stderr
        assert f"held by pid {owner.pid}" in res.stderr
        assert batch_state(home, "quick") == "done"
        st = tm(home, "status", "slow", "--json")  # works while the other process runs it
        assert st.returncode == 0 and json.loads(st.stdout)["batch"]["name"] == "slow"
    finally:
        owner.wait(timeout=60)
    assert owner.returncode == 0


def test_pause_and_resume_from_another_process(home: Path, tmp_path: Path) -> None:
    """`tubemill pause` reaches the engine running in another process within about a second."""
    slow = tmp_path / "slow.txt"
    slow.write_text("".join(f"s{i} sleep=0.3\n" for i in range(8)))
    owner = spawn(home, "run", str(slow), "--recipe", "probe", "--max-workers", "1")
    try:
        wait_for(lambda: batch_state(home, "slow") == "active")
        t0 = time.monotonic()
        assert tm(home, "pause", "slow").returncode == 0
        wait_for(lambda: batch_state(home, "slow") == "paused", timeout=5)
        assert time.monotonic() - t0 < 3
        out, _ = owner.communicate(timeout=30)
        assert owner.returncode == 0 and "tubemill resume slow" in out
        res = tm(home, "resume", "slow")
        assert res.returncode == 0, res.stderr
        assert batch_state(home, "slow") == "done"
    finally:
        if owner.poll() is None:
            owner.kill()


def test_ctrl_c_pauses_cleanly_and_prints_the_resume_command(home: Path, tmp_path: Path) -> None:
    """SIGINT pauses the batch, stops running stages, exits 130 and says how to resume."""
    slow = tmp_path / "long.txt"
    slow.write_text("".join(f"s{i} sleep=4\n" for i in range(4)))  # long enough for a loaded machine
    proc = spawn(home, "run", str(slow), "--recipe", "probe")
    wait_for(lambda: batch_state(home, "long") == "active")
    time.sleep(0.8)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - t0 < 5
    assert "tubemill resume long" in err and "Traceback" not in err
    s = read_summaries(home)[0]
    assert s.state == "paused" and s.counts["running"] == 0 and s.counts["pending"] == 4
    res = tm(home, "resume", "long", timeout=60)
    assert res.returncode == 0 and read_summaries(home)[0].counts["done"] == 4


def test_live_display_on_a_terminal(home: Path, tmp_path: Path) -> None:
    """On a terminal `run` draws a live panel (rich) instead of plain lines."""
    import os
    import pty

    p = tmp_path / "tty.txt"
    p.write_text("a sleep=0.3\nb sleep=0.3\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", str(p), "--recipe",
                             "probe"], cwd=ROOT,
                            env={**cli_env(home), "TERM": "xterm"}, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=30)
    os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "\x1b[" in out and "2 of 2 done" in out


# ---------------------------------------------------------------------- YouTube and yt-dlp flags
@pytest.mark.parametrize(("flags", "needles"), [
    (("--ytdlp-option", "cookiefile=/tmp/x"), ("is set by Tubemill", "--cookies")),
    (("--ytdlp-option", "wait_for_video=[60, 600]"), ("--wait-for-live",)),
    (("--ytdlp-option", "noequals"), ("KEY=VALUE",)),
    (("--proxy", "ftp://u:pw-Q1@h:21"), ("proxy", "SCHEME://")),
    (("--cookies-from-browser", "netscape"), ("unsupported browser",)),
])
def test_youtube_flags_bad_values_are_one_clear_line(home: Path, src: Path, flags: tuple[str, ...],
                                                      needles: tuple[str, ...]) -> None:
    """Bad --ytdlp-option/--proxy/--cookies-from-browser values: one line, nothing started, no password echoed."""
    res = tm(home, "run", str(src), "--recipe", "probe", *flags)
    one_clean_error(res, *needles)
    assert "pw-Q1" not in res.stderr and not read_summaries(home)


def test_browser_accounts_are_the_batchs_own(home: Path, src: Path) -> None:
    """--cookies-from-browser (repeatable) makes one account per browser profile, stored with the batch."""
    res = tm(home, "run", str(src), "--recipe", "probe", "--cookies-from-browser", "firefox",
             "--cookies-from-browser", "chrome:Profile 1", "--batch-name", "br")
    assert res.returncode == 1, res.stderr  # ep3 fails on purpose (perm@probe_gpu)
    doc = json.loads(tm(home, "status", "br", "--json").stdout)
    assert doc["batch"]["options"]["cookie_browsers"] == {"firefox": "firefox", "chrome-Profile-1": "chrome:Profile 1"}
    rows = {r["account"]: r for r in doc["batch"]["download_accounts"]}
    assert rows["firefox"]["source"] == "browser firefox" and rows["chrome-Profile-1"]["source"] == "browser chrome"
    assert rows["firefox"]["downloads"] + rows["chrome-Profile-1"]["downloads"] >= 3


def test_run_through_a_proxy_with_ytdlp_options(home: Path, tmp_path: Path, media_server) -> None:  # type: ignore[no-untyped-def]
    """--proxy and --ytdlp-option reach yt-dlp in a real batch: the download of a host only the proxy can reach
    arrives with the header and the proxy's credentials; the batch keeps the options for a resume."""
    from urllib.parse import urlsplit

    from state.reader import find_summary, read_batch

    path = urlsplit(media_server.media_url("mp3")).path
    src = tmp_path / "one.txt"
    src.write_text(f"http://media.tubemill.invalid{path}\n")
    proxy = f"http://carol:pw-Q2@127.0.0.1:{media_server.port}"
    res = tm(home, "run", str(src), "--proxy", proxy, "--ytdlp-option", 'http_headers={"X-Tubemill": "cli"}',
             "--wait-for-live", "--captions", "never", "--summarizer", "offline", timeout=240)
    assert res.returncode == 0, res.stderr
    hits = [h for h in media_server.requests if h.path == path]
    assert hits and all(h.headers.get("X-Tubemill") == "cli" for h in hits)
    assert all(h.headers.get("Proxy-Authorization", "").startswith("Basic ") for h in hits)
    assert "pw-Q2" not in res.stdout + res.stderr
    header, items = read_batch(home, find_summary(home, "one").id)
    assert items[0]["status"] == "done"
    opts = header["options"]
    assert opts["proxy"] == "***" and opts["ytdlp_options"] == {"http_headers": {"X-Tubemill": "cli"}}
    assert opts["wait_for_live"] is True
    from pipeline.config.secrets import with_private_options

    bid = find_summary(home, "one").id
    assert with_private_options(home, bid, opts)["proxy"] == proxy  # kept for a resume, in a 0600 file
    private = home / "secrets" / "batch-options" / f"{bid}.json"
    assert private.stat().st_mode & 0o777 == 0o600
    assert not any("pw-Q2" in p.read_text(errors="replace") for p in (home / "batches").rglob("*") if p.is_file())


def test_proxy_and_secret_ytdlp_options_never_leave_the_store(home: Path, src: Path) -> None:
    """A proxy password, an Authorization header and a site username given on the command line appear in no
    export, no status output and no state file (they live in a 0600 file of the batch)."""
    res = tm(home, "run", str(src), "--recipe", "probe", "--batch-name", "sec", "--proxy",
             "http://carol:pw-Q2@127.0.0.1:9", "--ytdlp-option", 'http_headers={"Authorization": "Bearer tok-Q3"}',
             "--ytdlp-option", "username=user-Q4")
    assert res.returncode in (0, 1), res.stderr
    shown = tm(home, "status", "sec", "--json").stdout + res.stdout + res.stderr
    shown += "".join(p.read_text(errors="replace") for p in (home / "output").rglob("*") if p.is_file())
    shown += "".join(p.read_text(errors="replace") for p in (home / "batches").rglob("*") if p.is_file())
    for secret in ("pw-Q2", "tok-Q3", "user-Q4"):
        assert secret not in shown, secret

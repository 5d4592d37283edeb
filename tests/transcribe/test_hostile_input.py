"""A hostile input file: every bad line is reported with its true line number and a reason, the good
lines all run to done, and nothing prints a traceback — through `tubemill run` and through `expand`.

The file mixes the inputs that used to abort a run, lose a feed or misnumber lines (issue 12, "Bad
input never aborts a run") with good loopback lines from the media server. Lines are built as
(text, expected reason) pairs, so the expected line numbers are counted here, independently of the
code under test: a line break is ``\\n`` (``\\r\\n`` on some lines), nothing else.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.engine.core import Engine
from pipeline.recipes.transcribe.sources import expand, read_input
from state.reader import find_summary, read_summaries
from tests.conftest import ROOT, cli_env, fast_settings
from tests.media_server import MediaServer, rss_feed

UNREADABLE = "/proc/sys/vm/compact_memory"  # mode 0200 in sysctl: even root gets EACCES on read

# Characters str.splitlines() breaks on but a line break in a list of sources is not.
SEPARATORS = ["\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r"]


@dataclass
class Hostile:
    """The input file's bytes, and per line number the reasons it must be reported with."""

    data: bytes
    expected: dict[int, list[str]] = field(default_factory=dict)
    good_items: int = 0  # items that must run to done
    bad_inputs: list[str] = field(default_factory=list)  # one name per distinct bad input tried


def unreadable_available() -> bool:
    try:
        with open(UNREADABLE, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False


def hostile_feed(server: MediaServer) -> str:
    """A feed whose one title holds a NUL, another a bare '&' and an ESC reference, one enclosure file:."""
    items = [
        {"title": "Clean episode", "url": server.media["m4a"], "guid": "h-1"},
        {"title": "Nul\x00in the title", "url": server.media["wav"], "guid": "h-2"},
        {"title": "Passwords", "url": "file:///etc/passwd", "guid": "h-3"},
        {"title": "Salt AMPERSAND Pepper \x1b[31m", "url": server.media["webm"], "guid": "h-4"},
    ]
    text = rss_feed(server.base_url, items, title="Hostile \x00 feed").replace("AMPERSAND", "&")
    server.add_text("/hostile.xml", text, "application/rss+xml; charset=utf-8")
    return server.url("/hostile.xml")


def build_hostile(tmp: Path, server: MediaServer, media: dict[str, Path]) -> Hostile:
    """The hostile file; every line a bad input, except the loopback and folder lines that must run."""
    folder = tmp / "folder"
    folder.mkdir()
    shutil.copy(media["wav"], folder / "lecture.wav")
    os.symlink(folder / "gone.mp3", folder / "broken.mp3")
    os.mkfifo(folder / "pipe.mp3")
    (folder / os.fsdecode(b"caf\xe9.mp3")).write_bytes(b"not utf-8 name")
    os.symlink("/", folder / "root-link")  # a directory symlink is not followed: no walk of the disk
    os.symlink(folder, folder / "loop")
    folder_reasons = ["broken symlink", "not a regular file", "file name is not valid UTF-8"]
    if unreadable_available():
        os.symlink(UNREADABLE, folder / "unreadable.mp3")
        folder_reasons.append("cannot read this file (Permission denied)")
    fifo = tmp / "fifo.mp3"
    os.mkfifo(fifo)
    loop = tmp / "loop.mp3"
    os.symlink(loop, loop)

    h = Hostile(b"")
    chunks: list[bytes] = []

    def add(text: str | bytes, *reasons: str, name: str | None = None, crlf: bool = False) -> None:
        raw = text.encode("utf-8") if isinstance(text, str) else text
        chunks.append(raw + (b"\r\n" if crlf else b"\n"))
        no = len(chunks)
        if reasons:
            h.expected[no] = list(reasons)
        if name:
            h.bad_inputs.append(name)

    add("\ufeff# hostile list, with a byte-order mark", crlf=True)
    add("")
    add(server.media_url("mp3"), crlf=True)  # good: direct media
    add("http://[::1/x.mp3", "malformed URL (Invalid IPv6 URL)", name="unclosed IPv6 bracket")
    add("http://:80/", "no host name", name="URL without a host")
    add("/", "filesystem root", name="the line /")
    add(str(folder), *folder_reasons, name="folder with unreadable entries")
    h.bad_inputs += ["  folder entry: broken symlink", "  folder entry: FIFO named .mp3",
                     "  folder entry: non-UTF-8 file name", "  folder entry: symlink to / (not followed)",
                     "  folder entry: symlink loop (not followed)"]
    if unreadable_available():
        h.bad_inputs.append("  folder entry: unreadable file (EACCES as root)")
    add(b"http://127.0.0.1/caf\xe9.mp3", "not valid UTF-8", name="invalid UTF-8 byte in a line")
    add(hostile_feed(server), "file: URL", name="feed: NUL in a title, bare &, ESC, file: enclosure")
    for sep in SEPARATORS:
        add(f"http://127.0.0.1/a{sep}b.mp3", "control characters", name=f"U+{ord(sep):04X} inside a line")
    add("file:///etc/passwd", "file: URLs are refused", name="file: URL line", crlf=True)
    add("http://[::1/x.mp3", "malformed URL (Invalid IPv6 URL)", name="repeated bad line")
    add("http://127.0.0.1:99999/x.mp3", "Port out of range", name="port out of range")
    add("http://127.0.0.1:abc/x.mp3", "Port could not be cast", name="non-numeric port")
    add("http://127.0.0.1:0/x.mp3", "port 0", name="port 0")
    add("http://exa<mple.com/x.mp3", "is not a host name", name="bad characters in the host")
    add("http://[1.2.3]/x.mp3", "does not appear to be an IPv4 or IPv6 address", name="bad IPv6 literal")
    add("a\x00nul.mp3", "control characters", name="NUL in a line")
    add("http://127.0.0.1/\x1b[31mred.mp3", "control characters", name="ESC sequence in a line")
    add("http://127.0.0.1/\u202eevil.mp3", "control characters", name="bidi override in a line")
    add("http://127.0.0.1/" + "x" * 5000 + ".mp3", "longer than 4096", name="line over 4096 characters")
    add(UNREADABLE, "a system path (/proc)", name="a /proc file as a path line")
    add("/proc", "a system path (/proc)", name="/proc as a folder line")
    add("/dev/null", "not a regular file or folder", name="a device as a path line")
    add(str(fifo), "not a regular file or folder", name="a FIFO as a path line")
    add(str(loop), "Too many levels of symbolic links", name="a symlink loop as a path line")
    add("~nosuchuser-tubemill/x.mp3", "no such user", name="~user that does not exist")
    add("/" + "n" * 300 + ".mp3", "File name too long", name="file name too long")
    add("ftp://127.0.0.1/x.mp3", "unsupported scheme", name="ftp: URL")
    add("data:audio/mp3;base64,AAAA", "not a URL or an existing file", name="data: URL")
    add("javascript:alert(1)", "not a URL or an existing file", name="javascript: URL")
    add("www.example.com/video", "without http", name="URL without a scheme")
    add("   ")
    add("# a comment after all that")
    add(server.media_url("mp3"))  # the same good line again: listed once, no report
    add("http://:80/", "no host name")  # and a bad one again, at its own number
    h.data = b"".join(chunks)
    # direct mp3 + the feed's three usable entries + the folder's one readable file
    h.good_items = 1 + 3 + 1
    return h


def tm(home: Path, *args: str, timeout: float = 240,
       stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                          env=cli_env(home), capture_output=True, timeout=timeout, input=stdin)


def reported(stderr: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for m in re.finditer(r"skipped invalid input, line (\d+): (.*)", stderr):
        out.setdefault(int(m.group(1)), []).append(m.group(2))
    return out


def check_reports(got: dict[int, list[str]], h: Hostile) -> None:
    assert sorted(got) == sorted(h.expected), (sorted(got), sorted(h.expected))
    for no, reasons in h.expected.items():
        for reason in reasons:
            assert any(reason in msg for msg in got[no]), (no, reason, got[no])


def test_hostile_file_through_expand(tmp_path: Path, media_server: MediaServer,
                                     media_files: dict[str, Path]) -> None:
    """Every bad line is reported at its true line number with a reason; the good lines and the
    rest of the folder and feed are listed (the NUL title cleaned)."""
    h = build_hostile(tmp_path, media_server, media_files)
    path = tmp_path / "hostile.txt"
    path.write_bytes(h.data)
    x = expand(read_input(str(path)))
    got: dict[int, list[str]] = {}
    for bad in x.invalid:
        got.setdefault(bad.line_no, []).append(bad.reason)
    check_reports(got, h)
    assert len(x.entries) == h.good_items and not x.failed, ([e.title for e in x.entries], x.failed)
    titles = {e.title for e in x.entries}
    assert {"Clean episode", "Nulin the title", "Salt & Pepper [31m", "lecture"} <= titles
    assert all(e.parent == "Hostile feed" for e in x.entries if e.extractor == "generic" and e.parent)


def test_hostile_file_through_the_cli(home: Path, tmp_path: Path, media_server: MediaServer,
                                      media_files: dict[str, Path]) -> None:
    """`tubemill run` on the hostile file: each bad line reported with its true number, every good item
    done, exit 1 (lines were refused, all else done), no traceback; `status` agrees."""
    h = build_hostile(tmp_path, media_server, media_files)
    path = tmp_path / "hostile.txt"
    path.write_bytes(h.data)
    res = tm(home, "run", str(path), "--batch-name", "hostile")
    out, err = res.stdout.decode("utf-8"), res.stderr.decode("utf-8")
    assert "Traceback" not in out + err, err
    assert res.returncode == 1, err
    check_reports(reported(err), h)
    assert re.search(r"\d+ input line\(s\) or folder entries skipped \(line 4, 5, 6", err), err
    st = tm(home, "status", "hostile", "--json")
    assert st.returncode == 0 and b"Traceback" not in st.stderr
    doc = json.loads(st.stdout)
    assert doc["counts"]["done"] == h.good_items and len(doc["items"]) == h.good_items, doc["counts"]


def test_hostile_file_on_stdin_with_bad_bytes(home: Path, tmp_path: Path, media_server: MediaServer,
                                              media_files: dict[str, Path]) -> None:
    """The same file on stdin (bytes, not text) reports the same lines; --dry-run starts nothing, exits 1."""
    h = build_hostile(tmp_path, media_server, media_files)
    res = tm(home, "run", "-", "--dry-run", stdin=h.data)
    err = res.stderr.decode("utf-8")
    assert "Traceback" not in err + res.stdout.decode("utf-8")
    assert res.returncode == 1, err
    check_reports(reported(err), h)
    assert f"{h.good_items} item(s)" in res.stdout.decode("utf-8")


@pytest.mark.parametrize(
    "data,needle",
    [
        ("\ufeffhttp://a.example/x.mp3\n".encode("utf-16"), "looks like UTF-16"),
        (b"\x00\x81\xfe\xff\x00\x9f", "not UTF-8 text"),
        (b"\xc3\x28\n\xa0\xa1\n", "not UTF-8 text"),
        (random.Random(12).randbytes(50_000), "is it a binary file"),  # a picture or archive given as the list
    ],
    ids=["utf-16", "bytes", "two-bad-lines", "random-50k"],
)
def test_binary_input_files_are_one_clear_line(home: Path, tmp_path: Path, data: bytes, needle: str) -> None:
    """A file in which no line is UTF-8 text is refused as a whole, in one line, exit 2."""
    path = tmp_path / "list.txt"
    path.write_bytes(data)
    res = tm(home, "run", str(path), "--dry-run")
    err = res.stderr.decode("utf-8")
    assert res.returncode == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.strip()] == [ln for ln in err.splitlines() if needle in ln], err


def test_every_line_bad_is_nothing_to_process(home: Path, tmp_path: Path) -> None:
    """Only bad lines: each reported, then one error line saying every line was refused, exit 2."""
    path = tmp_path / "bad.txt"
    path.write_text("http://[::1/x.mp3\nfile:///etc/passwd\n/\n")
    res = tm(home, "run", str(path))
    err = res.stderr.decode("utf-8")
    assert res.returncode == 2 and "Traceback" not in err
    assert sorted(reported(err)) == [1, 2, 3]
    assert err.strip().splitlines()[-1].startswith("tubemill: error: nothing to process")


@pytest.mark.parametrize("spec", ["/dev/zero", "/sys/kernel", "/proc/self/status"])
def test_odd_input_specs_are_one_clear_line(home: Path, spec: str) -> None:
    """/dev/zero (endless), a /sys folder and a /proc file as the input: one line, exit 2, no traceback."""
    res = tm(home, "run", spec, "--dry-run", timeout=60)
    err = res.stderr.decode("utf-8")
    assert res.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("tubemill: error:"), err


# ---------------------------------------------------------------------- the app's preview
def test_hostile_text_in_the_app_preview(home: Path, tmp_path: Path, media_server: MediaServer,
                                         media_files: dict[str, Path]) -> None:
    """New batch → Preview on the hostile text: a warning per bad line with its true number, pasted Markdown
    shown as text, the good entries counted, no exception."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    h = build_hostile(tmp_path, media_server, media_files)
    # A text area holds text, not bytes: the one undecodable line arrives as U+FFFD (a valid URL character).
    text = h.data.decode("utf-8", "replace") + "![b](http://127.0.0.1:1/track.png) $x$ :red[y]\n"
    h.expected.pop(8)
    markdown_line = len(h.data.split(b"\n"))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        at.switch_page("pages/screens/new_batch.py").run()
        at.text_area(key="nb_sources").input(text).run()
        at.button(key="nb_preview_btn").click().run()
        assert not at.exception, at.exception
        warnings = [w.value for w in at.warning]
        for no in [*h.expected, markdown_line]:
            assert any(w.startswith(f"Line {no} skipped") for w in warnings), (no, warnings)
        shown = next(w for w in warnings if w.startswith(f"Line {markdown_line} skipped"))
        assert r"\!\[b\]\(http\:" in shown and r"\$x\$" in shown and r"\:red\[y\]" in shown, shown
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Videos"] == str(h.good_items + 1), metrics  # + the U+FFFD URL, a valid line in text
    finally:
        from pages.screens._engine import get_engine, get_monitor

        get_monitor().stop()
        get_engine().shutdown(interrupt=True, timeout=5)
        st.cache_resource.clear()


def test_streamlit_never_shows_tracebacks() -> None:
    """showErrorDetails is "none" (the legacy `false` would still mean "stacktrace" in Streamlit 1.67)."""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


# ---------------------------------------------------------------------- state: index and home
WRONG_INDEXES = [
    '{"batches": [{"x": 1}]}',
    '{"batches": "nope"}',
    '{"batches": [null]}',
    '{"batches": [{"id": 1, "name": 2, "counts": [1]}]}',
    '{"batches": [{"id": "b", "name": "n", "eta_s": "soon", "counts": {"done": "x"}}]}',
    '{"batches": [{"id": "../../../etc/passwd", "name": "n"}]}',
    "[1, 2]",
    '"a string"',
    "null",
    "{}",
    '{"batches": [{"id": "b", "name": "n", "created_at": "yesterday"}]}',
]


def seed_probe_batch(home: Path) -> None:
    """One finished batch (1 done, 1 failed), made in-process: the index and batch file on disk."""
    e = Engine(home, settings=fast_settings())
    e.start()
    try:
        e.submit("probe", ["a", "b perm@probe_cpu"], recipe="probe", options={"retry_limit": 0})
        e.wait("probe", timeout=60)
    finally:
        e.shutdown(interrupt=True)


@pytest.mark.parametrize("index", WRONG_INDEXES)
def test_wrong_shape_index_is_rebuilt_by_readers(home: Path, index: str) -> None:
    """Valid JSON of the wrong shape in index.json: readers rebuild the summaries from the batch files."""
    seed_probe_batch(home)
    (home / "index.json").write_text(index)
    [s] = read_summaries(home)
    assert s.name == "probe" and s.counts["done"] == 1 and s.counts["failed"] == 1 and s.total == 2
    assert find_summary(home, "probe").id == s.id


def test_wrong_shape_index_with_tubemill_status(home: Path, tmp_path: Path) -> None:
    """`tubemill status` (plain, --json, one batch) on wrong-shape indexes that used to raise KeyError or
    TypeError; the next owner writes a good index again."""
    seed_probe_batch(home)
    for index in ('{"batches": [{"x": 1}]}', '{"batches": [{"id": 1, "name": 2, "counts": [1]}]}', "[1, 2]"):
        (home / "index.json").write_text(index)
        plain = tm(home, "status")
        assert plain.returncode == 0 and b"Traceback" not in plain.stderr, (index, plain.stderr)
        assert re.search(rb"probe\s+done\s+1/2", plain.stdout), (index, plain.stdout)
        one = tm(home, "status", "probe", "--json")
        assert one.returncode == 0 and json.loads(one.stdout)["counts"]["failed"] == 1, (index, one.stderr)
    src = tmp_path / "second.txt"
    src.write_text("c\n")
    again = tm(home, "run", str(src), "--recipe", "probe")
    assert again.returncode == 0 and b"Traceback" not in again.stderr, again.stderr
    rows = json.loads((home / "index.json").read_text())["batches"]
    assert sorted(r["name"] for r in rows) == ["probe", "second"]


def test_index_as_a_folder_and_torn_batch_rows(home: Path, tmp_path: Path) -> None:
    """A folder where index.json should be, and a batch file whose item lacks its number: status still reads."""
    src = tmp_path / "probe.txt"
    src.write_text("a\n")
    assert tm(home, "run", str(src), "--recipe", "probe").returncode == 0
    (home / "index.json").unlink()
    (home / "index.json").mkdir()
    res = tm(home, "status")
    assert res.returncode == 0 and b"probe" in res.stdout and b"Traceback" not in res.stderr
    batch = next((home / "batches").glob("*.json"))
    data = json.loads(batch.read_text())
    data["items"]["1"].pop("n")
    batch.write_text(json.dumps(data))
    res = tm(home, "status", "probe")
    assert res.returncode == 2 and b"Traceback" not in res.stderr
    assert res.stderr.decode().startswith("tubemill: error:"), res.stderr


def unwritable_homes(tmp_path: Path) -> list[tuple[str, Path]]:
    """Homes root cannot write either (chmod does not stop root): under a regular file; a file where
    batches/ belongs; under /sys (EPERM) when this kernel refuses it."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    taken = tmp_path / "taken-home"
    taken.mkdir()
    (taken / "batches").write_text("a file where the batches folder belongs")
    out = [("parent is a file", blocker / "home"), ("batches is a file", taken)]
    try:
        (Path("/sys") / "tubemill-test-home").mkdir()
    except OSError:
        out.append(("under /sys", Path("/sys") / "tubemill-test-home"))
    else:  # pragma: no cover - a kernel that lets us write /sys
        (Path("/sys") / "tubemill-test-home").rmdir()
    return out


@pytest.mark.parametrize("command", [("run", "{src}", "--recipe", "probe"), ("run", "{src}"),
                                     ("pause", "--all"), ("resume", "x"), ("retry-failed", "x")])
def test_unwritable_home_is_one_clear_line(tmp_path: Path, command: tuple[str, ...]) -> None:
    """An unwritable home or batches folder at start: one `tubemill: error:` line naming the path and
    the way out (--home / TUBEMILL_HOME), exit 2, no traceback."""
    media = tmp_path / "talk.mp3"
    media.write_bytes(b"ID3" + b"\0" * 64)  # a line both recipes accept: the home is what fails
    src = tmp_path / "one.txt"
    src.write_text(f"{media}\n")
    for label, home in unwritable_homes(tmp_path):
        env = {**os.environ, "TUBEMILL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        args = [a.format(src=src) for a in command]
        res = subprocess.run([sys.executable, "-m", "pipeline.cli", "--home", str(home), *args], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout, (label, res.stderr)
        assert len(lines) == 1 and lines[0].startswith("tubemill: error: cannot use "), (label, lines)
        assert "TUBEMILL_HOME" in lines[0], (label, lines)


def test_unwritable_home_in_the_app_is_a_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The New batch page on an unwritable home says so (st.error), instead of raising."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("TUBEMILL_HOME", str(blocker / "home"))
    st.cache_resource.clear()
    try:
        at = AppTest.from_file(str(ROOT / "pages" / "screens" / "new_batch.py"), default_timeout=60).run()
        assert not at.exception, at.exception
        assert any("cannot use its state folder" in e.value for e in at.error), [e.value for e in at.error]
    finally:
        st.cache_resource.clear()

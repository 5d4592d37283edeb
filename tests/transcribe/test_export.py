"""Batch exports on a fake finished batch: manifest, errors.md, stats.json, the combined PDF and the ZIP."""

from __future__ import annotations

import csv
import functools
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pypdf
import pytest

from pipeline.common.formats import summary_markdown, to_json, to_srt, to_txt, to_vtt
from pipeline.engine.outputs import export_batch, hint_for, is_secret_file, write_manifest
from pipeline.recipes.transcribe.outputs import outputs as transcribe_outputs

SECRET_KEY = "sk-proj-" + "A1b2C3d4E5" * 4
COOKIES = "# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tSID\tsecretvalue\n"
UNICODE_TITLE = "Второй доклад: 東京 café"
LONG_URL = "https://example.com/" + "very-long-path-segment-" * 20


def write_item(folder: Path, n: int, slug: str, transcript: dict[str, Any], summary: dict[str, Any] | None,
               title: str) -> tuple[Path, dict[str, str]]:
    wd = folder / f"{n:04d}-{slug}"
    wd.mkdir(parents=True)
    arts = {}
    for name, fname, body in (
        ("txt", "transcript.txt", to_txt(transcript)),
        ("srt", "transcript.srt", to_srt(transcript)),
        ("vtt", "transcript.vtt", to_vtt(transcript)),
        ("json", "transcript.json", to_json(transcript)),
        ("summary", "summary.md", summary_markdown(title, summary or {"tldr": "Markdown-only summary."})),
        ("meta", "meta.json", json.dumps({"title": title})),
    ):
        (wd / fname).write_text(body, encoding="utf-8")
        arts[name] = str(wd / fname)
    if summary is not None:
        (wd / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    (wd / "log.txt").write_text("stage events\n")
    return wd, arts


@pytest.fixture(scope="module")
def batch_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    root = tmp_path_factory.mktemp("export")
    folder = root / "out" / "my-lectures"
    t1 = {"language": "en", "duration": 120.0, "source": "whisper", "model": "tiny.en", "segments": [
        {"start": 0.0, "end": 4.0, "text": "Welcome to the first talk."},
        {"start": 65.0, "end": 70.0, "text": "Here is the important part."},
    ]}
    s1 = {"tldr": "The first talk in one line.", "key_points": ["Point one", "Point two"],
          "chapters": [{"start": 0, "title": "Opening"}, {"start": 65, "title": "Core"}], "tags": ["talk"],
          "engine": "offline", "model": None}
    t2 = {"language": "ru", "duration": 60.0, "source": "captions", "model": None, "segments": [
        {"start": 0.0, "end": 3.0, "text": "Привет, 東京の皆さん! 🦊"},
        {"start": 3.0, "end": 9.0, "text": f"See {LONG_URL} for details."},
        {"start": 9.0, "end": 12.0, "text": "中文" * 200},
    ]}
    wd1, a1 = write_item(folder, 1, "first-talk-abc", t1, s1, "First talk")
    wd2, a2 = write_item(folder, 2, "second-def", t2, None, UNICODE_TITLE)
    wd3 = folder / "0003-missing-ghi"
    (wd3 / ".tmp").mkdir(parents=True)
    (wd3 / ".tmp" / "scratch.wav").write_bytes(b"RIFF")
    (wd3 / "audio.m4a.part").write_bytes(b"partial")
    (wd3 / "video.ytdl").write_text("{}")
    (wd3 / "log.txt").write_text("NotFound at download\n")
    (wd3 / "cookies.txt").write_text(COOKIES)  # the planted secrets
    (wd3 / ".env").write_text(f"OPENAI_API_KEY={SECRET_KEY}\n")
    (wd3 / "notes.txt").write_text(f"remember {SECRET_KEY}\n")
    (wd3 / "exported-browser.txt").write_text(COOKIES)  # a cookie jar under an innocent name
    (folder / "old-export.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    (folder / ".tmp-manifest.json.123").write_text("{")
    outside = root / "elsewhere-secret.txt"
    outside.write_text("not for export")
    os.symlink(outside, folder / "link.txt")

    items = [
        {"n": 1, "source": "https://example.com/a", "id": "abc", "title": "First talk", "status": "done",
         "stage": None, "attempts": 1, "error": None, "timings": {"download": 2.0, "transcribe": 10.0},
         "artifacts": a1, "meta": {"uploader": "Someone", "huge": "x" * 5000}, "flags": ["captions-missing"],
         "duration": 120.0, "workdir": str(wd1)},
        {"n": 2, "source": "https://example.com/b", "id": "def", "title": UNICODE_TITLE, "status": "done",
         "stage": None, "attempts": 2, "error": None, "timings": {"download": 4.0, "transcribe": 20.0},
         "artifacts": a2, "meta": {}, "flags": [], "duration": 60.0, "workdir": str(wd2)},
        {"n": 3, "source": "https://example.com/missing", "id": "ghi", "title": "=HYPERLINK(\"x\")",
         "status": "failed", "stage": "download", "attempts": 1,
         "error": {"type": "NotFound", "message": "HTTP Error 404: Not Found", "stage": "download",
                   "retryable": False, "attempt": 1, "at": 1000.0},
         "timings": {"download": 0.5}, "artifacts": {"txt": str(wd3 / "transcript.txt")}, "meta": {}, "flags": [],
         "duration": None, "workdir": str(wd3)},
    ]
    batch = {"id": "b-1", "name": "my lectures", "recipe": ["download", "transcribe"], "state": "done",
             "created_at": 1000.0, "finished_at": 1100.0, "counts": {"done": 2, "failed": 1}, "total": 3,
             "output_dir": str(folder), "options": {"model": "tiny.en", "openai_api_key": SECRET_KEY},
             "stage_stats": {}}
    return batch, items, folder


@pytest.fixture(scope="module")
def exported(batch_dir: tuple[dict[str, Any], list[dict[str, Any]], Path]) -> dict[str, Path]:
    batch, items, folder = batch_dir
    return export_batch(batch, items, folder, extra_manifest=folder.parent.parent / "copies" / "m.json",
                        extras=transcribe_outputs)


def test_outputs_are_written_in_the_batch_folder(exported: dict[str, Path], batch_dir: Any) -> None:
    """Every export lands in the batch folder, named after the batch slug, with no temp files left over."""
    folder = batch_dir[2]
    assert {k: p.name for k, p in exported.items() if k != "extra_manifest"} == {
        "manifest": "manifest.json", "manifest_csv": "manifest.csv", "errors": "errors.md", "stats": "stats.json",
        "pdf": "my-lectures.pdf", "zip": "my-lectures.zip"}
    assert all(p.parent == folder and p.is_file() for k, p in exported.items() if k != "extra_manifest")
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-") and p.name != ".tmp-manifest.json.123"]


def test_manifest_paths_are_relative_and_exist(exported: dict[str, Path]) -> None:
    """Manifest file paths are relative to the manifest's folder, point at real files, and are null otherwise."""
    doc = json.loads(exported["manifest"].read_text())
    base = exported["manifest"].parent
    by_n = {it["n"]: it for it in doc["items"]}
    for n in (1, 2):
        files = by_n[n]["files"]
        assert set(files) >= {"txt", "srt", "vtt", "json", "summary"}
        assert all(files[k] for k in ("txt", "srt", "vtt", "json", "summary"))
        assert {k for k, v in files.items() if not v} <= \
            {"notes", "docx", "words_srt", "words_vtt", "ass"}  # no --formats given
        for rel in filter(None, files.values()):
            assert not Path(rel).is_absolute() and (base / rel).is_file()
        assert by_n[n]["log"] == f"{Path(files['txt']).parent.as_posix()}/log.txt"
    assert set(by_n[3]["files"].values()) == {None}
    assert by_n[3]["error"]["type"] == "NotFound" and by_n[1]["flags"] == ["captions-missing"]
    assert by_n[1]["timings"] == {"download": 2.0, "transcribe": 10.0} and by_n[1]["duration"] == 120.0
    assert "huge" not in by_n[1]["meta"] and by_n[1]["meta"]["uploader"] == "Someone"
    assert doc["batch"]["options"] == {"model": "tiny.en", "openai_api_key": "***"}
    assert SECRET_KEY not in exported["manifest"].read_text()


def test_extra_manifest_copy_names_its_root(exported: dict[str, Path]) -> None:
    """The extra copy holds the same items, with files_root saying what the relative paths are relative to."""
    extra = json.loads(exported["extra_manifest"].read_text())
    main = json.loads(exported["manifest"].read_text())
    assert extra["items"] == main["items"]
    assert Path(extra["files_root"]) == exported["manifest"].parent.resolve()
    assert all((Path(extra["files_root"]) / rel).is_file() for rel in extra["items"][0]["files"].values() if rel)


def test_manifest_csv_is_flat_and_formula_safe(exported: dict[str, Path]) -> None:
    """The CSV has one row per item with flattened errors, files and timings, and defuses formula titles."""
    rows = list(csv.DictReader(exported["manifest_csv"].read_text(encoding="utf-8-sig").splitlines()))
    assert [r["n"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["error_type"] == "NotFound" and rows[2]["error_stage"] == "download"
    assert rows[2]["title"].startswith("'=")
    assert rows[0]["file_txt"].endswith("transcript.txt") and rows[0]["t_transcribe"] == "10.0"
    assert rows[1]["title"] == UNICODE_TITLE


def test_errors_md_names_the_failure_and_a_hint(exported: dict[str, Path]) -> None:
    """errors.md lists the failed source, stage, error, attempts, an actionable hint and the item's log."""
    md = exported["errors"].read_text()
    assert "1 of 3 item(s) failed" in md
    assert "https://example.com/missing" in md and "**Stage:** download" in md
    assert "NotFound: HTTP Error 404: Not Found" in md and "**Attempts:** 1" in md
    assert "returns 404; check it or remove it" in md
    assert "0003-missing-ghi/log.txt" in md
    assert "example.com/a" not in md


def test_errors_md_without_failures(tmp_path: Path) -> None:
    """With no failed items, errors.md says so plainly."""
    out = export_batch({"id": "x", "name": "clean"}, [], tmp_path)
    assert "No items failed." in out["errors"].read_text()
    assert set(out) == {"manifest", "manifest_csv", "errors", "stats"}


def test_hints_by_error_type() -> None:
    """Each error type maps to its own advice; unknown types point at the item's log."""
    assert "cookie" in hint_for("AuthFailed").lower()
    assert "cookies" in hint_for("RateLimited", "b1") and "retry-failed b1" in hint_for("RateLimited", "b1")
    assert "retry-failed \"my batch\"" in hint_for("NetworkError", "my batch")
    assert "private" in hint_for("Unavailable")
    assert "log.txt" in hint_for("KeyError") and "log.txt" in hint_for(None)


def test_stats_json_numbers(exported: dict[str, Path]) -> None:
    """stats.json sums stage busy time from item timings and derives means, throughput, wall time and audio."""
    st = json.loads(exported["stats"].read_text())
    assert st["stages"]["download"] == {"count": 3, "busy_s": 6.5, "mean_s": pytest.approx(2.167, abs=1e-3),
                                        "items_per_hour": pytest.approx(3 * 3600 / 6.5, abs=0.01)}
    assert st["stages"]["transcribe"] == {"count": 2, "busy_s": 30.0, "mean_s": 15.0, "items_per_hour": 240.0}
    assert list(st["stages"]) == ["download", "transcribe"]
    assert st["wall_s"] == 100.0 and st["by_status"] == {"done": 2, "failed": 1}
    assert st["audio_s"] == 180.0 and st["audio_items"] == 2 and st["items"] == 3


def test_pdf_has_one_bookmark_per_done_item(exported: dict[str, Path]) -> None:
    """The PDF opens, has a bookmark per done item (Unicode titles intact) and contains titles and summaries."""
    reader = pypdf.PdfReader(exported["pdf"])
    outline = reader.outline
    assert [o.title for o in outline] == ["First talk", UNICODE_TITLE]
    pages = [reader.get_destination_page_number(o) for o in outline]
    assert pages[0] >= 2 and pages[1] > pages[0]  # after the title page and the table of contents
    text = "\n".join(page.extract_text() for page in reader.pages)
    for needle in ("my lectures", "Contents", "First talk", "Второй доклад", "The first talk in one line.",
                   "Point two", "[01:05] Core", "[01:05] Here is the important part.", "Markdown-only summary.",
                   "very-long-path-segment"):
        assert needle in text, needle
    assert "missing" not in text.lower().split("contents")[1]  # failed items get no section


def test_zip_holds_outputs_and_nothing_secret(exported: dict[str, Path], batch_dir: Any) -> None:
    """The ZIP lists every output and item file, and no cookies, keys, scratch, partial, symlinked or zip files."""
    folder = batch_dir[2]
    with zipfile.ZipFile(exported["zip"]) as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        blobs = b"".join(zf.read(n) for n in names)
    for out in ("manifest.json", "manifest.csv", "errors.md", "stats.json", "my-lectures.pdf"):
        assert out in names
    for n in ("transcript.txt", "transcript.srt", "transcript.vtt", "transcript.json", "summary.md", "summary.json",
              "meta.json", "log.txt"):
        assert f"0001-first-talk-abc/{n}" in names
    assert "0003-missing-ghi/log.txt" in names
    assert not {n for n in names if n.endswith(".zip")}  # neither itself nor the earlier export
    for bad in ("cookies.txt", ".env", "notes.txt", "exported-browser.txt", ".tmp", ".part", ".ytdl", "link.txt",
                ".tmp-"):
        assert not [n for n in names if bad in n], bad
    assert SECRET_KEY.encode() not in blobs and b"Netscape HTTP Cookie File" not in blobs
    assert exported["zip"].parent == folder


def test_reexport_replaces_the_zip_without_nesting(batch_dir: Any, exported: dict[str, Path]) -> None:
    """Exporting again writes a fresh ZIP that does not contain the previous one."""
    batch, items, folder = batch_dir
    again = export_batch(batch, items, folder, extras=functools.partial(transcribe_outputs, pdf=False))
    with zipfile.ZipFile(again["zip"]) as zf:
        assert "my-lectures.zip" not in zf.namelist()
        assert "my-lectures.pdf" in zf.namelist()  # the earlier PDF is still a batch output


def test_secret_detection_by_name_and_content(tmp_path: Path) -> None:
    """Secret files are recognized by name patterns and by cookie/key content in their first 4 KB."""
    cases = {"cookies-main.txt": "x", "my_cookies.json": "x", "server.pem": "x", "id.key": "x",
             "token.json": "{}", "client_secret_123.json": "{}", ".env": "A=1", "x.netrc": "machine",
             "jar.txt": COOKIES, "keys.txt": f"key: {SECRET_KEY}",
             "conf.sh": "export GOOGLE_API_TOKEN=abcdefghijklmnop1234",
             "id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\n"}
    safe = {"transcript.txt": "We talked about cookies and tokens today.", "summary.json": "{\"skipped\": 1}"}
    for name, body in {**cases, **safe}.items():
        (tmp_path / name).write_text(body)
    assert all(is_secret_file(tmp_path / n) for n in cases)
    assert not any(is_secret_file(tmp_path / n) for n in safe)


def test_write_manifest_stays_a_thin_wrapper(tmp_path: Path) -> None:
    """write_manifest (used by the runner) writes manifest.json/.csv and an extra copy, without PDF or ZIP."""
    items = [{"n": 1, "source": "ep1", "status": "pending", "attempts": 0, "workdir": str(tmp_path / "0001-ep1")}]
    path = write_manifest({"id": "b", "name": "b"}, items, tmp_path / "b", tmp_path / "extra" / "m.json")
    assert path == tmp_path / "b" / "manifest.json"
    assert json.loads(path.read_text())["items"][0]["workdir"] == "../0001-ep1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv", "manifest.json"]
    assert (tmp_path / "extra" / "m.json").is_file()

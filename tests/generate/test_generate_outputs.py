"""A generate batch's outputs (manifest, errors.md, stats.json, the ZIP), the credits stock media asks for in
the description, the honest offline script, and the Generate page saying when the script is a template."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.outputs import export_batch
from pipeline.engine.stage import StageContext
from pipeline.recipes.generate import outputs
from pipeline.recipes.generate.report import REPORT
from pipeline.recipes.generate.stages.script import TEMPLATE_NOTE, offline_script, run_metadata
from pipeline.recipes.generate.youtube_meta import request_body
from state.reader import read_batch, read_summaries
from tests.conftest import ROOT, cli_env
from tests.generate.test_generate_script import ctx_for as script_ctx

TOPICS = ["how tides work", "Why is the sky blue?", "the 1929 crash"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """Three real 10-s videos (template script, espeak-ng after edge-tts is refused at a closed local port),
    the upload asked for with no YouTube token: each video is made, each upload fails."""
    tmp = tmp_path_factory.mktemp("gen")
    home = tmp / "home"
    topics = tmp / "topics.txt"
    topics.write_text("\n".join(TOPICS) + "\n")
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--home", str(home), "run", "--recipe", "generate", "--tts", "auto",
         "--length", "10", "--pace", "fast", "--retry-limit", "0", "--set", "size=270x480",
         "--set", "script_engine=offline", "--set", "edge_proxy=http://127.0.0.1:9", "--set", "upload=true",
         str(topics)], cwd=ROOT, env=cli_env(home), capture_output=True, text=True, timeout=240)
    assert res.returncode == 1, res.stderr  # every upload failed; the videos did not
    summary = read_summaries(home)[0]
    header, items = read_batch(home, summary.id)
    return header, items, Path(items[0]["workdir"]).parent


def test_batch_outputs_manifest_errors_stats_and_zip(batch: tuple[dict[str, Any], list[dict[str, Any]], Path]
                                                     ) -> None:
    """The manifest names each video's files and facts, errors.md says the videos are made but not uploaded
    (and how to fix it) and which parts fell back, and the ZIP holds the deliverables only, no secrets."""
    header, items, folder = batch
    wd = Path(items[1]["workdir"])
    # what the visuals stage leaves when a provider is throttled: one scene from it, one drawn frame
    (wd / "visuals.json").write_text(json.dumps({"provider": "pexels", "query_source": "visual", "scenes": [
        {"index": 1, "kind": "image", "path": "media/scene-001.jpg", "provider": "pexels", "query": "sky blue",
         "url": "https://www.pexels.com/photo/1/", "author": "Pat", "licence": "Pexels License",
         "attribution_required": False, "fallback": None},
        {"index": 2, "kind": "generated", "path": None, "provider": "local", "query": "sky blue",
         "fallback": "provider pexels: HTTP 429"}], "errors": ["provider pexels: HTTP 429 (Retry-After 60)"]}))
    # what must never leave the machine, and what is scratch
    (wd / ".upload-session.json").write_text('{"uri": "https://upload.example/session?upload_id=capability"}')
    (wd / "token.json").write_text('{"refresh_token": "1//secret"}')
    (wd / "notes.txt").write_text("OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz012345\n")
    (wd / "credits.txt").write_text("- Photo by Pat\n")
    os.symlink("/etc/passwd", wd / "thumbnail-link.png")
    out = export_batch(header, items, folder, extras=outputs.outputs, report=REPORT)

    doc = json.loads(out["manifest"].read_text())
    rows = {r["n"]: r for r in doc["items"]}
    assert set(rows[1]["files"]) >= {"video", "srt", "ass", "thumbnail", "metadata"}
    assert rows[1]["files"]["video"] == f"{Path(items[0]['workdir']).name}/video.mp4"
    assert rows[1]["files"]["thumbnail"] is None  # no thumbnail stage ran: the column is there, empty
    v = rows[1]["video"]
    assert v["bytes"] == (Path(items[0]["workdir"]) / "video.mp4").stat().st_size > 10_000
    assert (v["width"], v["height"], v["encoder"]) == (270, 480, "libx264") and 7 < v["duration_s"] < 16
    assert rows[1]["upload"] == {"status": "failed", "video_id": None, "url": None, "privacy": None,
                                 "publish_at": None}
    assert rows[1]["script"] == "template" and rows[1]["voice"] == "espeak-ng"
    assert "edge-tts unreachable" in rows[1]["fallbacks"]["tts"]
    assert rows[2]["visuals"]["by_source"] == {"pexels": 1, "generated": 1}
    assert rows[2]["visuals"]["fell_back"] == [{"scene": 2, "reason": "provider pexels: HTTP 429"}]
    csv_head = out["manifest_csv"].read_text(encoding="utf-8-sig").splitlines()[0]
    assert "file_video,file_srt,file_ass,file_thumbnail,file_metadata" in csv_head

    md = out["errors"].read_text()
    assert "## Not uploaded" in md and "3 video(s) were made but not uploaded" in md
    assert "youtube-auth CLIENT_SECRETS.json" in md and "video: `0001-how-tides-work/video.mp4`" in md
    assert "## Media fallbacks" in md and "`scene 2: provider pexels: HTTP 429`" in md
    assert "`provider: provider pexels: HTTP 429 (Retry-After 60)`" in md and md.count("`tts: edge-tts") == 3
    stats = json.loads(out["stats"].read_text())
    assert stats["items"] == 3 and stats["by_status"] == {"failed": 3} and stats["stages"]["render"]["count"] == 3

    assert out["zip"] == folder / f"{folder.name}.zip"
    with zipfile.ZipFile(out["zip"]) as zf:
        names = set(zf.namelist())
        assert zf.testzip() is None
    dirs = sorted(Path(it["workdir"]).name for it in items)
    per_item = {"video.mp4", "subtitles.srt", "subtitles.ass", "metadata.json", "script.json", "log.txt"}
    expected = {"manifest.json", "manifest.csv", "errors.md", "stats.json",
                *(f"{d}/{f}" for d in dirs for f in per_item), f"{wd.name}/visuals.json", f"{wd.name}/credits.txt"}
    assert names == expected
    assert all(not n.startswith(("/", "../")) and ".." not in n.split("/") for n in names)


def ctx_for(tmp_path: Path, **options: Any) -> StageContext:
    return script_ctx(tmp_path, stage="metadata", **options)


def scene(i: int, **kw: Any) -> dict[str, Any]:
    return {"index": i, "kind": "image", "path": f"media/scene-{i:03d}.jpg", "provider": "openverse",
            "query": "harbour", "url": f"https://openverse.example/image/{i}", "author": f"Author {i}",
            "author_url": "", "licence": "CC BY 2.0", "licence_url": "https://creativecommons.org/licenses/by/2.0/",
            "attribution_required": True, "width": 270, "height": 480, "fallback": None, **kw}


def metadata_with(tmp_path: Path, scenes: list[dict[str, Any]] | str, description: str = ""
                  ) -> tuple[dict[str, Any], Any]:
    ctx = ctx_for(tmp_path)
    script = offline_script("how tides work").model_dump()
    if description:
        script["description"] = description
    (ctx.workdir / "script.json").write_text(json.dumps(script))
    (ctx.workdir / "visuals.json").write_text(scenes if isinstance(scenes, str) else json.dumps(
        {"provider": "openverse", "query_source": "visual", "scenes": scenes, "errors": []}))
    res = run_metadata({"n": 1, "source": "how tides work", "meta": {}, "flags": []}, ctx)
    return json.loads(Path(res.artifacts["metadata"]).read_text()), res


def test_description_credits_what_the_licences_ask_for(tmp_path: Path) -> None:
    """A CC BY picture is credited once (title, author, licence, link) however many scenes show it; CC0 and
    drawn frames are not; Pexels gets its customary line; credits.txt holds the same."""
    meta, res = metadata_with(tmp_path, [
        scene(1, title="Harbour at dawn", author="Ann <Author>"), scene(3, title="Harbour at dawn", author="Ann",
                                                              url="https://openverse.example/image/1"),
        scene(2, url="https://openverse.example/image/cc0", licence="CC0 1.0", attribution_required=False),
        scene(4, provider="pexels", url="https://www.pexels.com/photo/9/", author="Pat", licence="Pexels License",
              attribution_required=False, kind="video"),
        {"index": 5, "kind": "generated", "path": None, "provider": "local", "fallback": "no picture found"}])
    d = meta["description"]
    line = ('- "Harbour at dawn" by Ann Author, CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/): '
            "https://openverse.example/image/1")
    assert f"Credits:\n{line}\nStock media from Pexels: Pat." in d and d.count("Harbour at dawn") == 1
    assert "cc0" not in d and "#tides" in d and d.startswith("Today's topic: how tides work.")
    assert len(d.encode()) <= 5000 and "<" not in d
    assert [c["scenes"] for c in meta["credits"] if c["required"]] == [[1, 3]]
    credits = (tmp_path / "item" / "credits.txt").read_text()
    assert line in credits and "Stock media from Pexels: Pat." in credits and "cc0" not in credits
    assert res.meta["credits"] == 1 and "flags" not in res.meta


def test_credits_fit_youtubes_limit_before_the_body(tmp_path: Path) -> None:
    """A long body is cut for the credits; 120 CC BY assets go short, then as many as fit plus a count, all
    of them still in credits.txt, flagged credits-truncated."""
    meta, _ = metadata_with(tmp_path, [scene(i) for i in range(1, 4)], description="word " * 1200)
    d = meta["description"]
    assert len(d.encode()) <= 5000 and d.count("CC BY 2.0 (https://creativecommons.org/") == 3  # the full form
    assert d.endswith("https://openverse.example/image/3") and d.startswith("word word")

    (tmp_path / "many").mkdir()
    meta, res = metadata_with(tmp_path / "many", [scene(i, author=f"A very long author name number {i}")
                                                  for i in range(1, 121)])
    d = meta["description"]
    kept = d.count("- Photo by")
    assert len(d.encode()) <= 5000 and 20 < kept < 120 and "CC BY 2.0 (https://" not in d  # the short form
    assert f"- and {120 - kept} more, listed in credits.txt beside the video" in d
    assert res.meta["credits_left_out"] == 120 - kept and res.meta["flags"] == ["credits-truncated"]
    assert (tmp_path / "many" / "item" / "credits.txt").read_text().count("CC BY 2.0 (https://") == 120
    assert d.startswith("#tides #work #explainer\n\nCredits:\n")  # no room for the body
    assert request_body(meta, now=0).body["snippet"]["description"] == d  # the upload sends it as it is


def test_unreadable_visuals_are_flagged_not_fatal(tmp_path: Path) -> None:
    """A visuals.json that does not parse costs the credits, never the metadata: flagged with its reason."""
    meta, res = metadata_with(tmp_path, "{not json")
    assert meta["title"] == "How tides work" and meta["credits"] == []
    assert res.meta["flags"] == ["credits-failed"] and "JSONDecodeError" in res.meta["credits_error"]
    item = {"n": 1, "title": "x", "meta": res.meta, "flags": res.meta["flags"]}
    assert "credits: JSONDecodeError" in "\n".join(REPORT.sections([item], "b"))


@pytest.mark.parametrize("topic,intro,title", [
    ("how tides work", "Today's topic: how tides work.", "How tides work"),
    ("Why is the sky blue?", "Why is the sky blue? That is the question this video is about.",
     "Why is the sky blue?"),
    ("the 1929 crash", "Today's topic: the 1929 crash.", "The 1929 crash"),
    ("What is a black hole", "What is a black hole? That is the question this video is about.",
     "What is a black hole?"),
    ("The Roman Empire", "Today's topic: the Roman Empire.", "The Roman Empire"),
])
def test_offline_script_says_what_it_is_and_reads_well(topic: str, intro: str, title: str) -> None:
    """The template names the topic in good English whatever its grammar, says it was written without a
    language model, states no facts, and never glues the topic into a question ("what is how…")."""
    s = offline_script(topic, target_s=30)
    assert s.title == title and s.script.startswith(intro + " " + TEMPLATE_NOTE)
    assert TEMPLATE_NOTE in s.description and not re.search(r"what is (how|why|the)\b", s.script, re.I)
    sentences = re.split(r"(?<=[.!?])\s+", s.script)
    assert all(x[:1].isupper() and x[-1] in ".?!" for x in sentences)
    assert "explainer" in s.hashtags and not {"how", "why", "the", "is"} & set(s.hashtags)
    assert s.scenes[0].visual and not s.scenes[0].visual.startswith(("how", "why", "the"))
    short = offline_script(topic, target_s=10)
    assert TEMPLATE_NOTE in short.script and len(short.script.split()) <= 10 * 2.6 * 1.2


def test_generate_page_says_when_the_script_is_a_template(page_home: Path, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """No LLM set: the page says scripts will be a template and what an LLM would add; with a server set it
    names the model and server instead (no credentials from the URL)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    page = str(ROOT / "pages" / "screens" / "generate.py")
    at = AppTest.from_file(page, default_timeout=60).run()
    assert not at.exception
    info = " ".join(i.value for i in at.info)
    assert "Scripts: offline template (no LLM is set" in info and "An LLM (an API key" in info
    assert "states no facts" in info

    from pages.screens._engine import get_engine, get_monitor

    get_monitor().stop()
    get_engine().shutdown(interrupt=True, timeout=5)
    st.cache_resource.clear()
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:hunter2@127.0.0.1:9/v1")
    at = AppTest.from_file(page, default_timeout=60).run()
    assert not at.exception and not at.info
    caption = " ".join(c.value for c in at.caption)
    assert "Scripts: written by the LLM" in caption and "http://127.0.0.1:9/v1" in caption
    assert "hunter2" not in caption


def test_failed_extras_and_media_fallbacks_are_reported_apart() -> None:
    """A thumbnail the API refused is a failed extra; a music bed that would not decode and a throttled
    provider are media fallbacks (the video has neither): each under its heading with its reason."""
    item = {"n": 4, "title": "Comets", "status": "done", "flags": ["media-fallback", "music-failed",
                                                                   "upload-extras-failed"],
            "meta": {"thumbnail": "failed", "thumbnail_error": "forbidden: custom thumbnails need a verified channel",
                     "playlist": "added", "playlist_error": None, "media_fallback": "provider pexels: HTTP 429",
                     "music": {"track": "bed.mp3", "error": "bed.mp3 does not decode"}}}
    assert REPORT.row is not None
    row = REPORT.row(item)
    assert row["extras_failed"] == {"thumbnail": "forbidden: custom thumbnails need a verified channel"}
    assert row["fallbacks"] == {"media": "provider pexels: HTTP 429", "music": "bed.mp3 does not decode"}
    assert row["upload"]["status"] is None and row["video"] is None
    md = "\n".join(REPORT.sections([item], "b"))
    extras, media = md.split("## Media fallbacks")
    assert "## Extras that failed" in extras and "thumbnail: forbidden" in extras and "music" not in extras
    assert "`music: bed.mp3 does not decode`" in media and "`media: provider pexels: HTTP 429`" in media
    assert "## Not uploaded" not in md

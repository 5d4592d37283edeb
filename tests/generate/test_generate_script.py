"""The generate recipe's words: topics input, script (LLM through the local server, or the offline
template), scene planning from pace, and YouTube metadata limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.stage import StageContext
from pipeline.recipes.generate.stages.script import (
    clean_for_speech,
    offline_script,
    plan_scenes,
    run_metadata,
    run_plan,
    run_script,
)
from pipeline.recipes.generate.topics import parse_topics
from tests.llm_server import FakeLLMServer


def ctx_for(tmp_path: Path, stage: str = "script", **options: Any) -> StageContext:
    wd = tmp_path / "item"
    wd.mkdir(exist_ok=True)
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage=stage, workdir=wd, options=options,
                        attempt=1, account=None, _progress=lambda f: None, _cancelled=lambda: False,
                        home=tmp_path / "home", pool_size=1)


def test_topics_lines_and_csv_with_row_options() -> None:
    """Plain lines become topics; a CSV carries per-row options; a bad row is reported with its line."""
    plain = parse_topics("# ideas\nHow tides work\n\nWhy bread rises\nHow tides work\n")
    assert [i["source"] for i in plain.items] == ["How tides work", "Why bread rises"] and not plain.invalid
    csv_text = ("topic,voice,length,aspect,privacy,publish_at\n"
                "Tides,en-GB-SoniaNeural,45,16:9,unlisted,\n"
                "Bread,,99999,9:16,,\n"
                "Comets,,30,9:16,,2026-12-01T09:00:00+00:00\n")
    t = parse_topics(csv_text)
    assert [i["source"] for i in t.items] == ["Tides", "Comets"]
    assert t.items[0]["meta"] == {"voice": "en-GB-SoniaNeural", "length_s": 45.0, "aspect": "16:9",
                                  "privacy": "unlisted"}
    assert t.items[1]["meta"]["publish_at"].startswith("2026-12-01T09:00")
    assert [(b.line_no, b.text) for b in t.invalid] == [(3, "Bread")] and "between 10 and 1800" in t.invalid[0].reason


def test_markdown_and_emoji_never_reach_the_voice() -> None:
    """Bold, headings, links and emoji are stripped; words stay."""
    assert clean_for_speech("## **Big** idea 🚀 see [the docs](http://x) — `now`!") == "Big idea see the docs — now!"


def test_offline_template_always_runs(tmp_path: Path) -> None:
    """Without an endpoint the script comes from a template built from the topic."""
    ctx = ctx_for(tmp_path)
    res = run_script({"n": 1, "source": "how tides work", "meta": {"length_s": 30}}, ctx)
    doc = json.loads(Path(res.artifacts["script"]).read_text())
    assert doc["script_engine"] == "template" and "tides" in doc["script"].lower() and len(doc["scenes"]) >= 3
    assert res.meta["title"] == "How tides work"


def test_llm_script_is_schema_checked_and_retried(tmp_path: Path, llm_server: FakeLLMServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Invalid JSON from the model is fed back and asked again; the valid answer is used."""
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    good = {"title": "Tides, **explained** 🌊", "hook": "Why twice a day?", "script": "The moon pulls. Water moves.",
            "scenes": [{"narration": "The **moon** pulls 🌙.", "visual": "moon"},
                       {"narration": "Water moves.", "visual": "sea"}],
            "hashtags": ["#tides", "ocean"], "description": "Tides in a minute."}
    answers = iter([json.dumps({"title": "x"}), json.dumps(good)])
    llm_server.responder = lambda req: next(answers)
    res = run_script({"n": 1, "source": "tides", "meta": {}}, ctx_for(tmp_path))
    doc = json.loads(Path(res.artifacts["script"]).read_text())
    assert doc["script_engine"] == "llm" and doc["scenes"][0]["narration"] == "The moon pulls."
    assert doc["hashtags"] == ["tides", "ocean"]
    second = llm_server.chat_requests()[1]
    assert "not valid" in second["messages"][-1]["content"]


@pytest.mark.parametrize("pace,expected", [("fast", 10), ("normal", 8), ("slow", 6)])
def test_scene_count_follows_the_pace(pace: str, expected: int) -> None:
    """About one scene per 3 s (fast), 4 s (normal) or 5 s (slow) of speech; sentences are never split."""
    sentences = [f"Sentence number {i} has exactly eight words here." for i in range(10)]  # 80 words, ~31 s
    scenes = plan_scenes([{"narration": " ".join(sentences), "visual": "v"}], 30, pace)
    assert len(scenes) == expected
    assert " ".join(s["narration"] for s in scenes) == " ".join(sentences)
    assert [s["index"] for s in scenes] == list(range(1, expected + 1))


def test_plan_and_metadata_limits(tmp_path: Path) -> None:
    """The plan sizes the frames by aspect; metadata keeps YouTube's title, description and tag limits."""
    ctx = ctx_for(tmp_path)
    long_title = "A" * 150
    script = offline_script("x").model_dump()
    script.update(title=long_title, description="é" * 4000, hashtags=[f"tag number {i}" for i in range(80)])
    (ctx.workdir / "script.json").write_text(json.dumps(script))
    plan = json.loads(Path(run_plan({"n": 1, "source": "x", "meta": {"aspect": "16:9"}}, ctx)
                           .artifacts["plan"]).read_text())
    assert (plan["width"], plan["height"], plan["fps"]) == (1920, 1080, 30)
    meta = json.loads(Path(run_metadata({"n": 1, "source": "x", "meta": {"publish_at": "2026-12-01T09:00:00+00:00",
                                                                         "privacy": "public"}}, ctx)
                           .artifacts["metadata"]).read_text())
    assert len(meta["title"]) == 100 and len(meta["description"].encode()) <= 5000
    assert sum(len(t) + 2 for t in meta["tags"]) + len(meta["tags"]) - 1 <= 500 and meta["tags"]
    assert meta["privacy"] == "private" and meta["publish_at"]
    from pipeline.recipes.generate.youtube import fit_tags

    assert fit_tags(["a b", "A B", "#c"]) == ["a b", "c"]


def test_llm_script_climbs_the_same_ladder_and_falls_back_to_the_template(tmp_path: Path, llm_server: FakeLLMServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The script stage shares the summary's caller: llama.cpp's 500 on json_schema steps down to json_object;
    a model that only writes prose ends in the template, flagged with the reason (the video is still made)."""
    from pipeline.common import llmcall
    from tests.llm_server import field_responder

    llmcall.forget()
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    good = {"title": "Tides", "hook": "Why?", "script": "The moon pulls the sea.",
            "scenes": [{"narration": "The moon pulls the sea.", "visual": "moon"}], "hashtags": ["tides"],
            "description": "Tides."}
    llm_server.responder = field_responder("llama_cpp", good=good)
    res = run_script({"n": 1, "source": "tides", "meta": {}}, ctx_for(tmp_path))
    assert json.loads(Path(res.artifacts["script"]).read_text())["script_engine"] == "llm"
    assert [(r.get("response_format") or {}).get("type") for r in llm_server.chat_requests()][:2] == [
        "json_schema", "json_object"]

    llm_server.responder = field_responder("prose")
    (tmp_path / "two").mkdir()
    ctx = ctx_for(tmp_path / "two")
    res = run_script({"n": 1, "source": "how tides work", "meta": {}}, ctx)
    doc = json.loads(Path(res.artifacts["script"]).read_text())
    assert doc["script_engine"] == "template" and "stayed invalid" in doc["fallback_reason"]
    assert res.meta["flags"] == ["script-fallback"] and "tides" in doc["script"].lower()

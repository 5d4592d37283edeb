"""``--translate-to``: the LLM translates a transcript chunk by chunk (the real SDK against the local test server),
every answer maps back 1:1 to segment ids with the timing untouched, a model that drops or merges a segment is
re-asked or flagged, no LLM is a note on a done item, and a failed translation is retried on its own."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.common import formats, llmcall
from pipeline.common.llm import LLMConfig, count_tokens
from pipeline.engine.core import Engine
from pipeline.recipes.transcribe import translate as tr
from pipeline.recipes.transcribe.sources import expand
from tests.conftest import fast_settings
from tests.llm_server import FakeLLMServer, Reply, error, valid_summary
from tests.media_server import MediaServer
from tests.transcribe.test_summary_outcomes import QUICK_RETRY, assert_core_files, point_at

SEG_LINE = re.compile(r'^\{"id": \d+, "text": .*\}$', re.M)
CHAIN = ("captions", "download", "transcribe", "summarize", "translate", "export")


@pytest.fixture(autouse=True)
def _fresh_ladder() -> None:
    llmcall.forget()
    llmcall.clear_down()


def asked(req: dict[str, Any]) -> list[dict[str, Any]]:
    """The segments a chat request asks to translate (from its first user message; re-asks repeat it)."""
    first = next(m["content"] for m in req["messages"] if m["role"] == "user")
    return [json.loads(line) for line in SEG_LINE.findall(first)]


def is_translation(req: dict[str, Any]) -> bool:
    return req["messages"][0]["content"].startswith(tr.SYSTEM_PROMPT)


def translator(drop: Callable[[list[int]], set[int]] = lambda ids: set(),
               merge: Callable[[list[int]], set[int]] = lambda ids: set()) -> Callable[[dict[str, Any]], Reply]:
    """A model that translates to "[de] <text>": ids in ``drop(ids)`` are left out, ids in ``merge(ids)`` are
    appended to the segment before them (and left out), as weak models do; summaries are answered too."""

    def respond(req: dict[str, Any]) -> Reply:
        if not is_translation(req):
            return json.dumps(valid_summary(chapters=[{"start": 0, "title": "Opening"}]))
        segs = asked(req)
        ids = [s["id"] for s in segs]
        gone, merged = drop(ids), merge(ids)
        out: list[dict[str, Any]] = []
        for s in segs:
            if s["id"] in merged and out:
                out[-1]["text"] += " [de] " + s["text"]
            elif s["id"] not in gone:
                out.append({"id": s["id"], "text": "[de] " + s["text"]})
        return json.dumps({"segments": out})

    return respond


def transcript(n: int = 40) -> dict[str, Any]:
    segs = [{"id": i, "start": round(1.37 * i, 3), "end": round(1.37 * i + 1.2, 3),
             "text": f" Sentence number {i} talks about tides and the moon.",
             "words": [{"start": 1.37 * i, "end": 1.37 * i + 0.3, "word": " Sentence", "probability": 0.9}]}
            for i in range(n)]
    segs[5]["text"] = "  "  # a segment with no text: kept as is, never asked
    return {"language": "en", "duration": 1.37 * n + 2, "source": "whisper", "segments": segs}


def config_for(server: FakeLLMServer) -> LLMConfig:
    return LLMConfig(base_url=server.base_url, api_key="sk-test-translate-0123456789", max_retries=1)


def run_translate(server: FakeLLMServer, tmp_path: Path, doc: dict[str, Any], **kw: Any) -> tr.Translation:
    cache = tr.Cache(tmp_path / tr.cache_name("de"), "de")
    return tr.translate(doc, "de", config_for(server), cache=cache, home=tmp_path, **kw)


def test_chunks_map_back_one_to_one_with_timings_unchanged(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    """40 segments in several chunks of consecutive ids within the budget: each id translated once, every start
    and end exactly as before, word times dropped, usage and cost summed from what the server reported."""
    llm_server.responder = translator()
    doc = transcript()
    res = run_translate(llm_server, tmp_path, doc, chunk_tokens=120)
    reqs = llm_server.chat_requests()
    assert res.outcome == "llm" and res.chunks == len(reqs) >= 3, (res.outcome, len(reqs))
    seen: list[int] = []
    for r in reqs:
        ids = [s["id"] for s in asked(r)]
        assert ids == [j for j in range(ids[0], ids[-1] + 1) if j != 5]  # consecutive; the empty one never sent
        assert sum(count_tokens(json.dumps(s), "gpt-4o-mini") + 1 for s in asked(r)) <= 120 or len(ids) == 1
        assert r["response_format"]["type"] == "json_schema" and r["max_tokens"] > 0
        seen += ids
    assert sorted(seen) == [i for i in range(40) if i != 5]
    out = res.transcript["segments"]
    assert [(s["start"], s["end"]) for s in out] == [(s["start"], s["end"]) for s in doc["segments"]]
    assert all("words" not in s for s in out) and out[5]["text"] == ""
    assert out[7]["text"] == "[de] Sentence number 7 talks about tides and the moon."
    assert res.transcript["language"] == "de" and res.transcript["translated_from"] == "en"
    assert res.usage == llm_server.usage_sent() and res.cost_usd > 0
    files = tr.write_files(tmp_path, "de", res)
    srt = Path(files["translation_srt"]).read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,200\n[de] Sentence number 0")
    assert formats.parse_srt(srt)[-1]["end"] == pytest.approx(doc["segments"][-1]["end"], abs=1e-3)
    assert set(files) == {"translation_json", "translation_txt", "translation_srt", "translation_vtt"}


def test_merged_segment_is_asked_again_and_repaired(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    """A model that folds segment 12 into 11 in every long request: the re-ask still merges, so 11-13 go out
    again as a small request, whose answer replaces the swallowed text; outcome ``repaired``."""
    llm_server.responder = translator(merge=lambda ids: {12} if len(ids) > 3 and 12 in ids else set())
    res = run_translate(llm_server, tmp_path, transcript(20))
    out = res.transcript["segments"]
    assert res.outcome == "repaired" and not res.missing, res
    assert out[11]["text"] == "[de] Sentence number 11 talks about tides and the moon."  # not 11 + 12
    assert out[12]["text"] == "[de] Sentence number 12 talks about tides and the moon."
    ids = [[s["id"] for s in asked(r)] for r in llm_server.chat_requests()]
    assert ids[-1] == [11, 12, 13] and len(ids) == 3  # the chunk, its re-ask, the repair
    assert any("asked again" in a for a in res.adjustments)


def test_dropped_segment_is_flagged_partial_then_only_it_is_asked(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    """A model that never returns segment 7: it keeps its English text, marked untranslated, outcome ``partial``;
    asked again with the cache (a retry), only segment 7 goes out and the outcome is ``llm``."""
    llm_server.responder = translator(drop=lambda ids: {7})
    first = run_translate(llm_server, tmp_path, transcript(12))
    seg7 = first.transcript["segments"][7]
    assert first.outcome == "partial" and first.missing == [7]
    assert seg7["untranslated"] and seg7["text"] == "Sentence number 7 talks about tides and the moon."
    assert any("ids 7" in a for a in first.adjustments)
    spent = first.usage
    llm_server.requests.clear()
    llm_server.responder = translator()
    again = run_translate(llm_server, tmp_path, transcript(12))
    assert [[s["id"] for s in asked(r)] for r in llm_server.chat_requests()] == [[7]]
    assert again.outcome == "llm" and again.transcript["segments"][7]["text"].startswith("[de] ")
    assert again.usage["input_tokens"] > spent["input_tokens"]  # the cache keeps the whole item's spend


def test_prose_model_gives_up_after_two_chunks(llm_server: FakeLLMServer, tmp_path: Path) -> None:
    """A model that answers prose whatever is asked: after two chunks with nothing usable the translation stops
    (no paying for every chunk), raising InvalidAnswer with the tokens spent."""
    llm_server.responder = lambda req: "Sure! Here is the translation you asked for, in German."
    with pytest.raises(llmcall.InvalidAnswer) as got:
        run_translate(llm_server, tmp_path, transcript(40), chunk_tokens=120)
    assert len(llm_server.chat_requests()) == 2 * 2  # two chunks of 6+, each tried twice (max_retries=1), no more
    assert got.value.usage["input_tokens"] > 0


def test_language_names_and_slugs() -> None:
    """Codes get a name in the prompt; any value gives a safe file name; same language is detected."""
    assert tr.language_name("de") == "German (de)" and tr.language_name("pt-BR") == "Portuguese (pt-BR)"
    assert tr.language_name("Klingon") == "Klingon"
    assert tr.file_names("pt-BR")["srt"] == "transcript.pt-br.srt" and tr.lang_slug("../../x") == "x"
    assert tr.same_language({"language": "en"}, "EN") and not tr.same_language({"language": None}, "en")


def test_outcome_meta_keeps_other_flags_and_adds_to_the_summary_ledger(tmp_path: Path) -> None:
    """A new outcome replaces the translation flags only, and the ledger is the summary's spend (from
    summary.json) plus the translation's, however often the stage runs."""
    from pipeline.recipes.transcribe.stages.translate import outcome_meta

    (tmp_path / "summary.json").write_text(json.dumps({"usage": {"input_tokens": 100, "output_tokens": 20},
                                                       "cost_usd": 0.001}))
    item = {"flags": ["summary-repaired", "translation-failed"]}
    meta = outcome_meta(item, tmp_path, "de", "repaired", usage={"input_tokens": 50, "output_tokens": 60},
                        cost=0.002)
    assert meta["flags"] == ["summary-repaired", "translation-repaired"]
    assert meta["llm_usage"] == {"input_tokens": 150, "output_tokens": 80} and meta["llm_cost_usd"] == 0.003
    again = outcome_meta({**item, "flags": meta["flags"]}, tmp_path, "de", "llm",
                         usage={"input_tokens": 50, "output_tokens": 60}, cost=0.002)
    assert again["llm_usage"] == meta["llm_usage"] and again["flags"] == ["summary-repaired"]


# -- through the engine -----------------------------------------------------------------------------------------


def run_batch(engine: Engine, name: str, url: str, **options: Any) -> dict[str, Any]:
    engine.submit(name, [e.to_item() for e in expand(url).entries], recipe="transcribe", options=options)
    s = engine.wait(name, timeout=120)
    assert s.state == "done", s
    (it,) = engine.items(name)
    assert_core_files(it)
    return it


def test_offline_gives_the_note_and_a_done_item(make_engine: Callable[..., Engine], media_server: MediaServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """No key and no server: the item is done with its transcript, the meta says translation needs an LLM and
    the flag lets ``retry_translations`` ask once one is set; no translated file is written."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    it = run_batch(e, "off", media_server.url("/captioned.html"), translate_to="de")
    assert it["meta"]["translation_outcome"] == "offline" and it["meta"]["translation_reason"] == tr.NEEDS_LLM
    assert "translation-failed" in it["flags"]
    assert not list(Path(it["workdir"]).glob("transcript.de.*"))
    assert list(e.batch_header("off")["recipe"]) == list(CHAIN)


def test_batch_translate_to_de_writes_translated_subtitles(make_engine: Callable[..., Engine],
                                                           media_server: MediaServer, llm_server: FakeLLMServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A captioned video with ``translate_to="de"``: transcript.de.json/.txt/.srt/.vtt beside the English files,
    the same segment times, the translation's tokens in the item's ledger together with the summary's."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = translator()
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    it = run_batch(e, "de", media_server.url("/captioned.html"), translate_to="de", summarizer="llm")
    wd = Path(it["workdir"])
    en = json.loads((wd / "transcript.json").read_text())
    de = json.loads((wd / "transcript.de.json").read_text())
    assert [(s["start"], s["end"]) for s in de["segments"]] == [(s["start"], s["end"]) for s in en["segments"]]
    assert all(s["text"].startswith("[de] ") for s in de["segments"] if s["text"])
    for ext in ("txt", "srt", "vtt"):
        assert "[de] " in (wd / f"transcript.de.{ext}").read_text(), ext
        assert it["artifacts"][f"translation_{ext}"] == str(wd / f"transcript.de.{ext}")
    cues_en = formats.parse_srt((wd / "transcript.srt").read_text())
    cues_de = formats.parse_srt((wd / "transcript.de.srt").read_text())
    # Every segment still starts its cue at its own time; a longer translated line may be cut into more cues
    # inside its segment, and a short last cue is held for the minimum reading time, as for any subtitle.
    assert {c["start"] for c in cues_en} <= {c["start"] for c in cues_de}
    assert 0 <= cues_de[-1]["end"] - cues_en[-1]["end"] <= formats.MIN_CUE_S
    meta = it["meta"]
    assert meta["translation_outcome"] == "llm" and not any(f.startswith("translation-") for f in it["flags"])
    assert meta["llm_usage"] == llm_server.usage_sent()  # summary + translation, each counted once
    assert 0 < meta["translation_usage"]["input_tokens"] < meta["llm_usage"]["input_tokens"]
    rows = json.loads((Path(e.summary("de").output_dir) / "manifest.json").read_text())["items"]
    assert rows[0]["llm"]["input_tokens"] == llm_server.usage_sent()["input_tokens"]


def test_failed_translation_is_flagged_then_retried_alone(make_engine: Callable[..., Engine],
                                                          media_server: MediaServer, llm_server: FakeLLMServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The server keeps failing (HTTP 500): retried by the runner, then flagged with the reason, item done.
    ``retry_translations`` once it answers: only translation requests, the transcript untouched, flag gone."""
    point_at(monkeypatch, llm_server.base_url)
    llm_server.responder = lambda req: error(500, "The server had an error while processing your request.",
                                             type_="server_error")
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    it = run_batch(e, "fail", media_server.url("/captioned.html"), translate_to="de", summarizer="offline")
    assert it["meta"]["translation_outcome"] == "failed" and "translation-failed" in it["flags"]
    assert "unreachable or failing" in it["meta"]["translation_reason"]
    assert len(llm_server.chat_requests()) == 3  # first try + summary_retries (2) runner retries
    tr_file = Path(it["workdir"]) / "transcript.json"
    before = tr_file.stat().st_mtime_ns
    llm_server.requests.clear()
    llm_server.responder = translator()
    assert e.reopen("fail", "retry_translations") == 1
    assert e.wait("fail", timeout=60).state == "done"
    (again,) = e.items("fail")
    assert again["meta"]["translation_outcome"] == "llm" and "translation-failed" not in again["flags"]
    assert (Path(again["workdir"]) / "transcript.de.srt").exists() and tr_file.stat().st_mtime_ns == before
    assert llm_server.chat_requests() and all(is_translation(r) for r in llm_server.chat_requests())
    assert e.reopen("fail", "retry_translations") == 0


def test_batch_stored_with_the_old_five_stages_keeps_them(make_engine: Callable[..., Engine],
                                                          media_server: MediaServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch stored before ``translate`` existed (its own five-stage list) runs to done on its list; nothing is
    translated and retry_translations finds nothing to reopen."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    e = make_engine(settings=fast_settings(retry=QUICK_RETRY))
    old = ["captions", "download", "transcribe", "summarize", "export"]
    e.submit("old", [x.to_item() for x in expand(media_server.url("/captioned.html")).entries], recipe=old,
             options={"recipe_name": "transcribe", "translate_to": "de"})
    assert e.wait("old", timeout=120).state == "done"
    (it,) = e.items("old")
    assert_core_files(it)
    assert list(e.batch_header("old")["recipe"]) == old and "translation_outcome" not in it["meta"]
    assert e.reopen("old", "retry_translations") == 0

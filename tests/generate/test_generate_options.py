"""The generate recipe's typed options: defaults, one yes/no parser, CSV rows through the same parsers, unknown
keys ignored, and stages reading the parsed object (``ctx.opts``) rather than the raw dict."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from pipeline import errors
from pipeline.config.settings import Settings
from pipeline.engine.recipe import frozen_options
from pipeline.engine.stage import StageContext
from pipeline.recipes.generate import options as gen_options
from pipeline.recipes.generate.options import GenerateOptions, options_of, parse_options
from pipeline.recipes.generate.recipe import RECIPE
from pipeline.recipes.generate.stages.script import offline_script, run_metadata, run_plan, run_script
from pipeline.recipes.generate.topics import parse_topics


def ctx_for(tmp_path: Path, opts: Any = None, **options: Any) -> StageContext:
    wd = tmp_path / "item"
    wd.mkdir(parents=True, exist_ok=True)
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage="plan", workdir=wd, options=options,
                        attempt=1, account=None, _progress=lambda f: None, _cancelled=lambda: False,
                        home=tmp_path / "home", opts=opts)


def test_defaults_are_the_stages_old_defaults() -> None:
    """Nothing set: the values the stages used to fall back to one by one."""
    o = GenerateOptions.parse({})
    assert o == GenerateOptions()
    assert (o.style, o.length_s, o.script_engine, o.llm_model, o.llm_base_url) == ("", 60.0, "auto", None, None)
    assert (o.aspect, o.size, o.pace, o.theme, o.background_dir) == ("9:16", None, "normal", "dark", None)
    assert (o.voice, o.rate, o.privacy, o.publish_at, o.category_id) == ("en-US-AriaNeural", "+0%", None, None, "27")
    assert (o.upload, o.youtube_daily_units, o.youtube_upload_cost, o.upload_chunksize, o.upload_retries,
            o.upload_backoff_s) == (False, 10_000, 1_600, 8 * 1024 * 1024, 8, 1.0)
    assert (o.tts, o.espeak_voice, o.espeak_wpm, o.edge_timeout_s, o.edge_proxy) == ("auto", None, 175, 60.0, None)
    assert (o.burn_subtitles, o.frame_text, o.encoder, o.render_workers, o.audio_bitrate) == (
        False, "narration", "auto", None, "160k")
    assert {f.name for f in fields(GenerateOptions)} == set(gen_options._PARSERS)  # every key has its parser


@pytest.mark.parametrize("value,expected", [
    ("1", True), ("true", True), (" Yes ", True), ("on", True), (True, True), (1, True),
    ("0", False), ("no", False), ("false", False), ("off", False), ("", False), (None, False), (False, False),
    ("maybe", False),
])
def test_yes_no_options_share_the_one_flag_parser(value: Any, expected: bool) -> None:
    """upload and burn_subtitles read as `--set`, a checkbox or a CSV give them: true only for 1/true/yes/on."""
    o = GenerateOptions.parse({"upload": value, "burn_subtitles": value})
    assert o.upload is expected and o.burn_subtitles is expected


def test_strings_from_set_are_typed() -> None:
    """``--set KEY=VALUE`` hands strings: numbers, sizes and choices come out typed and normalized."""
    o = GenerateOptions.parse({"length_s": "45", "size": "360X640", "render_workers": "2", "upload_retries": "3",
                               "upload_backoff_s": "0.5", "privacy": " Unlisted ", "tts": "ESPEAK",
                               "publish_at": "2026-12-01T09:00:00Z", "espeak_wpm": "160", "script_engine": "offline"})
    assert (o.length_s, o.size, o.render_workers, o.upload_retries, o.upload_backoff_s) == (45.0, (360, 640), 2, 3, 0.5)
    assert (o.privacy, o.tts, o.espeak_wpm, o.script_engine) == ("unlisted", "espeak", 160, "offline")
    assert o.publish_at == "2026-12-01T09:00:00+00:00"
    assert GenerateOptions.parse({"render_workers": "0"}).render_workers is None  # 0: one per core
    assert GenerateOptions.parse({"voice": "  ", "length_s": ""}) == GenerateOptions()  # empty is "not set"


@pytest.mark.parametrize("key,value,reason", [
    ("aspect", "4:3", "aspect must be one of 9:16, 16:9"),
    ("tts", "festival", "tts must be one of auto, edge, espeak"),
    ("size", "big", "size must look like 540x960"),
    ("length_s", "5", "between 10 and 1800"),
    ("encoder", "h265_magic", "encoder must be auto or one of"),
    ("youtube_daily_units", "lots", "invalid literal"),
    ("publish_at", "2026-12-01T09:00:00", "needs a time zone"),
])
def test_bad_values_name_the_key(key: str, value: str, reason: str) -> None:
    """A value that cannot be used is InvalidInput naming the option and why."""
    with pytest.raises(errors.InvalidInput, match=f"option {key}=") as exc:
        GenerateOptions.parse({key: value})
    assert reason in str(exc.value)


def test_unknown_keys_are_ignored() -> None:
    """Engine, transcribe and future keys in the same stored dict do not disturb parsing (old batches keep working)."""
    stored = {"recipe_name": "generate", "captions": "prefer", "model": "tiny.en", "llm_mode": "realtime",
              "on_error": "continue", "some_future_option": {"x": 1}, "voice": "en-GB-SoniaNeural"}
    assert GenerateOptions.parse(stored) == GenerateOptions(voice="en-GB-SoniaNeural")


def test_recipe_hook_parses_and_leaves_bad_batches_to_the_stages(tmp_path: Path) -> None:
    """RECIPE.parse_options gives the object; for a bad stored value the engine gets None, the stage fails the item."""
    assert RECIPE.parse_options is parse_options
    assert parse_options({"tts": "edge"}, Settings()) == GenerateOptions(tts="edge")
    assert frozen_options({"recipe_name": "generate", "aspect": "4:3"}, Settings()) is None
    with pytest.raises(errors.InvalidInput, match="aspect"):
        options_of(ctx_for(tmp_path, aspect="4:3"))


def test_burnt_subtitles_draw_the_visual_on_frames() -> None:
    """With subtitles in the picture the stills show the scene's visual; an explicit frame_text wins."""
    assert GenerateOptions.parse({"burn_subtitles": "1"}).frame_text == "visual"
    assert GenerateOptions.parse({"burn_subtitles": True, "frame_text": "narration"}).frame_text == "narration"
    with pytest.raises(errors.InvalidInput, match="frame_text"):
        GenerateOptions.parse({"frame_text": "title"})


def test_csv_row_options_flow_through_the_same_parsers() -> None:
    """A CSV row's cells become the item's meta through the options' parsers; for_item lays them over the batch's."""
    t = parse_topics("topic,voice,length,aspect,privacy,pace\n"
                     "Tides,en-GB-SoniaNeural,45,16:9,Unlisted,fast\n"
                     "Bread,,,,,\n"
                     "Comets,,30,4:3,,\n"
                     "Stars,,30,,,glacial\n")
    assert [i["source"] for i in t.items] == ["Tides", "Bread"]
    assert t.items[0]["meta"] == {"voice": "en-GB-SoniaNeural", "length_s": 45.0, "aspect": "16:9",
                                  "privacy": "unlisted", "pace": "fast"}
    assert [(b.line_no, b.reason) for b in t.invalid] == [(4, "aspect must be one of 9:16, 16:9"),
                                                         (5, "pace must be one of fast, normal, slow")]
    batch = GenerateOptions.parse({"voice": "en-US-GuyNeural", "length_s": "20", "privacy": "private"})
    tides, bread = (batch.for_item(i) for i in t.items)
    assert (tides.voice, tides.length_s, tides.aspect, tides.privacy, tides.pace) == (
        "en-GB-SoniaNeural", 45.0, "16:9", "unlisted", "fast")
    assert bread is batch
    # Empty or zero in an item's meta means "the batch's value", as the old `meta or options or default` did.
    assert batch.for_item({"meta": {"length_s": 0, "voice": ""}}) is batch
    assert batch.for_item({"meta": {"upload": True, "title": "x"}}) is batch  # not per-item keys
    with pytest.raises(errors.InvalidInput, match="item option aspect="):
        batch.for_item({"meta": {"aspect": "1:1"}})


def test_stages_read_the_parsed_object(tmp_path: Path) -> None:
    """A stage uses ``ctx.opts`` when the engine set it (the raw dict is not consulted), else parses and keeps it."""
    ctx = ctx_for(tmp_path, opts=GenerateOptions(size=(360, 640), pace="slow"), size="999x999")
    (ctx.workdir / "script.json").write_text(json.dumps(offline_script("tides").model_dump()))
    plan = json.loads(Path(run_plan({"n": 1, "source": "tides", "meta": {"voice": "en-GB-SoniaNeural"}}, ctx)
                           .artifacts["plan"]).read_text())
    assert (plan["width"], plan["height"], plan["pace"], plan["voice"]) == (360, 640, "slow", "en-GB-SoniaNeural")
    meta = json.loads(Path(run_metadata({"n": 1, "source": "tides", "meta": {}}, ctx).artifacts["metadata"])
                      .read_text())
    assert (meta["privacy"], meta["category_id"], meta["publish_at"]) == ("private", "27", None)

    hand = ctx_for(tmp_path / "hand", tts="espeak")
    first = options_of(hand)
    assert first.tts == "espeak" and options_of(hand) is first and hand.opts is first


def test_script_stage_uses_the_live_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``ctx.settings`` the script stage never reads settings.toml again (it used to, once per item)."""
    import pipeline.config.secrets as secrets
    import pipeline.config.settings as settings_mod

    def refuse(home: Any) -> Any:
        raise AssertionError("settings.toml read by a stage")

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr(settings_mod, "load_settings", refuse)
    monkeypatch.setattr(secrets, "load_settings", refuse, raising=False)
    ctx = ctx_for(tmp_path)
    ctx.settings = Settings()
    res = run_script({"n": 1, "source": "how tides work", "meta": {"length_s": 20}}, ctx)
    assert json.loads(Path(res.artifacts["script"]).read_text())["script_engine"] == "template"
    assert GenerateOptions(llm_model="m").llm_options() == {"llm_model": "m"}


def test_the_run_command_flags_of_issue_16_land_in_the_batch_options(tmp_path: Any) -> None:
    """`tubemill run --recipe generate` flags become batch options the recipe parses (music_dir made absolute:
    the batch may be resumed from another folder)."""
    from pipeline.cli import build_parser
    from pipeline.cli.run import _options
    from pipeline.config.settings import Settings

    music = tmp_path / "music"
    music.mkdir()
    args = build_parser().parse_args([
        "run", "topics.txt", "--recipe", "generate", "--media-provider", "openverse", "--media-kind", "any",
        "--motion", "--music-dir", str(music), "--caption-style", "karaoke", "--embed-subtitles",
        "--thumbnail", "frame", "--playlist-id", "PL123", "--made-for-kids"])
    opts = GenerateOptions.parse(_options(args, Settings(), 1))
    assert (opts.media_provider, opts.media_kind, opts.motion, opts.caption_style) == ("openverse", "any", True,
                                                                                     "karaoke")
    assert (opts.embed_subtitles, opts.thumbnail, opts.playlist_id, opts.made_for_kids) == (True, "frame", "PL123",
                                                                                          True)
    assert opts.music_dir == str(music.resolve())
    plain = GenerateOptions.parse(_options(build_parser().parse_args(["run", "t.txt", "--recipe", "generate"]),
                                           Settings(), 1))
    assert (plain.media_provider, plain.motion, plain.made_for_kids, plain.synthetic_media) == ("none", False, False,
                                                                                              True)


def test_csv_rows_carry_the_issue_16_columns() -> None:
    """music_dir, media_provider, thumbnail and playlist_id per row; a bad provider is that row's error only."""
    from pipeline.recipes.generate.topics import parse_topics

    parsed = parse_topics("topic,music_dir,media_provider,thumbnail,playlist_id\n"
                          "Tides,/srv/music,Openverse,frame,PL1\nComets,,bogus,,\nStars,,,,\n")
    assert [i["source"] for i in parsed.items] == ["Tides", "Stars"]
    assert parsed.items[0]["meta"] == {"music_dir": "/srv/music", "media_provider": "openverse", "thumbnail": "frame",
                                       "playlist_id": "PL1"}
    assert [(b.line_no, b.reason) for b in parsed.invalid] == [
        (3, "media_provider must be one of none, openverse, pexels, pixabay")]
    opts = GenerateOptions.parse({"media_provider": "none"}).for_item(parsed.items[0])
    assert (opts.media_provider, opts.thumbnail, opts.music_dir) == ("openverse", "frame", "/srv/music")

"""The transcribe recipe's typed options: documented defaults, one yes/no parser, the settings' download limits
under the batch's own values, old and foreign keys ignored, and what batch_options stores parses back."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline import errors
from pipeline.config.settings import DownloadLimits, GovernorSettings, Settings
from pipeline.engine.recipe import frozen_options, get_recipe
from pipeline.engine.stage import StageContext, flag
from pipeline.recipes.transcribe import arguments, ytdlp
from pipeline.recipes.transcribe.options import TranscribeOptions, batch_options, options_of, parse_options


def ctx_for(tmp_path: Path, options: dict | None = None, **kw: object) -> StageContext:
    return StageContext(batch_id="b", batch_name="b", item_n=1, stage="download", workdir=tmp_path,
                        options=options or {}, attempt=1, account=None, _progress=lambda f: None,
                        _cancelled=lambda: False, home=tmp_path, **kw)


def test_defaults_are_what_the_stages_always_used() -> None:
    """No options at all: prefer captions, the bundled model, auto device, VAD on, beam 5, the default limits."""
    o = TranscribeOptions.parse({})
    assert o == TranscribeOptions()
    assert (o.captions, o.language, o.force) == ("prefer", None, False)
    assert (o.model, o.device, o.vad, o.beam_size, o.word_timestamps) == ("tiny.en", "auto", True, 5, True)
    assert (o.summarizer, o.llm_mode_effective, o.summary_retries, o.llm_fallback_realtime) == (
        "auto", "realtime", 2, True)
    assert (o.keep_audio, o.format, o.socket_timeout, o.proxy, o.ytdlp_options) == (
        False, "bestaudio/best", 30.0, None, {})
    d = DownloadLimits()
    assert (o.max_download_mb, o.stall_rate_kbps, o.stall_seconds, o.extract_timeout_s, o.max_page_mb) == (
        d.max_download_mb, d.stall_rate_kbps, d.stall_seconds, d.extract_timeout_s, d.max_page_mb)
    assert (o.allow_private_redirects, o.keep_refreshed_cookies, o.min_free_disk_mb) == (False, False, None)


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("yes", True), ("on", True), ("TRUE", True), (" Yes ", True), (True, True), (1, True),
    ("0", False), ("no", False), ("false", False), ("off", False), (False, False), (0, False), ("maybe", False),
])
def test_one_yes_no_parser(value: object, expected: bool) -> None:
    """Every yes/no key goes through engine.stage.flag: 1/true/yes/on (any case, bools too) are yes."""
    assert flag(value) is expected
    for key in ("force", "keep_audio", "word_timestamps", "vad", "allow_private_redirects",
                "keep_refreshed_cookies", "llm_fallback_realtime", "wait_for_live"):
        assert getattr(TranscribeOptions.parse({key: value}), key) is expected, key


def test_empty_values_mean_not_set() -> None:
    """``--set vad=`` or a None keeps the default (VAD stays on; the model stays the bundled one)."""
    o = TranscribeOptions.parse({"vad": "", "model": None, "language": "  ", "max_download_mb": ""})
    assert o.vad is True and o.model == "tiny.en" and o.language is None and o.max_download_mb == 4096.0


def test_settings_download_limits_lie_under_the_batch_options() -> None:
    """[downloads] of the settings is the default; the batch's own value wins key by key."""
    settings = Settings(downloads=DownloadLimits(max_download_mb=10, stall_seconds=5, keep_refreshed_cookies=True))
    o = TranscribeOptions.parse({"stall_seconds": "20"}, settings)
    assert o.max_download_mb == 10.0 and o.stall_seconds == 20.0 and o.keep_refreshed_cookies is True
    assert TranscribeOptions.parse({"keep_refreshed_cookies": False}, settings).keep_refreshed_cookies is False
    assert TranscribeOptions.parse({"max_download_mb": ""}, settings).max_download_mb == 10.0  # empty: not set


def test_stage_context_reads_the_settings_limits_and_floor(tmp_path: Path) -> None:
    """A context with settings but no parsed options: the yt-dlp limits come from the live settings, the disk
    floor from the live governor, and nothing reads settings.toml."""
    (tmp_path / "settings.toml").write_text("[downloads]\nmax_download_mb = 1\n")  # must not be read
    settings = Settings(downloads=DownloadLimits(max_download_mb=3), governor=GovernorSettings(min_free_disk_mb=7))
    ctx = ctx_for(tmp_path, {"stall_rate_kbps": 2}, settings=settings)
    lim = ytdlp.call_limits(ctx)
    assert lim.cap_bytes == 3 * 2**20 and lim.stall_bytes_per_s == 2048
    assert ytdlp.disk_floor_mb(ctx) == 7.0
    assert ytdlp.disk_floor_mb(ctx_for(tmp_path, {"min_free_disk_mb": "5"}, settings=settings)) == 5.0


def test_unknown_and_foreign_keys_are_ignored() -> None:
    """Old batches and other recipes' keys (generate's voice, the engine's on_error) do not break parsing."""
    o = TranscribeOptions.parse({"recipe_name": "transcribe", "voice": "en-US-AriaNeural", "on_error": "stop",
                                 "cookie_files": {"a": "/x"}, "some_future_key": [1, 2], "captions": "never"})
    assert o.captions == "never"


def test_bad_values_name_their_key() -> None:
    """A value that cannot be used is a ConfigError naming the key; the engine gets None instead of a crash."""
    with pytest.raises(errors.ConfigError, match="max_download_mb must be a number"):
        TranscribeOptions.parse({"max_download_mb": "lots"})
    with pytest.raises(errors.ConfigError, match="must not be negative"):
        TranscribeOptions.parse({"stall_seconds": -1})
    with pytest.raises(errors.ConfigError, match="captions must be prefer, never or only, not 'sometimes'"):
        TranscribeOptions.parse({"captions": "sometimes"})
    with pytest.raises(errors.ConfigError, match="beam_size"):
        TranscribeOptions.parse({"beam_size": "wide"})
    assert frozen_options({"recipe_name": "transcribe", "beam_size": "wide"}, Settings()) is None
    assert TranscribeOptions.parse({"summary_retries": "x"}).summary_retries == 2  # lenient, as it always was
    assert TranscribeOptions.parse({"summary_retries": -3}).summary_retries == 0


def test_round_trip_from_batch_options() -> None:
    """What the CLI and the app store parses back to what they chose."""
    stored = batch_options(captions="only", model="base.en", device="cpu", summarizer="offline", language="de",
                           retry_limit=2, on_error="stop", force=True, keep_audio=True, llm_mode="auto",
                           n_items=500, llm_batch_min_items=100, extra={"max_download_mb": "12", "vad": "off"})
    o = TranscribeOptions.parse(stored, Settings())
    assert (o.captions, o.model, o.device, o.summarizer, o.language) == ("only", "base.en", "cpu", "offline", "de")
    assert (o.force, o.keep_audio, o.llm_mode, o.llm_mode_effective) == (True, True, "auto", "batch")
    assert o.max_download_mb == 12.0 and o.vad is False
    later = batch_options(llm_mode="auto", n_items=500, deadline="2026-12-01")
    assert TranscribeOptions.parse(later).llm_mode_effective == "realtime" and later["deadline"] == "2026-12-01"


def test_secrets_stay_out_of_repr() -> None:
    """A proxy password or a yt-dlp login rides in memory, never in a repr or a log line of the options."""
    o = TranscribeOptions.parse({"proxy": "http://alice:s3cret-pw@h:1", "ytdlp_options": {"password": "hunter22"}})
    assert o.proxy == "http://alice:s3cret-pw@h:1" and o.ytdlp_options == {"password": "hunter22"}
    assert "s3cret-pw" not in repr(o) and "hunter22" not in repr(o)


def test_options_of_parses_once_and_the_recipe_hands_them(tmp_path: Path) -> None:
    """A hand-built context gets its options parsed once and kept; the recipe's parse_options is this parser."""
    ctx = ctx_for(tmp_path, {"keep_audio": "yes"})
    first = options_of(ctx)
    assert first.keep_audio is True and options_of(ctx) is first and ctx.opts is first
    assert get_recipe("transcribe").parse_options is parse_options
    ready = TranscribeOptions(keep_audio=False)
    assert options_of(ctx_for(tmp_path, {"keep_audio": "yes"}, opts=ready)) is ready  # the engine's wins


def test_cli_arguments_build_the_stored_options() -> None:
    """The recipe's argument group and its reading: the same flags and defaults as ever, one options dict."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--retry-limit", type=int)
    arguments.add_arguments(parser)
    args = parser.parse_args(["--captions", "never", "--keep-audio", "--proxy", "socks5://h:1080",
                              "--ytdlp-option", "socket_timeout=45", "--newest", "3", "--date-after", "2024-01-31"])
    settings = Settings()
    stored = arguments.batch_options_from_args(args, settings, 1, retry_limit=args.retry_limit)
    assert stored["model"] == settings.whisper_model and stored["device"] == settings.whisper_device
    assert stored["captions"] == "never" and stored["keep_audio"] is True and "retry_limit" not in stored
    assert arguments.youtube_options(args) == {"proxy": "socks5://h:1080", "ytdlp_options": {"socket_timeout": 45}}
    f = arguments.filters(args)
    assert f.newest == 3 and str(f.date_after) == "2024-01-31"
    o = TranscribeOptions.parse({**stored, **arguments.youtube_options(args)})
    assert o.captions == "never" and o.proxy == "socks5://h:1080" and o.ytdlp_options == {"socket_timeout": 45}
    with pytest.raises(errors.InvalidInput):
        arguments.youtube_options(parser.parse_args(["--proxy", "ftp://nope"]))

"""Settings: machine-derived defaults, TOML overrides, clear errors for a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.settings import RetryPolicy, Settings, default_pools, load_settings, save_settings


def test_defaults_come_from_this_machine() -> None:
    """Pools are sized from cores and RAM; no GPU here means a gpu pool of 0."""
    pools = default_pools()
    assert pools["cpu"] >= 1 and pools["net"] >= 1 and pools["llm"] >= 1 and pools["gpu"] >= 0


def test_toml_overrides_and_round_trip(tmp_path: Path) -> None:
    """A settings file overrides only what it names; save then load gives the same settings."""
    (tmp_path / "settings.toml").write_text('flush_delay_s = 0.1\n[pools]\ncpu = 7\n[retry]\nlimit = 9\n')
    s = load_settings(tmp_path)
    assert s.pools["cpu"] == 7 and s.pools["net"] == default_pools()["net"]
    assert s.retry == RetryPolicy(limit=9) and s.flush_delay_s == 0.1
    save_settings(tmp_path, s)
    assert load_settings(tmp_path) == s


@pytest.mark.parametrize("text", ["nonsense = 1\n", "[retry]\nlimit = -1\n", "pools = [\n"])
def test_bad_settings_file_names_itself(tmp_path: Path, text: str) -> None:
    """Unknown keys, invalid values and broken TOML are errors that name the file."""
    (tmp_path / "settings.toml").write_text(text)
    with pytest.raises(ValueError) as err:
        load_settings(tmp_path)
    assert str(tmp_path / "settings.toml") in str(err.value)


def test_max_workers_caps_every_pool() -> None:
    """--max-workers N caps each pool and leaves an absent GPU pool at 0."""
    s = Settings(pools={"net": 8, "cpu": 4, "gpu": 0, "llm": 4}).with_max_workers(2)
    assert s.pools == {"net": 2, "cpu": 2, "gpu": 0, "llm": 2}


def test_loading_settings_imports_no_engine_or_recipe(tmp_path: Path) -> None:
    """Settings and secrets load (accounts and [ytdlp] checked) without importing the engine or a recipe."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    (tmp_path / "settings.toml").write_text('[accounts.alice]\nproxy = "socks5://u:p@10.0.0.2:1080"\n'
                                            '[ytdlp]\nsocket_timeout = 45\n')
    code = ("import sys\nfrom pathlib import Path\nfrom pipeline.config import secrets, settings\n"
            f"s = settings.load_settings(Path({str(tmp_path)!r}))\n"
            "assert s.accounts['alice']['proxy'].startswith('socks5://') and s.ytdlp == {'socket_timeout': 45}\n"
            "secrets.split_private_options({'proxy': 'http://u:pw@h:1'})\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pipeline.engine', 'pipeline.recipes', "
            "'pipeline.app'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pacing_and_governor_settings_live_in_config(tmp_path: Path) -> None:
    """[pacing] and [governor] load into the config's own dataclasses, and a bad pacing range names the file."""
    from pipeline.config.settings import GovernorSettings, PacingSettings

    (tmp_path / "settings.toml").write_text("[pacing]\nanon_delay_max_s = 30.0\n[governor]\nmin_free_ram_mb = 10\n")
    s = load_settings(tmp_path)
    assert s.pacing == PacingSettings(anon_delay_max_s=30.0) and s.governor == GovernorSettings(min_free_ram_mb=10)
    (tmp_path / "settings.toml").write_text("[pacing]\nanon_delay_min_s = 50.0\n")
    with pytest.raises(ValueError, match="min <= max") as err:
        load_settings(tmp_path)
    assert str(tmp_path / "settings.toml") in str(err.value)

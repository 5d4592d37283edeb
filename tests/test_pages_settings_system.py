"""The Settings and System pages, driven with AppTest on a fresh home each."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline.common.hardware import read_gpus
from pipeline.config import secrets
from pipeline.config.settings import load_settings
from tests.conftest import ROOT

KEY = "sk-test-91b2c3d4e5f60718293a4b5c6d7e8f90wxyz"
COOKIES = (
    b"# Netscape HTTP Cookie File\n"
    b".example.com\tTRUE\t/\tTRUE\t2147483647\tSID\tsecretcookievalue1\n"
    b".example.com\tTRUE\t/\tTRUE\t2147483647\tHSID\tsecretcookievalue2\n"
)
TEXT_ELEMENTS = ("title", "header", "subheader", "markdown", "caption", "text", "code", "info", "success", "warning",
                 "error")


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "screens" / name), default_timeout=30).run()


def shown(at: AppTest) -> str:
    """Every piece of text the page rendered, metrics and tables included."""
    parts = [str(e.value) for kind in TEXT_ELEMENTS for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [e.value.to_csv() for e in at.dataframe]
    return "\n".join(parts)


def test_settings_save_applies_workers_live(page_home: Path) -> None:
    """Saving a new cpu pool size writes settings.toml and resizes the running engine's pool."""
    from pages.screens._engine import get_engine

    at = page("settings.py")
    assert not at.exception
    assert at.number_input(key="pool_cpu").value == 2
    at.number_input(key="pool_cpu").set_value(3)
    at.number_input(key="retry_limit").set_value(5)
    at.number_input(key="min_free_ram_mb").set_value(512)
    at.button(key="save_settings").click().run()
    assert not at.exception and not at.error
    assert any(f"Saved to {page_home / 'settings.toml'}" in s.value for s in at.success)
    saved = load_settings(page_home)
    assert saved.pools["cpu"] == 3 and saved.retry.limit == 5 and saved.governor.min_free_ram_mb == 512
    engine = get_engine()
    assert engine.pool_sizes["cpu"] == 3 and engine.settings.retry.limit == 5
    assert engine.governor.settings.min_free_ram_mb == 512


def test_settings_pacing_saved_and_applied_live(page_home: Path) -> None:
    """Pacing fields go to [pacing] in settings.toml and into the running engine's account pool."""
    from pages.screens._engine import get_engine

    at = page("settings.py")
    at.number_input(key="cookie_delay_min_s").set_value(200.0)
    at.number_input(key="cookie_delay_max_s").set_value(320.0)
    at.number_input(key="max_buffer").set_value(80)
    at.number_input(key="fast_start_items").set_value(5)
    at.button(key="save_settings").click().run()
    assert not at.exception and not at.error
    saved = load_settings(page_home).pacing
    assert (saved.cookie_delay_min_s, saved.cookie_delay_max_s, saved.max_buffer, saved.fast_start_items) == (
        200.0, 320.0, 80, 5)
    assert "[pacing]" in (page_home / "settings.toml").read_text()
    assert get_engine().accounts.settings.cookie_delay_min_s == 200.0
    # min above max, or a bad executor: refused with the reason, nothing saved
    at.number_input(key="anon_delay_min_s").set_value(50.0)
    at.button(key="save_settings").click().run()
    assert at.error and "min <= max" in at.error[0].value
    at.number_input(key="anon_delay_min_s").set_value(0.0)
    at.text_input(key="executor").set_value("ftp://nowhere")
    at.button(key="save_settings").click().run()
    assert at.error and "dask://HOST:PORT" in at.error[0].value
    assert load_settings(page_home).executor == ""


def test_settings_refuses_an_unusable_output_folder(page_home: Path) -> None:
    """A relative or unwritable output folder is refused with a readable error and nothing is saved."""
    before = (page_home / "settings.toml").read_text()
    at = page("settings.py")
    at.text_input(key="output_dir").input("relative/out")
    at.button(key="save_settings").click().run()
    assert not at.exception
    assert any("absolute path" in e.value for e in at.error)
    blocker = page_home / "a-file"
    blocker.write_text("x")
    at.text_input(key="output_dir").input(str(blocker / "out"))
    at.button(key="save_settings").click().run()
    assert not at.exception
    assert any("cannot be created or written" in e.value for e in at.error)
    assert (page_home / "settings.toml").read_text() == before


def test_api_key_is_stored_0600_and_only_shown_masked(page_home: Path) -> None:
    """A saved key lands only in secrets/openai_api_key (0600); the page shows its mask and clears the field."""
    at = page("settings.py")
    assert "Summaries use the offline extractive summarizer (no key set)" in shown(at)
    at.text_input(key="new_openai_api_key").input(KEY)
    at.button(key="save_openai_api_key").click().run()
    assert not at.exception and not at.error
    path = page_home / "secrets" / "openai_api_key"
    assert path.read_text() == KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = shown(at)
    assert KEY not in text and KEY[:-4] not in text
    assert "sk-…wxyz" in text and "mode 0600" in text
    assert "offline extractive summarizer" not in text
    assert at.text_input(key="new_openai_api_key").value == ""
    assert KEY not in repr(at.session_state)
    assert KEY not in (page_home / "settings.toml").read_text()
    for f in page_home.rglob("*"):
        if f.is_file() and f != path:
            assert KEY.encode() not in f.read_bytes(), f
    at.run()
    assert KEY not in shown(at)

    at.button(key="remove_openai_api_key").click().run()
    assert not path.exists()
    assert "Summaries use the offline extractive summarizer (no key set)" in shown(at)


def test_stock_media_keys_are_stored_like_the_llm_key(page_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pexels and Pixabay keys: 0600 files under secrets/, shown masked, an environment key named as such."""
    monkeypatch.setenv("PIXABAY_API_KEY", "px-env-key-1234")
    at = page("settings.py")
    assert "No Pexels key set." in shown(at) and "from environment (PIXABAY_API_KEY)" in shown(at)
    at.text_input(key="new_pexels_api_key").input("pexels-secret-9876")
    at.button(key="save_pexels_api_key").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    path = page_home / "secrets" / "pexels_api_key"
    assert path.read_text() == "pexels-secret-9876" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "pexels-secret-9876" not in shown(at) and "px-env-key-1234" not in shown(at)
    at.button(key="remove_pexels_api_key").click().run()
    assert not path.exists() and "No Pexels key set." in shown(at)


def test_environment_key_is_reported_as_such(page_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key from OPENAI_API_KEY is shown masked and named as coming from the environment."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    text = shown(page("settings.py"))
    assert "from environment" in text and "sk-…wxyz" in text and KEY not in text


def test_cookie_file_upload_list_and_delete(page_home: Path) -> None:
    """An uploaded cookies.txt is stored 0600 and listed by name and count, never by content; Delete removes it."""
    at = page("settings.py")
    assert "No accounts configured: downloads are anonymous." in shown(at)
    at.text_input(key="cookie_account").input("main")
    at.file_uploader(key="cookie_file").set_value(("cookies.txt", COOKIES, "text/plain"))
    at.button(key="save_cookies").click().run()
    assert not at.exception and not at.error
    path = page_home / "secrets" / "cookies" / "main.txt"
    assert path.read_bytes() == COOKIES and stat.S_IMODE(path.stat().st_mode) == 0o600
    text = shown(at)
    assert "main" in text and "2 cookies" in text and "secretcookievalue" not in text
    at.button(key="delete_cookies_main").click().run()
    assert not path.exists()
    assert "No accounts configured" in shown(at)


def test_invalid_cookie_upload_is_refused(page_home: Path) -> None:
    """A file that is not a Netscape cookie file is refused with a readable reason."""
    at = page("settings.py")
    at.text_input(key="cookie_account").input("main")
    at.file_uploader(key="cookie_file").set_value(("cookies.txt", b"hello\nworld\n", "text/plain"))
    at.button(key="save_cookies").click().run()
    assert not at.exception
    assert any("not a Netscape cookie file" in e.value for e in at.error)
    assert secrets.list_cookie_files(page_home) == []


def test_settings_lists_existing_cookie_file(page_home: Path) -> None:
    """A cookie file stored earlier is listed with its account and count."""
    secrets.save_cookie_file(page_home, "backup", COOKIES)
    text = shown(page("settings.py"))
    assert "backup" in text and "2 cookies" in text and "secretcookievalue" not in text


def test_system_page_renders_metrics_pools_and_accounts(page_home: Path) -> None:
    """The System page shows the metrics, the pools table, the governor's floors and the accounts."""
    at = page("system.py")
    assert not at.exception and not at.error
    assert at.title[0].value == "System"
    assert {"CPU", "RAM used", "Disk free (output folder)"} <= {m.label for m in at.metric}
    pools = at.dataframe[0].value
    assert list(pools["pool"]) == ["net", "cpu", "gpu", "llm"] and list(pools["size"]) == [2, 2, 0, 2]
    text = shown(at)
    assert "The governor is holding nothing." in text
    assert "No accounts configured: downloads are anonymous." in text
    if not read_gpus()[0]:
        assert "No NVIDIA GPU detected" in text
    else:
        assert any(m.label.startswith("GPU 0 memory") for m in at.metric)
    at.run()
    assert not at.exception


def test_system_page_lists_accounts(page_home: Path) -> None:
    """Stored cookie files appear as accounts with their cookie count, never their contents."""
    secrets.save_cookie_file(page_home, "main", COOKIES)
    at = page("system.py")
    assert not at.exception
    accounts = at.dataframe[1].value
    assert list(accounts["account"]) == ["main"] and list(accounts["cookies"]) == [2]
    assert "secretcookievalue" not in shown(at)


def test_system_page_shows_errors_as_text(page_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing reading becomes one readable st.error line, not a traceback; the rest still renders."""
    from pipeline.app.monitor import Monitor

    def broken(self: Monitor) -> None:
        raise RuntimeError("sensor unplugged")

    monkeypatch.setattr(Monitor, "latest", broken)
    at = page("system.py")
    assert not at.exception
    assert any("sensor unplugged" in e.value for e in at.error)
    assert at.dataframe[0].value["pool"].tolist() == ["net", "cpu", "gpu", "llm"]

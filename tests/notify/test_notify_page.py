"""The Settings page's Notifications section and the app's toast fragment, driven with AppTest."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pipeline import notify
from pipeline.config.settings import load_settings
from tests.conftest import ROOT
from tests.notify.conftest import Receiver


def page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "screens" / "settings.py"), default_timeout=30).run()


def texts(at: AppTest) -> str:
    kinds = ("markdown", "success", "info", "error", "code")
    return "\n".join(str(e.value) for kind in kinds for e in getattr(at, kind))


def test_notifications_section_saves_rotates_and_sends_a_test(page_home: Path, receiver: Receiver,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Saving writes [notify] and the Apprise secret (not the toml); rotate changes the key; the test reaches the
    receiver signed with the shown key; the secret shows masked until asked."""
    monkeypatch.setitem(sys.modules, "apprise", None)  # absent, whatever this machine has
    at = page()
    at.text_input(key="notify_url").input(receiver.url)
    at.number_input(key="notify_held_min").set_value(5.0)
    at.text_input(key="notify_apprise").input("tgram://BOTTOKEN999/123")
    at.button(key="save_notify").click().run()
    assert not at.exception and "Notifications saved." in texts(at)
    conf = load_settings(page_home).notify
    assert conf.webhook_url == receiver.url and conf.held_after_s == 300
    assert notify.apprise_urls(page_home) == ["tgram://BOTTOKEN999/123"]
    assert "BOTTOKEN999" not in (page_home / "settings.toml").read_text()
    assert "Apprise: 1 URL(s) stored — apprise is not installed" in texts(at)
    at.button(key="notify_test").click().run()
    assert notify.flush(10)
    [(h, body)] = receiver.requests
    secret = notify.webhook_secret(page_home)
    assert notify.verify(secret, body, h["x-tubemill-timestamp"], h["x-tubemill-signature"])
    at.run()
    assert secret not in texts(at) and f"…{secret[-4:]}" in texts(at)
    at.button(key="notify_show").click().run()
    assert secret in texts(at)
    at.button(key="notify_rotate").click().run()
    assert notify.webhook_secret(page_home) != secret and "New webhook secret" in texts(at)
    assert "attempt 1/5: HTTP 200: delivered" in texts(at)  # the log expander


TOAST_SNIPPET = '''
import streamlit as st
from pipeline import notify

def show_notifications(home):
    after = st.session_state.setdefault("notify_seen", 0.0)
    found, st.session_state["notify_seen"] = notify.toasts_since(home, after)
    for title, text in found:
        st.toast(f"**{title}** · {text}")

show_notifications(HOME)
'''


def test_toast_fragment_shows_each_new_event_once(home: Path) -> None:
    """Events the engine recorded become toasts once per session; the next run shows only newer ones."""
    from tests.notify.test_notify import setup_home

    setup_home(home)
    notify.emit(home, "batch.done", {"name": "clip", "counts": {"done": 2}})
    assert notify.flush(10)
    at = AppTest.from_string(TOAST_SNIPPET.replace("HOME", repr(str(home))), default_timeout=30).run()
    assert [t.value for t in at.toast] == ["**Tubemill: clip done** · Batch clip finished: 2 done."]
    at.run()
    assert len(at.toast) == 0
    notify.emit(home, "batch.failed", {"name": "clip2", "counts": {"failed": 1}})
    assert notify.flush(10)
    at.run()
    assert [t.value for t in at.toast] == ["**Tubemill: clip2 failed** · Batch clip2 finished with 1 failed item(s)"
                                           " (1 failed)."]

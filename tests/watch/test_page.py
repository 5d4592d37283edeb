"""The Subscriptions page through AppTest: add from the form, see last/next check, new items and the error,
pause and remove from the row actions."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pipeline.app import subscriptions_view as view
from pipeline.watch import subs

ROOT = Path(__file__).resolve().parents[2]


def test_subscriptions_page(page_home: Path, tmp_path: Path) -> None:
    at = AppTest.from_file(str(ROOT / "pages/screens/subscriptions.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No subscriptions" in i.value for i in at.info)
    at.text_input(key="sub_source").input("https://example.invalid/feed.xml")
    at.number_input(key="sub_every").set_value(45)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error
    [s] = subs.list_subs(page_home)
    assert (s["kind"], s["every_s"]) == ("feed", 2700)
    subs.update(page_home, s["id"], lambda d: d.update(last_check=time.time() - 120, last_error="HTTP 503 for x",
                                                        failures=2, new_items_total=4, last_new=1))
    at.run()
    [table] = at.dataframe
    row = table.value.iloc[0]
    assert row["status"] == "failing (2x)" and row["new (total)"] == 4 and row["last check"].endswith("ago")
    assert any("HTTP 503" in w.value for w in at.warning)
    at.selectbox(key="sub_action").set_value("pause")
    at.button(key="sub_apply").click().run()
    assert subs.get(page_home, s["id"])["paused"]
    at.selectbox(key="sub_action").set_value("remove")
    at.button(key="sub_apply").click().run()
    assert subs.list_subs(page_home) == []
    at.text_input(key="sub_source").input(str(tmp_path / "missing-folder"))
    at.button[0].click().run()
    assert any("neither" in e.value for e in at.error)  # the reason, not a traceback


def test_rows_say_when(tmp_path: Path) -> None:
    s = subs.add(tmp_path, str(tmp_path), every_s=600, recipe="noop")
    [r] = view.rows(tmp_path, now=s["next_check"] - 300)
    assert (r["kind"], r["status"], r["last check"], r["next check"]) == ("folder", "ok", "never", "in 5m00s")
    subs.set_paused(tmp_path, s["id"], True)
    assert view.rows(tmp_path)[0]["status"] == "paused" and view.rows(tmp_path)[0]["next check"] == "-"

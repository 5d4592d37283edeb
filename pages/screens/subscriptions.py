"""Subscriptions: channels, playlists, feeds and folders checked on a schedule. Logic in
``pipeline.app.subscriptions_view``; the table refreshes in a fragment, no thread touches ``st``."""

from __future__ import annotations

import streamlit as st

from pages.screens._engine import engine_or_stop
from pipeline.app import subscriptions_view as view
from pipeline.engine.recipe import offered_recipes
from pipeline.errors import TubemillError

engine = engine_or_stop()
st.title("Subscriptions")
st.caption("New uploads of a channel, playlist, feed or folder go to a batch of their own, one per day.")

with st.form("sub_add", clear_on_submit=True):
    source = st.text_input("YouTube channel or playlist URL, RSS/Atom feed URL, or a folder", key="sub_source")
    c1, c2, c3 = st.columns(3)
    every = c1.number_input("Check every (minutes)", min_value=1, value=30, key="sub_every")
    backfill = c2.number_input("Also process the newest N now", min_value=0, value=0, key="sub_backfill")
    recipes = list(offered_recipes()) or ["transcribe"]
    recipe = c3.selectbox("Recipe", recipes, key="sub_recipe")
    if st.form_submit_button("Subscribe") and source.strip():
        try:
            s = view.add(engine.home, source, float(every), int(backfill), recipe)
            st.success(f"Subscribed {s['id']} ({s['kind']}); first check now.")
        except TubemillError as exc:
            st.error(str(exc))


@st.fragment(run_every=5)
def table() -> None:
    rows = view.rows(engine.home)
    if not rows:
        st.info("No subscriptions yet.")
        return
    st.dataframe(rows, hide_index=True, key="sub_table")
    for r in rows:
        if r["error"]:
            st.warning(f"{r['id']} ({r['source']}): {r['error']}", icon=":material/error:")
    c1, c2, c3 = st.columns([2, 2, 1])
    sid = c1.selectbox("Subscription", [r["id"] for r in rows], key="sub_pick",
                       format_func=lambda i: next(f"{r['id']} {r['source']}" for r in rows if r["id"] == i))
    action = c2.selectbox("Action", view.ACTIONS, key="sub_action")
    if c3.button("Apply", key="sub_apply"):
        st.toast(f"{sid}: {view.act(engine.home, sid, action)}")
        st.rerun()


table()

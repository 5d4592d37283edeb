"""Search: every batch's transcripts at once; a hit plays its media from that moment and opens its item in
Results. The logic (query, markup, what can play) is in ``pipeline.app.search_view``."""

from __future__ import annotations

import streamlit as st

from pages.screens._engine import engine_or_stop
from pipeline.app import search_view

engine = engine_or_stop()
st.title("Search")
PICKED = "search_picked"  # the chosen hit, by search_view.hit_key (a position would move with a new query)
LIMIT = "search_limit"


def pick(key: tuple) -> None:  # type: ignore[type-arg]
    st.session_state[PICKED] = key


def player(hit) -> None:  # type: ignore[no-untyped-def]
    item = search_view.item_for_hit(engine, hit)
    source, audio = search_view.play_target(item)
    if source is None:
        st.caption(":material/music_off: Nothing to play: the media was not kept and its file URL is not known.")
    elif audio:
        st.audio(source, start_time=int(hit.start))
    else:
        st.video(source, start_time=int(hit.start))
    search_view.open_in_results(st.session_state, hit)  # before the link: Results takes the hint once
    st.page_link("pages/screens/results.py", label="Open in Results", icon=":material/article:")


left, right = st.columns([3, 1])
query = left.text_input("Search every transcript", key="search_query", placeholder='tide, "high tide", tide*',
                        help=search_view.HELP)
choices = search_view.batch_choices(engine.summaries())
batch = right.selectbox("Batch", [None, *choices], key="search_batch",
                        format_func=lambda b: "every batch" if b is None else choices.get(b, b))
if st.session_state.get("search_last") != (query, batch):  # a new query: first page, nothing chosen
    st.session_state["search_last"] = (query, batch)
    st.session_state[LIMIT] = search_view.PAGE_SIZE
    st.session_state.pop(PICKED, None)

if not query.strip():
    st.caption(search_view.HELP)
else:
    with st.spinner("Searching (the first search of a home builds its index from every batch)…"):
        hits = search_view.run_query(engine.home, query, batch, limit=st.session_state[LIMIT])
    for message in hits.messages:
        st.info(message, icon=":material/info:")
    if not hits:
        st.write("No matches.")
    else:
        st.caption(f"{len(hits)} hit(s), best first" + (" (a common term: ranked among the newest matches)"
                                                        if hits.capped else ""))
    for i, hit in enumerate(hits):
        key = search_view.hit_key(hit)
        with st.container(border=True, key=f"search-hit-{i}"):
            cols = st.columns([1, 5])
            cols[0].button(search_view.clock(hit.start), key=f"search_play_{i}", icon=":material/play_arrow:",
                           on_click=pick, args=(key,), help="play from here")
            cols[1].markdown(search_view.hit_heading(hit) + "  \n" + search_view.snippet_markdown(hit))
            if st.session_state.get(PICKED) == key:
                player(hit)
    if len(hits) >= st.session_state[LIMIT] and st.button("More hits", key="search_more"):
        st.session_state[LIMIT] += search_view.PAGE_SIZE
        st.rerun()

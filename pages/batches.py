"""Batches: every batch's progress, live, with pause/resume/cancel/retry."""

from __future__ import annotations

import streamlit as st

from pages._engine import get_engine
from pipeline.progress import fmt_duration

engine = get_engine()
st.title("Batches")
if not engine.owner:
    owner = engine.owner_info() or {}
    st.info(f"Another process (pid {owner.get('pid', '?')}) runs this home; this page shows its batches.")
for msg in engine.messages:
    st.warning(msg)


@st.fragment(run_every=2)
def batch_list() -> None:
    summaries = engine.summaries()
    if not summaries:
        st.write("No batches yet. Start one with `tubemill run FILE`.")
        return
    for s in reversed(summaries):
        c = s.counts
        with st.container(border=True):
            st.markdown(f"**{s.name}** · {s.state} · {' → '.join(s.recipe)}")
            tail = f"ETA {fmt_duration(s.eta_s)}" if s.state == "active" else s.state
            st.progress(s.finished / s.total if s.total else 1.0,
                        text=f"{c.get('done', 0)} of {s.total} done · {c.get('failed', 0)} failed · "
                             f"{c.get('running', 0)} running · {tail}")
            cols = st.columns(4)
            if cols[0].button("Pause", key=f"p-{s.id}", disabled=s.state != "active"):
                engine.pause(s.id)
            if cols[1].button("Resume", key=f"r-{s.id}", disabled=s.state not in ("paused", "cancelled")):
                engine.resume(s.id)
            if cols[2].button("Cancel", key=f"c-{s.id}", disabled=s.state not in ("active", "paused")):
                engine.cancel(s.id)
            if cols[3].button("Retry failed", key=f"f-{s.id}", disabled=not c.get("failed")):
                engine.retry_failed(s.id)


batch_list()

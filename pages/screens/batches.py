"""Batches: every batch's progress, one batch's items (paged, filterable), controls and throughput."""

from __future__ import annotations

import streamlit as st

from pages.screens._engine import batch_picker, engine_or_stop
from pipeline.app import views
from pipeline.app.progress import fmt_duration
from pipeline.errors import TubemillError, UnknownBatch
from state.models import ItemStatus

PAGE_SIZE = 50
engine = engine_or_stop()
st.title("Batches")
if not engine.owner:
    owner = engine.owner_info() or {}
    st.info(f"Another Tubemill process (pid {owner.get('pid', '?')}, {owner.get('role', 'engine')}) runs this home; "
            "this page shows its batches and sends it your clicks.")
for msg in engine.messages:
    st.warning(msg)


def control(op: str, bid: str) -> None:
    try:
        engine.control(op, bid)
    except (TubemillError, UnknownBatch) as exc:
        st.error(f"Could not {op.replace('_', ' ')}: {exc}")


def progress_text(s) -> str:  # type: ignore[no-untyped-def]
    c = s.counts
    tail = f"ETA {fmt_duration(s.eta_s)}" if s.state == "active" else s.state
    parts = [f"{c.get('done', 0)} of {s.total} done", f"{c.get('failed', 0)} failed", f"{c.get('running', 0)} running"]
    if c.get("waiting"):
        parts.append(f"{c['waiting']} waiting to retry")
    if c.get("parked"):
        parts.append(f"{c['parked']} waiting for the Batch API")  # the one service that parks items
    return " · ".join(parts + [tail])


def buttons(s, where: str) -> None:  # type: ignore[no-untyped-def]
    cols = st.columns(4)
    cols[0].button("Pause", key=f"{where}-p-{s.id}", disabled=s.state != "active", on_click=control,
                   args=("pause", s.id))
    cols[1].button("Resume", key=f"{where}-r-{s.id}", disabled=s.state not in ("paused", "cancelled"),
                   on_click=control, args=("resume", s.id))
    cols[2].button("Cancel", key=f"{where}-c-{s.id}", disabled=s.state not in ("active", "paused"),
                   on_click=control, args=("cancel", s.id))
    cols[3].button("Retry failed", key=f"{where}-f-{s.id}", disabled=not s.counts.get("failed"),
                   on_click=control, args=("retry_failed", s.id))


summaries = engine.summaries()
if not summaries:
    st.write("No batches yet. Start one on the **New batch** page or with `tubemill run FILE`.")
    st.stop()

selected = batch_picker(summaries, "batches_select", lambda s: f"{s.name} · {s.state}")


@st.fragment(run_every=2)
def batch_detail() -> None:
    try:
        s = engine.summary(selected)
    except (UnknownBatch, KeyError):
        st.warning("This batch no longer exists.")
        return
    st.subheader(views.md_text(s.name))  # names and reasons may carry text from the internet: never Markdown
    st.caption(f"{' → '.join(s.recipe)} · output: `{s.output_dir}`")
    st.progress(s.finished / s.total if s.total else 1.0, text=progress_text(s))
    if s.held:
        st.info(f"Held: {views.md_text(s.held)}")
    buttons(s, "detail")
    if s.active:
        st.markdown("**Now running**")
        st.dataframe([{"n": a["n"], "title": a["title"], "stage": a["stage"], "progress": a.get("progress", 0.0)}
                      for a in s.active], hide_index=True, width="stretch",
                     column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    header = engine.batch_header(s.id)
    if header.get("llm_note"):
        st.info(views.md_text(header["llm_note"]))
    jobs = header.get("llm_jobs") or []
    if jobs:
        st.markdown("**Batch API jobs**")
        st.dataframe([{"job": j.get("batch_id") or j["id"], "status": j.get("status"),
                       "done": (j.get("request_counts") or {}).get("completed", 0),
                       "failed": (j.get("request_counts") or {}).get("failed", 0),
                       "requests": (j.get("request_counts") or {}).get("total", len(j.get("items", {}))),
                       "note": j.get("failure", "")} for j in jobs], hide_index=True, width="stretch")
    c1, c2 = st.columns([3, 1])
    statuses = c1.multiselect("Status", [x.value for x in ItemStatus], key="batches_status")
    matching = sum(s.counts.get(x, 0) for x in statuses) if statuses else s.total
    pages = max(1, -(-matching // PAGE_SIZE))
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key="batches_page"))
    rows = views.item_rows(engine.items(s.id, status=statuses or None, offset=(page - 1) * PAGE_SIZE,
                                        limit=PAGE_SIZE), len(s.recipe))
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0)})
    tp = views.throughput(s)
    if tp:
        st.markdown("**Throughput per stage** (items per hour of busy time)")
        st.bar_chart({r["stage"]: r["items_per_hour"] for r in tp if r["items_per_hour"]}, horizontal=True)


batch_detail()

with st.expander(f"All batches ({len(summaries)})"):
    for s in reversed(summaries):
        st.markdown(f"**{views.md_text(s.name)}** · {s.state} · {' → '.join(s.recipe)}")
        st.progress(s.finished / s.total if s.total else 1.0, text=progress_text(s))

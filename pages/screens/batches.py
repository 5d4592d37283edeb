"""Batches: every batch's progress, one batch's items (paged, filterable, each with its wait reason and a
panel with its error, log and actions), controls and each stage's capacity."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.screens._engine import batch_picker, engine_or_stop
from pages.screens._item import render_item_detail
from pipeline.app import batch_view, views
from pipeline.errors import TubemillError, UnknownBatch
from state.models import ItemStatus

PAGE_SIZE = 50
PROGRESS = st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")
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


def buttons(s, where: str) -> None:  # type: ignore[no-untyped-def]
    cols = st.columns(4)
    cols[0].button("Pause", key=f"{where}-p-{s.id}", disabled=s.state != "active", on_click=control,
                   args=("pause", s.id), icon=":material/pause:")
    cols[1].button("Resume", key=f"{where}-r-{s.id}", disabled=s.state not in ("paused", "cancelled"),
                   on_click=control, args=("resume", s.id), icon=":material/play_arrow:")
    cols[2].button("Cancel", key=f"{where}-c-{s.id}", disabled=s.state not in ("active", "paused"),
                   on_click=control, args=("cancel", s.id), icon=":material/stop:")
    cols[3].button("Retry failed", key=f"{where}-f-{s.id}", disabled=not s.counts.get("failed"),
                   on_click=control, args=("retry_failed", s.id), icon=":material/replay:")


def throughput(s) -> None:  # type: ignore[no-untyped-def]
    rows = batch_view.capacity(s, engine.pool_sizes)
    if not rows:
        return
    st.markdown("**Capacity per stage** (items per hour of wall time, with the workers each pool has)")
    df = pd.DataFrame([{"stage": r["stage"] + (" (bottleneck)" if r["bottleneck"] else ""),
                        "items per hour": r["items_per_hour"] or 0.0,
                        "role": "bottleneck" if r["bottleneck"] else "other"} for r in rows])
    st.bar_chart(df, x="stage", y="items per hour", color="role", horizontal=True, sort=False)
    note = batch_view.capacity_note(rows)
    if note:
        st.caption(note)


def items_table(s) -> None:  # type: ignore[no-untyped-def]
    waits, batch_wait = batch_view.wait_reasons(engine, s.id)
    if batch_wait:
        st.warning(f"Nothing runs: {views.md_text(batch_wait)}", icon=":material/hourglass_top:")
    c1, c2 = st.columns([3, 1])
    statuses = c1.multiselect("Status", [x.value for x in ItemStatus], key="batches_status")
    matching = sum(s.counts.get(x, 0) for x in statuses) if statuses else s.total
    pages = max(1, -(-matching // PAGE_SIZE))
    page = int(c2.number_input(f"Page (of {pages})", 1, pages, 1, key="batches_page"))
    items = engine.items(s.id, status=statuses or None, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    rows = views.item_rows(items, list(s.recipe), waits)
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"progress": PROGRESS, "error": st.column_config.TextColumn(
                     "error", help="cut to fit: the whole error, its hint and the log are in the item panel below"),
                     "title": st.column_config.TextColumn(
                     "title", help="shortened at a word: the whole title is in the item panel below and the manifest")})
    shown = [(k, r) for k, r in sorted(waits.items()) if any(it["n"] == k for it in items)][:5]
    for k, reason in shown:  # the table is drawn on a canvas: the reasons also as text, for reading and finding
        st.caption(f":material/hourglass_top: Why #{k} waits: {views.md_text(reason)}")
    by_n = {it["n"]: it for it in items}
    n = st.selectbox("Item detail", list(by_n), index=None, key=f"batches_item_{s.id}",
                     placeholder="choose an item: its full error, log, timings, files and actions",
                     format_func=lambda k: f"#{k} · {by_n[k].get('title') or by_n[k]['source']} · {by_n[k]['status']}")
    if n is not None:
        render_item_detail(engine, s, by_n[n], "batches")


def latest(s) -> None:  # type: ignore[no-untyped-def]
    res = batch_view.latest_result(engine, s)
    if res is None:
        return
    with st.container(border=True):
        what = f"{res['segments']} transcript lines" if res["segments"] else ("video" if res["video"] else "done")
        st.markdown(f":material/task_alt: **Latest result** · #{res['n']} {views.md_text(res['title'])} · {what}")
        for line in res["lines"]:
            st.text(line)
        # A link, not a button: a click on a fragment that redraws every second must not get lost. Results
        # opens at this item (it takes the hint once).
        views.point_results_at(st.session_state, s.id, res["n"])
        st.page_link("pages/screens/results.py", label="Open in Results", icon=":material/article:")


# Fast while a batch runs (the first result shows here, where Start lands, within about a second of existing).
@st.fragment(run_every=1 if any(x.state == "active" for x in engine.summaries()) else 2)
def live() -> None:
    # Everything reads the store again each run, the picker's labels too: "· active" ends with the batch.
    summaries = engine.summaries()
    if not summaries:
        st.write("No batches yet. Start one on the **New batch** page or with `tubemill run FILE`.")
        return
    selected = batch_picker(summaries, "batches_select", batch_view.picker_label)
    try:
        s = engine.summary(selected)
    except (UnknownBatch, KeyError):
        st.warning("This batch no longer exists.")
        return
    st.subheader(views.md_text(s.name))  # names and reasons may carry text from the internet: never Markdown
    st.caption(f"{' → '.join(s.recipe)} · output: `{s.output_dir}`")
    st.progress(batch_view.fraction(s), text=batch_view.progress_markdown(s))
    if s.held:
        st.info(f"Held: {views.md_text(s.held)}")
    buttons(s, "detail")
    latest(s)
    running = engine.items(s.id, status=["running"], limit=50) if s.counts.get("running") else []
    if running:
        st.markdown("**Now running**")
        st.dataframe([{k: r[k] for k in ("n", "title", "progress", "where")}
                      for r in views.item_rows(running, list(s.recipe))],
                     hide_index=True, width="stretch", column_config={"progress": PROGRESS})
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
    items_table(s)
    throughput(s)
    with st.expander(f"All batches ({len(summaries)})"):
        for b in reversed(summaries):
            st.markdown(f"**{views.md_text(b.name)}** · {b.state} · {' → '.join(b.recipe)}")
            st.progress(batch_view.fraction(b), text=batch_view.progress_markdown(b))


live()

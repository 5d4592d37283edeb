"""The item panel Batches and Results share: the whole error with its hint, the stage chain and timings,
the log tail, the files, and retry / skip / remove. Logic is in ``pipeline.app.item_view``."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from pipeline.app import item_view, views
from pipeline.common.formats import fmt_timestamp
from pipeline.errors import TubemillError
from state.models import BatchSummary

FLASH = "item_action_flash"
FLASH_S = 4.0  # how long an action's message stays on the panel
ACTION_WORDS = {"retry": ("Retry now", ":material/replay:"), "skip": ("Skip", ":material/skip_next:"),
                "remove": ("Remove from batch", ":material/delete:")}


def _act(engine: Any, ref: str, n: int, action: str) -> None:
    # A callback: it runs before the page draws, so the panel below shows the item's new state.
    try:
        engine.item_action(ref, n, action)
    except (TubemillError, KeyError) as exc:
        st.session_state[FLASH] = ("error", f"Could not {action} item {n}: {exc}", time.time() + FLASH_S)
    else:
        done = {"retry": "runs again now", "skip": "is skipped", "remove": "left the batch (its files stay)"}
        st.session_state[FLASH] = ("success", f"Item {n} {done[action]}.", time.time() + FLASH_S)


def render_item_detail(engine: Any, s: BatchSummary, item: dict[str, Any], where: str) -> None:
    """One item, everything about it, in a bordered box."""
    d = item_view.item_detail(item, list(s.recipe), s.name)
    # Shown for FLASH_S, not popped on first sight: a fragment's run can be cut short by another fragment's
    # timer (the app's notification toasts), and a message popped by a cut-short run was never drawn.
    flash = st.session_state.get(FLASH)
    if flash and time.time() > flash[2]:
        st.session_state.pop(FLASH, None)
        flash = None
    with st.container(border=True, key=f"{where}-item-{s.id}-{d.n}"):
        st.markdown(f"**#{d.n} · {views.md_text(d.title)}** · {d.status}")
        st.progress(d.progress, text=d.label)
        st.caption(item_view.chain_text(item, list(s.recipe)))
        for note in d.notes:
            st.info(views.md_text(note), icon=":material/info:")
        if d.error:
            e = d.error
            st.error(f"**{views.md_text(e['type'])}** at stage {views.md_text(e['stage'] or '?')} "
                     f"after {e['attempts']} attempt(s)" + (" · retryable" if e["retryable"] else ""),
                     icon=":material/error:")
            st.code(e["message"] or "(no message)", language=None, wrap_lines=True)
            st.caption(f"Hint: {views.md_text(e['hint'])}")
        found, recent = item_view.live_segments(item) if d.status == "running" else (0, [])
        if recent:
            st.caption(f":material/graphic_eq: Transcribing: {found} segment(s) so far")
            st.code("\n".join(f"[{fmt_timestamp(seg.get('start', 0))}] {seg['text']}" for seg in recent),
                    language=None, wrap_lines=True)
        if flash:
            getattr(st, flash[0])(flash[1])
        can_act = hasattr(engine, "item_action")
        cols = st.columns(len(ACTION_WORDS))
        for col, (action, (label, icon)) in zip(cols, ACTION_WORDS.items(), strict=True):
            col.button(label, icon=icon, key=f"{where}-{action}-{s.id}-{d.n}", on_click=_act,
                       args=(engine, s.id, d.n, action), disabled=not can_act or action not in d.actions,
                       help=None if can_act else "this engine has no item actions yet")
        timings, log, files = st.tabs(["Stages", "Log", "Files"])
        with timings:
            st.dataframe(d.chain, hide_index=True, width="stretch",
                         column_config={"seconds": st.column_config.NumberColumn("seconds", format="%.2f")})
        with log:
            if d.log:
                st.code(d.log, language=None, wrap_lines=True)
            else:
                st.caption("No log.txt for this item yet (it is written when a stage starts).")
        with files:
            if d.files:
                st.dataframe([{k: f[k] for k in ("file", "size_kb", "modified")} for f in d.files],
                             hide_index=True, width="stretch")
                st.caption(f"Folder: `{item.get('workdir')}`")
            else:
                st.caption("No files yet.")

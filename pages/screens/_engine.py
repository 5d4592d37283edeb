"""The one engine (and its resource monitor) per server process, shared by every session.

Kept out of app.py so pages can import it without re-running ``st.navigation``.
Both objects are thread-safe; their threads never call ``st.*``.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from typing import TYPE_CHECKING

import streamlit as st

from pipeline.config.settings import default_home
from pipeline.engine.core import Engine

if TYPE_CHECKING:
    from pipeline.app.monitor import Monitor
    from state.models import BatchSummary


@st.cache_resource
def get_engine() -> Engine:
    from pipeline.config.settings import load_settings
    from pipeline.engine.distributed import engine_executors

    home = default_home()
    settings = load_settings(home)
    # executor in settings: cpu/gpu stages on a Dask cluster (read once; changing it needs a restart)
    settings, dx = engine_executors(settings.executor, settings, settings.output_root(home))
    engine = Engine(home, settings=settings, role="tubemill app", executors=dx.executors if dx else None)
    engine.start()
    from pipeline.watch.service import attach

    watcher = attach(engine)  # checks subscriptions while this engine owns the home (after a takeover too)
    # Streamlit stops its threads with the process: flush and release the home first (then the cluster).
    if dx is not None:
        atexit.register(dx.close)
    atexit.register(engine.shutdown, interrupt=True, timeout=10)
    atexit.register(watcher.stop)  # registered last: runs first, before the engine shuts down
    return engine


def engine_or_stop() -> Engine:
    """The engine, or one clear message (and the page stops) when the home cannot be used."""
    try:
        return get_engine()
    except OSError as exc:
        st.error(f"Cannot use the Tubemill home {default_home()}: {exc.strerror or exc}. Start the app with "
                 "TUBEMILL_HOME pointing at a folder you can write (`tubemill --home DIR app`).")
        st.stop()
        raise  # not reached: st.stop() raises


@st.cache_resource
def get_monitor() -> Monitor:
    from pipeline.app.monitor import Monitor

    monitor = Monitor(get_engine())
    monitor.start()
    atexit.register(monitor.stop)
    return monitor


def batch_picker(summaries: list[BatchSummary], key: str, label: Callable[[BatchSummary], str]) -> str:
    """Newest batch first; the choice follows the user from page to page."""
    ids = [s.id for s in reversed(summaries)]
    labels = {s.id: label(s) for s in summaries}
    default = st.session_state.get("selected_batch")
    chosen = st.selectbox("Batch", ids, index=ids.index(default) if default in ids else 0,
                          format_func=lambda i: labels.get(i, i), key=key)
    st.session_state["selected_batch"] = chosen
    return chosen


def show_notifications() -> None:
    """Toasts for the notification events the engine recorded since this session last looked (the engine's
    threads write them under <home>/notify; only this script thread calls st.toast)."""
    import time

    from pipeline import notify

    try:
        engine = get_engine()
    except OSError:
        return  # the page itself says why the home cannot be used
    if not engine.settings.notify.toasts:
        return
    after = st.session_state.setdefault("notify_seen", time.time())  # nothing older than the session
    found, st.session_state["notify_seen"] = notify.toasts_since(engine.home, after)
    for title, text in found:
        st.toast(f"**{title}** · {text}", icon=":material/notifications:")

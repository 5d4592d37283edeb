"""The one engine (and its resource monitor) per server process, shared by every session.

Kept out of app.py so pages can import it without re-running ``st.navigation``.
Both objects are thread-safe; their threads never call ``st.*``.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

import streamlit as st

from pipeline.runner import Engine
from pipeline.settings import default_home

if TYPE_CHECKING:
    from pipeline.monitor import Monitor


@st.cache_resource
def get_engine() -> Engine:
    engine = Engine(default_home(), role="tubemill app")
    engine.start()
    # Streamlit stops its threads with the process: flush and release the home first.
    atexit.register(engine.shutdown, interrupt=True, timeout=10)
    return engine


@st.cache_resource
def get_monitor() -> Monitor:
    from pipeline.monitor import Monitor

    monitor = Monitor(get_engine())
    monitor.start()
    atexit.register(monitor.stop)
    return monitor

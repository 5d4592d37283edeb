"""The one engine per server process, shared by every session (thread-safe by design).

Kept out of app.py so pages can import it without re-running ``st.navigation``.
"""

from __future__ import annotations

import atexit

import streamlit as st

from pipeline.runner import Engine
from pipeline.settings import default_home


@st.cache_resource
def get_engine() -> Engine:
    engine = Engine(default_home(), role="tubemill app")
    engine.start()
    # Streamlit stops its threads with the process: flush and release the home first.
    atexit.register(engine.shutdown, interrupt=True, timeout=10)
    return engine

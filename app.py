"""Tubemill's Streamlit app: page config and navigation only (the engine lives in pages/_engine.py)."""

import streamlit as st

st.set_page_config(page_title="Tubemill", page_icon="🎞️", layout="wide")

nav = st.navigation(
    [
        st.Page("pages/new_batch.py", title="New batch", icon="➕"),
        st.Page("pages/batches.py", title="Batches", icon="📋", default=True),
        st.Page("pages/results.py", title="Results", icon="📄"),
        st.Page("pages/system.py", title="System", icon="🖥️"),
        st.Page("pages/settings.py", title="Settings", icon="⚙️"),
    ]
)
nav.run()

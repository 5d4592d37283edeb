"""Tubemill's Streamlit app: navigation and page config only (the engine lives in pages/_engine.py)."""

import streamlit as st

st.set_page_config(page_title="Tubemill", page_icon="🎞️", layout="wide")

nav = st.navigation(
    [
        st.Page("pages/batches.py", title="Batches", icon="📋", default=True),
    ]
)
nav.run()

"""Tubemill's Streamlit app: page config and navigation only (the engine lives in pages/screens/_engine.py).

The page scripts sit in ``pages/screens/``, not directly in ``pages/``: Streamlit runs any
top-level ``pages/*.py`` as an old-style page on a deep link (``/results`` opened first),
bypassing this navigation.
"""

import sys

import streamlit as st
from streamlit import runtime

if __name__ == "__main__" and not runtime.exists():
    # `python app.py [streamlit options]` (what `tubemill app` runs): start the server. Streamlit treats
    # a `pages/` folder as old-style pages until st.navigation first runs, so a deep link opened first
    # (/results) showed a "Page not found" dialog; telling it up front avoids that.
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.web import cli as st_cli

    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", __file__, *sys.argv[1:]]
    sys.exit(st_cli.main())

st.set_page_config(page_title="Tubemill", page_icon="🎞️", layout="wide")

nav = st.navigation(
    [
        st.Page("pages/screens/new_batch.py", url_path="new_batch", title="New batch", icon="➕"),
        st.Page("pages/screens/generate.py", url_path="generate", title="Generate", icon="🎬"),
        st.Page("pages/screens/batches.py", url_path="batches", title="Batches", icon="📋", default=True),
        st.Page("pages/screens/results.py", url_path="results", title="Results", icon="📄"),
        st.Page("pages/screens/system.py", url_path="system", title="System", icon="🖥️"),
        st.Page("pages/screens/settings.py", url_path="settings", title="Settings", icon="⚙️"),
    ]
)
nav.run()

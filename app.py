"""Tubemill's Streamlit app: page config and navigation only (the engine lives in pages/screens/_engine.py).

The page scripts sit in ``pages/screens/``, not directly in ``pages/``: Streamlit runs any
top-level ``pages/*.py`` as an old-style page on a deep link (``/results`` opened first),
bypassing this navigation.

Streamlit serves the default page at ``/`` only (its ``url_path`` becomes ""), so a bookmark of
``/batches`` found no page and showed "Page not found". The default page is therefore a hidden
landing page that switches to Batches, and Batches keeps its own ``/batches`` address.
Icons are Material symbols: an emoji renders as an empty box where no emoji font is installed.
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

st.set_page_config(page_title="Tubemill", page_icon=":material/movie:", layout="wide")

batches = st.Page("pages/screens/batches.py", url_path="batches", title="Batches", icon=":material/list_alt:")


def landing() -> None:
    st.switch_page(batches)


nav = st.navigation(
    [
        st.Page(landing, title="Tubemill", icon=":material/home:", url_path="home", default=True,
                visibility="hidden"),
        st.Page("pages/screens/new_batch.py", url_path="new_batch", title="New batch", icon=":material/add_circle:"),
        st.Page("pages/screens/generate.py", url_path="generate", title="Generate", icon=":material/movie:"),
        batches,
        st.Page("pages/screens/results.py", url_path="results", title="Results", icon=":material/description:"),
        st.Page("pages/screens/search.py", url_path="search", title="Search", icon=":material/search:"),
        st.Page("pages/screens/subscriptions.py", url_path="subscriptions", title="Subscriptions",
                icon=":material/subscriptions:"),
        st.Page("pages/screens/system.py", url_path="system", title="System", icon=":material/monitor_heart:"),
        st.Page("pages/screens/settings.py", url_path="settings", title="Settings", icon=":material/settings:"),
    ]
)
from pages.screens._engine import show_notifications  # noqa: E402

st.fragment(show_notifications, run_every=5)()
nav.run()

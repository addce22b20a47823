"""The dashboard's entry point (`streamlit run app/streamlit_app.py`, started by `python -m kerascope`)."""

from __future__ import annotations

import os
import sys

# Streamlit puts this file's folder on sys.path, not the project root: make `app` and `monitor` importable when the
# dashboard is started from a checkout outside the current directory.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from kerascope.app import state, widgets  # noqa: E402

st.set_page_config(page_title="Kerascope", page_icon=":material/monitoring:", layout="wide")
# Not "pages/": Streamlit treats a pages/ folder next to the entry script as the legacy multipage layout, which
# fights st.navigation.
VIEW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")
pages = [
    st.Page(os.path.join(VIEW_DIR, "runs.py"), title="Runs", icon=":material/table_rows:", default=True),
    st.Page(os.path.join(VIEW_DIR, "run.py"), title="Run (live)", icon=":material/monitoring:"),
    st.Page(os.path.join(VIEW_DIR, "activations.py"), title="Activations & weights", icon=":material/grid_on:"),
    st.Page(os.path.join(VIEW_DIR, "model.py"), title="Model", icon=":material/account_tree:"),
    st.Page(os.path.join(VIEW_DIR, "checkpoints.py"), title="Checkpoints", icon=":material/save:"),
    st.Page(os.path.join(VIEW_DIR, "compare.py"), title="Compare", icon=":material/compare_arrows:"),
]
page = st.navigation(pages)
st.sidebar.caption("Kerascope · runs in")
st.sidebar.code(state.logdir(), language=None, wrap_lines=True)
widgets.live_toggle()
page.run()

"""The dashboard's entry point (`streamlit run app/streamlit_app.py`, started by `python -m kerascope`)."""

from __future__ import annotations

import os
import sys

try:
    import kerascope  # noqa: F401  installed, or started from the checkout's root
except ModuleNotFoundError:
    # `streamlit run app/streamlit_app.py` from a checkout that is not installed: Streamlit puts this file's folder on
    # sys.path, not the checkout's root, which holds the kerascope package.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import streamlit as st  # noqa: E402

from kerascope.app import auth, links, state, widgets  # noqa: E402
from kerascope.app.formatting import md_escape  # noqa: E402
from kerascope.app.live_chart import preload_plotly  # noqa: E402

# A local icon: a Material icon as page_icon makes every browser fetch it from fonts.gstatic.com (offline: an error,
# online: a request to a third party).
st.set_page_config(page_title="Kerascope", page_icon=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                  "favicon.png"), layout="wide")
auth.require_password()  # before anything that reads runs
with st.sidebar:  # first thing on every page: the browser fetches plotly.js while the page script runs
    preload_plotly()
# Streamlit's default 6rem above the title pushes the charts below the fold on a 1280x800 laptop.
st.html("<style>[data-testid=stMainBlockContainer] { padding-top: 2.5rem; }</style>")
# Not "pages/": Streamlit treats a pages/ folder next to the entry script as the legacy multipage layout, which
# fights st.navigation.
VIEW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "views")
# The pages that show one run share the run picker, drawn here (Streamlit's place for widgets shared by pages).
single_run_pages = [
    st.Page(os.path.join(VIEW_DIR, "run.py"), title="Run (live)", icon=":material/monitoring:"),
    st.Page(os.path.join(VIEW_DIR, "activations.py"), title="Activations & weights", icon=":material/grid_on:"),
    st.Page(os.path.join(VIEW_DIR, "model.py"), title="Model", icon=":material/account_tree:"),
    st.Page(os.path.join(VIEW_DIR, "checkpoints.py"), title="Checkpoints", icon=":material/save:"),
]
runs_page = st.Page(os.path.join(VIEW_DIR, "runs.py"), title="Runs", icon=":material/table_rows:", default=True)
pages = [
    runs_page,
    *single_run_pages,
    st.Page(os.path.join(VIEW_DIR, "compare.py"), title="Compare", icon=":material/compare_arrows:"),
]
page = st.navigation(pages)
if not links.restore(page.url_path) and page in single_run_pages:
    st.switch_page(runs_page)  # a link to a run that is not here: the list of those that are
if (problem := links.problem()) is not None:
    st.error(md_escape(problem), icon=":material/link_off:")
st.sidebar.caption("Kerascope · runs in")
st.sidebar.text(state.logdir_label())  # not st.code: its syntax highlighter is 1.5 MB more to load
if page in single_run_pages:
    widgets.run_picker()
widgets.live_toggle()
page.run()
links.save(page.url_path)
state.page_served.set()

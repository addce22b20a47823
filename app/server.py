"""The dashboard's server process: Streamlit's server, plus a thread that reads the runs root while the server starts.

`python -m kerascope` runs `python -m kerascope.app.server run app/streamlit_app.py --server.port ...` (the
arguments of `streamlit run`). Without the warm-up the first visit does the reading: importing pandas and the app's
modules, starting the file watcher (one inotify watch per directory: seconds at 10,000 runs), listing the runs from
the catalog and building the runs table. With it, a visit that arrives once it is done finds the Runs page's data
ready, and one that arrives earlier waits only for what is left: the store and the table are process-wide, built
once (app/state.py, app/runs_list.py). The server starts answering once the runs are listed (at most READY_WAIT_S
later). The file watcher is started last, once the first page is served (at most WATCH_WAIT_S later); the runs whose
files changed before its watches were in place are then found by their files' stamps and counted as changed.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)


READY_WAIT_S = 5.0  # the longest the server's start waits for the runs to be listed (see the module docstring)
WATCH_WAIT_S = 10.0  # the longest the file watcher waits for the first page to be served
PAGE_CODE_S = 2.0  # then the time left to the browser to fetch the code of the page's elements from this server


def warm_up(listed: threading.Event) -> None:
    """Build what the first visit needs: the store's listing (from the catalog) and the runs table, and import the
    modules the pages use; set `listed`; then start the file watcher and tell it what changed while it was not
    watching yet. A failure is left for the first visit to meet (and show)."""
    try:
        from kerascope.app import runs_list, state
        from kerascope.monitor import RunWatcher

        watcher = state.watcher(start=False)  # its watches take seconds on a large root: added once the list is up
    except Exception:  # noqa: BLE001  whatever it is, the first visit meets it again and says so
        log.warning("kerascope: reading the runs at start failed; the first visit reads them", exc_info=True)
        listed.set()
        return
    collecting = gc.isenabled()
    gc.disable()  # one collection at the end, not one every few thousand objects built
    try:
        runs_list.current()
        import plotly.graph_objects  # noqa: F401  the entry script's chart component
        import pyarrow  # noqa: F401  st.dataframe

        from kerascope.app import compare_charts, links  # noqa: F401
    except Exception:  # noqa: BLE001
        log.warning("kerascope: reading the runs at start failed; the first visit reads them", exc_info=True)
    finally:
        if collecting:
            gc.enable()
            gc.collect()
            # What is left lives as long as the server: the modules, the runs and their table (at 10,000 runs some
            # million objects). Kept out of the collector's full passes, which otherwise walk it all (0.3-0.4 s
            # holding Python's lock, during whichever request triggers them).
            gc.freeze()
        listed.set()
    try:
        if isinstance(watcher, RunWatcher) and not watcher.started:
            # Adding the watches walks every directory (seconds at 10,000 runs): done once the first visitor's page
            # is served and drawn (its browser fetches the code of each kind of element from this server), rather
            # than while it is.
            if state.page_served.wait(WATCH_WAIT_S):
                time.sleep(PAGE_CODE_S)
            watcher.start()
            watcher.note_changed(state.store().recheck())
    except Exception:  # noqa: BLE001  no watcher: pages still read the runs, without live updates
        log.warning("kerascope: the file watcher could not start", exc_info=True)


def main() -> None:
    listed = threading.Event()
    threading.Thread(target=warm_up, args=(listed,), name="kerascope-warm-up", daemon=True).start()
    # Python runs one thread at a time: listing while the server starts and serves the page's JavaScript would
    # only slow all three down. The server starts once the runs are listed (or READY_WAIT_S passed: a first scan of
    # a large root then goes on behind the Runs page's progress bar).
    listed.wait(READY_WAIT_S)
    from streamlit.web import cli

    sys.argv[0] = "streamlit"
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()

"""The dashboard's server process: Streamlit's server, plus a thread that reads the runs root while the server starts.

`python -m kerascope` runs `python -m kerascope.app.server run app/streamlit_app.py --server.port ...` (the
arguments of `streamlit run`). Without the warm-up the first visit does the reading: importing pandas and the app's
modules, starting the file watcher (one inotify watch per directory: seconds at 10,000 runs), listing the runs from
the catalog and building the runs table. With it, a visit that arrives once it is done finds the Runs page's data
ready, and one that arrives earlier waits only for what is left: the store and the table are process-wide, built
once (app/state.py, app/runs_list.py). The watcher is started last, once the list is up; the runs whose files
changed before its watches were in place are found by their files' stamps and counted as changed.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading

log = logging.getLogger(__name__)


def warm_up() -> None:
    """Build what the first visit needs: the store's listing (from the catalog) and the runs table, then import the
    modules the pages use, then start the file watcher and tell it what changed while it was not watching yet. A
    failure is left for the first visit to meet (and show)."""
    try:
        from kerascope.app import runs_list, state
        from kerascope.monitor import RunWatcher

        watcher = state.watcher(start=False)  # its watches take seconds on a large root: added once the list is up
    except Exception:  # noqa: BLE001  whatever it is, the first visit meets it again and says so
        log.warning("kerascope: reading the runs at start failed; the first visit reads them", exc_info=True)
        return
    collecting = gc.isenabled()
    gc.disable()
    try:
        runs_list.current()
        import plotly.graph_objects  # noqa: F401  the entry script's chart component
        import pyarrow  # noqa: F401  st.dataframe

        from kerascope.app import compare_charts, links  # noqa: F401
    except Exception:  # noqa: BLE001
        log.warning("kerascope: reading the runs at start failed; the first visit reads them", exc_info=True)
    finally:
        # What was just built lives as long as the server (modules, the runs and their table): kept out of the
        # collector's full passes, which would otherwise walk it at once here and at every later full pass.
        gc.freeze()
        if collecting:
            gc.enable()
    try:
        if isinstance(watcher, RunWatcher) and not watcher.started:
            watcher.start()
            watcher.note_changed(state.store().recheck())
    except Exception:  # noqa: BLE001  no watcher: pages still read the runs, without live updates
        log.warning("kerascope: the file watcher could not start", exc_info=True)


def main() -> None:
    from streamlit.web import cli  # before the warm-up starts: the server's own imports are not raced

    threading.Thread(target=warm_up, name="kerascope-warm-up", daemon=True).start()
    sys.argv[0] = "streamlit"
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()

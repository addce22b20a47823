"""Streamlit pieces shared by the pages: the run picker, a single-run page's header, the live toggle."""

from __future__ import annotations

import streamlit as st

from kerascope.app import state
from kerascope.app.formatting import STATUS_STYLE, md_escape, run_label
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

RUN_PICKER_KEY = "run_picker"
MAX_PICKER_RUNS = 300


def run_picker() -> None:
    """The sidebar select box of the single-run pages, drawn once by the entry script before the page runs.

    The choice goes to `state.RUN_KEY`, where a click on the Runs page's table and a link's run also put it.
    """
    runs = state.store().runs()
    if not runs:
        return
    by_id = {run.id: run for run in runs}
    if st.session_state.get(RUN_PICKER_KEY) not in by_id:
        st.session_state[RUN_PICKER_KEY] = state.current_run(runs).id
    # The newest runs and the one shown: a sweep's ten thousand names are found on the Runs page, not in a select box.
    options = list(dict.fromkeys([*list(by_id)[:MAX_PICKER_RUNS], st.session_state[RUN_PICKER_KEY]]))
    chosen = st.sidebar.selectbox("Run", options, key=RUN_PICKER_KEY,
                                  format_func=lambda run_id: run_label(by_id[run_id]))
    st.session_state[state.RUN_KEY] = chosen


def readable_run(title: str, *, header: bool = True) -> Run | None:
    """The head of a single-run page: the picked run's header; None when there is nothing to show.

    Without runs the page shows `title` and how to get runs; a broken run shows its reason in the header. With
    `header=False` a readable run's header is left to the page (a live page draws it in its fragment, so the status
    badge follows the run).
    """
    run = state.picked_run()
    if run is None:
        st.title(title)
        no_runs_message()
        return None
    run.refresh()  # read before the header is drawn, so that it lists what reading skipped or truncated
    if header or run.error:
        run_header(run)
    return None if run.error else run


def live_toggle() -> None:
    """Pause/resume live updates (paused charts keep the user's zoom: nothing re-renders them)."""
    st.session_state[state.LIVE_KEY] = st.sidebar.toggle(
        "Live updates", value=state.live(), key="live_toggle",
        help="Refresh charts as the training writes. Turn off to zoom and inspect without interruptions.")


def no_runs_message() -> None:
    remote = state.store().remote
    if remote is not None and remote.error:  # an unreachable store or refused credentials, not an empty root
        st.error(f"Cannot list {md_escape(state.logdir_label())}: {md_escape(remote.error)}")
        return
    st.info(f"No runs under `{md_escape(state.logdir_label())}` yet. Start a training with "
            "`LiveMonitor(\"" + md_escape(state.logdir_label()) + "\")` in its callbacks, or point the dashboard at "
            "another directory with `python -m kerascope --logdir DIR`; new runs appear here on their own.")


def run_header(run: Run) -> None:
    """Title, status badge, reason and read problems of one run."""
    st.title(md_escape(run.name))
    columns = st.columns([1, 5])
    with columns[0]:
        color, _, words = STATUS_STYLE.get(run.status, ("gray", "?", run.status))
        st.badge(words, icon=None, color=color)
    with columns[1]:
        tags = "tags: " + ", ".join(md_escape(tag) for tag in run.tags) if run.tags else ""
        st.caption(" · ".join(part for part in (md_escape(run.id), tags) if part))
    if run.notes:
        st.caption(md_escape(run.notes))
    if run.reason:
        (st.error if run.status in (fmt.BROKEN, fmt.FAILED, fmt.DIVERGED) else st.warning)(md_escape(run.reason))
    for problem in run.problems[:5]:
        st.warning(md_escape(problem))

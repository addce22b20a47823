"""Runs: every run under the root with its status, progress, key metrics, hparams and tags."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kerascope.app import state, tables, widgets
from kerascope.app.formatting import STATUS_STYLE, md_escape, number_text, run_label
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

SORTS = {
    "newest first": ("started", False),
    "oldest first": ("started", True),
    "name": ("name", True),
    "status": ("status", True),
}
RECOMPUTE_EVERY_S = 2.0  # statuses age (stale) without file events: rebuild the table at least this often
OPENED_KEY = "runs_opened"  # runs opened from the table: part of its key, so it comes back unselected
SHOWN_KEY = "runs_shown"  # the run ids in the table's rows as last drawn, which a row selection refers to
OPEN_KEY = "runs_open"  # the run a click on the table asked to open


def filtered(frame: pd.DataFrame, text: str, statuses: list[str]) -> pd.DataFrame:
    if text:
        haystack = (frame["name"] + " " + frame["tags"] + " " + frame["group"] + " " + frame["hparams"] + " "
                    + frame["id"]).str.lower()
        frame = frame[haystack.str.contains(text.lower(), regex=False)]
    if statuses:
        frame = frame[frame["status"].str.split(" ", n=1).str[1].isin(statuses)]
    return frame


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """The runs list, rebuilt only when a file changed under the root (or statuses may have aged)."""
    key = (state.watcher().total, tuple(run.id for run in runs))
    return state.session_cached("runs_table", key, lambda: tables.runs_frame(runs), max_age_s=RECOMPUTE_EVERY_S)


def column_config(frame: pd.DataFrame) -> dict[str, object]:
    config: dict[str, object] = {
        "status": st.column_config.TextColumn("status", width=110),
        "name": st.column_config.TextColumn("name", width="medium"),
        "where": st.column_config.TextColumn("where", width="large"),
        "params": st.column_config.NumberColumn("params", format="localized"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=100.0, format="%.0f%%"),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
    }
    return config


def table_key() -> str:
    return f"runs_table_{st.session_state.get(OPENED_KEY, 0)}"


def open_clicked_run() -> None:
    """A click on a row opens that run. The row is looked up in the table as the user saw it: a live refresh may
    since have added or reordered runs.

    The click reaches the table's fragment; the page is switched by a full run of the app (`open_requested_run`):
    switching from inside a fragment races the fragment's own timer, and Streamlit's frontend then fails on the new
    page ("Bad delta path index") and drops the connection.
    """
    selection = st.session_state.get(table_key())
    rows = selection["selection"]["rows"] if selection else []
    shown = st.session_state.get(SHOWN_KEY, [])
    if rows and rows[0] < len(shown):
        st.session_state[OPENED_KEY] = st.session_state.get(OPENED_KEY, 0) + 1
        st.session_state[OPEN_KEY] = shown[rows[0]]
        st.rerun(scope="app")


def open_requested_run() -> None:
    """Open the run clicked in the table, if any (see `open_clicked_run`)."""
    run_id = st.session_state.pop(OPEN_KEY, None)
    if run_id:
        st.session_state[state.RUN_KEY] = run_id
        st.session_state.pop(widgets.RUN_PICKER_KEY, None)
        st.switch_page("views/run.py", query_params={"run": run_id})


def show_table(text: str, statuses: list[str], sort: str) -> None:
    open_clicked_run()
    state.keep_pace()
    runs = state.store().runs()
    if not runs:
        widgets.no_runs_message()
        return
    frame = filtered(runs_table(runs), text, statuses)
    column, ascending = SORTS.get(sort, ("started", False))
    if sort.startswith("best "):
        metric = sort.removeprefix("best ")
        column, ascending = f"{metric} (best)", tables.metric_direction(runs, metric) == fmt.MIN
    if column in frame:
        frame = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    attention = frame[frame["reason"] != ""]
    if len(attention):
        lines = [f"- **{md_escape(name)}** ({md_escape(status)}): {md_escape(reason)}"
                 for name, status, reason in zip(attention["name"], attention["status"], attention["reason"],
                                                 strict=True)]
        st.warning("Runs that need attention:\n" + "\n".join(lines[:10]), icon=":material/warning:")
    frame = frame.copy()  # the table is cached across ticks: shape the copy for display
    # Metric values as text: 4 significant digits, "NaN"/"Inf" spelled out (a number column shows NaN as "None").
    for column in [c for c in frame.columns if c.endswith("(last)") or c.endswith("(best)")]:
        frame[column] = frame[column].map(number_text)
    frame["progress"] = frame["progress"] * 100  # whole percents: "17%", never "21.22%"
    counts = frame["status"].value_counts()
    st.caption(f"{len(frame)} of {len(runs)} runs · " + " · ".join(f"{n} {s}" for s, n in counts.items())
               + " · click a run to open it")
    st.session_state[SHOWN_KEY] = list(frame["id"])
    st.dataframe(frame, hide_index=True, column_config=column_config(frame), width="stretch", on_select="rerun",
                 selection_mode="single-row", key=table_key())


def main() -> None:
    open_requested_run()
    st.title("Runs")
    runs = state.store().runs()
    controls = st.columns([3, 3, 2])
    text = controls[0].text_input("Filter", placeholder="name, tag, hparam or id", key="runs_filter")
    statuses = controls[1].multiselect("Status", [style[2] for style in STATUS_STYLE.values()],
                                       key="runs_status")
    sorts = list(SORTS) + [f"best {metric}" for metric in tables.key_metrics(runs)]
    sort = controls[2].selectbox("Sort", sorts, key="runs_sort")

    st.fragment(show_table, run_every=state.live_interval())(text, statuses, sort)

    readable = [run for run in runs if run.error is None]
    if not readable:
        return
    by_id = {run.id: run for run in readable}
    st.subheader("Compare runs")
    picked = st.multiselect("Runs to compare", list(by_id), default=state.compare_ids(readable),
                            format_func=lambda run_id: run_label(by_id[run_id]), key="runs_compare")
    st.session_state[state.COMPARE_KEY] = picked
    if st.button("Compare selected", icon=":material/compare_arrows:", disabled=len(picked) < 1):
        st.switch_page("views/compare.py", query_params={"runs": ",".join(picked)})


main()

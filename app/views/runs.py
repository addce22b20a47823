"""Runs: every run under the root with its status, progress, key metrics, hparams and tags."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from kerascope.app import state, tables, widgets
from kerascope.monitor.reader import Run

SORTS = {
    "newest first": ("started", False),
    "oldest first": ("started", True),
    "name": ("name", True),
    "status": ("status", True),
}
RECOMPUTE_EVERY_S = 2.0  # statuses age (stale) without file events: rebuild the table at least this often


def filtered(frame: pd.DataFrame, text: str, statuses: list[str]) -> pd.DataFrame:
    if text:
        haystack = (frame["name"] + " " + frame["tags"] + " " + frame["hparams"] + " " + frame["id"]).str.lower()
        frame = frame[haystack.str.contains(text.lower(), regex=False)]
    if statuses:
        frame = frame[frame["status"].str.split(" ", n=1).str[1].isin(statuses)]
    return frame


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """The runs list, rebuilt only when a file changed under the root (or statuses may have aged)."""
    watcher = state.watcher()
    cached = st.session_state.get("runs_table_cache")
    now = time.monotonic()
    key = (watcher.total, tuple(run.id for run in runs))
    if cached and cached[0] == key and now - cached[1] < RECOMPUTE_EVERY_S:
        return cached[2]
    frame = tables.runs_frame(runs)
    st.session_state["runs_table_cache"] = (key, now, frame)
    return frame


def column_config(frame: pd.DataFrame) -> dict[str, object]:
    config: dict[str, object] = {
        "status": st.column_config.TextColumn("status", width="small"),
        "name": st.column_config.TextColumn("name", width="medium"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
    }
    for column in frame.columns:
        if column.endswith("(last)") or column.endswith("(best)"):
            config[column] = st.column_config.NumberColumn(column, format="%.4g")
    return config


def show_table(text: str, statuses: list[str], sort: str) -> None:
    runs = state.store().runs()
    if not runs:
        widgets.no_runs_message()
        return
    frame = filtered(runs_table(runs), text, statuses)
    column, ascending = SORTS.get(sort, ("started", False))
    if sort.startswith("best "):
        metric = sort.removeprefix("best ")
        column, ascending = f"{metric} (best)", tables.lower_is_better(metric)
    if column in frame:
        frame = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    attention = frame[frame["reason"] != ""]
    if len(attention):
        lines = [f"- **{widgets.md_escape(name)}** ({widgets.md_escape(status)}): {widgets.md_escape(reason)}"
                 for name, status, reason in zip(attention["name"], attention["status"], attention["reason"],
                                                 strict=True)]
        st.warning("Runs that need attention:\n" + "\n".join(lines[:10]), icon=":material/warning:")
    counts = frame["status"].value_counts()
    st.caption(f"{len(frame)} of {len(runs)} runs · " + " · ".join(f"{n} {s}" for s, n in counts.items()))
    st.dataframe(frame, hide_index=True, column_config=column_config(frame), width="stretch")


def main() -> None:
    st.title("Runs")
    runs = state.store().runs()
    controls = st.columns([3, 3, 2])
    text = controls[0].text_input("Filter", placeholder="name, tag, hparam or id", key="runs_filter")
    statuses = controls[1].multiselect("Status", [style[2] for style in widgets.STATUS_STYLE.values()],
                                       key="runs_status")
    sorts = list(SORTS) + [f"best {metric}" for metric in tables.key_metrics(runs)]
    sort = controls[2].selectbox("Sort", sorts, key="runs_sort")

    st.fragment(show_table, run_every=state.live_interval())(text, statuses, sort)

    readable = [run for run in runs if run.error is None]
    if not readable:
        return
    by_id = {run.id: run for run in readable}
    st.subheader("Open or compare")
    left, right = st.columns(2)
    with left:
        current = state.current_run(readable)
        open_id = st.selectbox("Run", list(by_id), index=list(by_id).index(current.id),
                               format_func=lambda run_id: widgets.run_label(by_id[run_id]), key="runs_open")
        if st.button("Open run", icon=":material/monitoring:"):
            st.session_state[state.RUN_KEY] = open_id
            st.switch_page("views/run.py")
    with right:
        picked = st.multiselect("Runs to compare", list(by_id), default=state.compare_ids(readable),
                                format_func=lambda run_id: widgets.run_label(by_id[run_id]), key="runs_compare")
        st.session_state[state.COMPARE_KEY] = picked
        if st.button("Compare selected", icon=":material/compare_arrows:", disabled=len(picked) < 1):
            st.switch_page("views/compare.py")


main()

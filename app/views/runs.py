"""Runs: every run under the root with its status, progress, key metrics, hparams and tags; filtered by text, status,
group and a hparam/metric expression, sorted by any column, one page at a time, sweeps folded into one row each."""

from __future__ import annotations

import dataclasses
import os
import unicodedata
from collections.abc import Iterable

import pandas as pd
import streamlit as st

from kerascope.app import runs_list, state, widgets
from kerascope.app.formatting import STATUS_STYLE, md_escape, number_text
from kerascope.app.runs_list import COLUMN_SORT, GROUP_ROW, SORTS, TableState, TableView, ViewChoice
from kerascope.monitor import Run

OPENED_KEY = "runs_opened"  # clicks handled: part of the table's key, so it comes back unselected
SHOWN_KEY = "runs_shown"  # the table's rows as last drawn (run ids, GROUP_ROW + name): what a click refers to
EXPANDED_KEY = "runs_expanded"  # the groups whose runs are shown under their row
FILTERED_KEY = "runs_filtered"  # the ids of the runs the table lists (all pages), in its order: what Compare offers
VIEW_KEY = "runs_view"  # this session's view of the table, kept while the table and the choices stay the same
PAGE_KEY = "runs_page_rows"  # the rows of the page shown, formatted, kept likewise
PAGE_SIZES = (50, 100, 500)
MAX_COMPARE_OPTIONS = 500  # runs offered in the Compare picker (the first ones of the table, plus those picked)
MAX_COMPARE_FILTERED = 200  # "Compare the filtered runs" takes at most this many
OPEN_KEY = "runs_open"  # the run a click on the table asked to open
# Pages are switched to by absolute path: the entry script may run from another folder (app/cli.py, serve_plotly_js).
VIEW_DIR = os.path.dirname(os.path.abspath(__file__))


def text_width(texts: Iterable[object], floor: int = 80, ceiling: int = 480) -> int:
    """Pixels a table column needs to show its longest text whole, within [floor, ceiling].

    The browser's font is not known here: a generous width per character of the table's 14 px font (wide East Asian
    characters take a full em), plus the cell's padding of 8 px on each side.
    """
    longest = max((_text_px(str(text)) for text in texts), default=0)
    return min(max(longest + 2 * 8, floor), ceiling)


def _text_px(text: str) -> int:
    if text.isascii():
        return 8 * len(text)
    return sum(14 if unicodedata.east_asian_width(char) in "WF" else 8 for char in text)


def column_config(frame: pd.DataFrame) -> dict[str, object]:
    config: dict[str, object] = {
        # Names, statuses and where runs stand whole: a run is found by its name (sample names are ~40 characters);
        # "stopped early at epoch 1234 of 10000 (best epoch 1200) · step 12,345,678" is 72.
        "status": st.column_config.TextColumn("status", width=text_width(frame["status"], floor=100)),
        "name": st.column_config.TextColumn("name", width=text_width(frame["name"], floor=120)),
        "where": st.column_config.TextColumn("where", width=text_width(frame["where"], floor=120, ceiling=600)),
        "params": st.column_config.NumberColumn("params", format="localized"),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=100.0, format="%.0f%%"),
        "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
    }
    return config


def table_key() -> str:
    return f"runs_table_{st.session_state.get(OPENED_KEY, 0)}"


def open_clicked_run() -> None:
    """A click on a row opens that run, or folds/unfolds a group. The row is looked up in the table as the user saw
    it: a live refresh may since have added or reordered runs.

    The click reaches the table's fragment; a run is opened by a full run of the app (`open_requested_run`):
    switching pages from inside a fragment races the fragment's own timer, and Streamlit's frontend then fails on the
    new page ("Bad delta path index") and drops the connection.
    """
    selection = st.session_state.get(table_key())
    rows = selection["selection"]["rows"] if selection else []
    shown = st.session_state.get(SHOWN_KEY, [])
    if not rows or rows[0] >= len(shown):
        return
    clicked = shown[rows[0]]
    st.session_state[OPENED_KEY] = st.session_state.get(OPENED_KEY, 0) + 1
    if clicked.startswith(GROUP_ROW):
        expanded = st.session_state.setdefault(EXPANDED_KEY, set())
        expanded.symmetric_difference_update({clicked.removeprefix(GROUP_ROW)})
        return
    st.session_state[OPEN_KEY] = clicked
    st.rerun(scope="app")


def open_requested_run() -> None:
    """Open the run clicked in the table, if any (see `open_clicked_run`)."""
    run_id = st.session_state.pop(OPEN_KEY, None)
    if run_id:
        st.session_state[state.RUN_KEY] = run_id
        st.session_state.pop(widgets.RUN_PICKER_KEY, None)
        st.switch_page(os.path.join(VIEW_DIR, "run.py"), query_params={"run": run_id})


def page_rows(view: TableView, start: int, size: int) -> pd.DataFrame:
    """The rows of one page, as the table shows them."""
    rows = view.frame.iloc[start:start + size]
    rows = rows[[c for c in rows.columns if not c.startswith("_")]].copy()
    rows["id"] = rows["id"].map(lambda run_id: "" if run_id.startswith(GROUP_ROW) else run_id)
    # Metric values as text: 4 significant digits, "NaN"/"Inf" spelled out (a number column shows NaN as "None").
    for name in [c for c in rows.columns if c.endswith("(last)") or c.endswith("(best)")]:
        rows[name] = rows[name].map(number_text)
    rows["progress"] = rows["progress"] * 100  # whole percents: "17%", never "21.22%"
    return rows


def show_table(choice: ViewChoice, page_size: int) -> None:
    """The table's fragment: on a live tick with nothing changed it reuses the session's view and page (the work
    done is the page's, whatever the number of runs)."""
    open_clicked_run()
    runs, table = runs_list.current()
    if not runs:
        widgets.no_runs_message()
        return
    choice = dataclasses.replace(choice, expanded=frozenset(st.session_state.get(EXPANDED_KEY, ())))
    view_key = (table.version, choice)
    view = state.session_cached(VIEW_KEY, view_key, lambda: runs_list.table_view(table, choice, runs))
    st.session_state[FILTERED_KEY] = view.run_ids
    if view.problem:
        st.error(f"Filter expression not applied: {md_escape(view.problem)}", icon=":material/error:")
    if view.attention_count:
        lines = [f"- **{md_escape(name)}** ({md_escape(status)}): {md_escape(reason)}"
                 for name, status, reason in view.attention]
        more = f"\n\n… and {view.attention_count - 10:,} more" if view.attention_count > 10 else ""
        st.warning("Runs that need attention:\n" + "\n".join(lines) + more, icon=":material/warning:")
    pages = max((len(view.frame) - 1) // page_size + 1, 1)
    page = min(int(st.session_state.get("runs_page", 1) or 1), pages)
    start = (page - 1) * page_size
    rows = state.session_cached(PAGE_KEY, (view_key, start, page_size), lambda: page_rows(view, start, page_size))
    rows_text = f"rows {start + 1:,}-{start + len(rows):,} of {len(view.frame):,} · " if pages > 1 else ""
    st.caption(f"{rows_text}{len(view.run_ids):,} of {len(runs):,} runs · "
               + " · ".join(f"{n:,} {s}" for s, n in view.status_counts)
               + " · click a run to open it" + (", a group to fold or unfold it" if choice.fold else ""))
    st.session_state[SHOWN_KEY] = view.shown[start:start + page_size]
    st.dataframe(rows, hide_index=True, column_config=column_config(rows), width="stretch",
                 on_select="rerun", selection_mode="single-row", key=table_key())
    if pages > 1:
        st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="runs_page")


def compare_part(runs: list[Run], table: TableState) -> None:
    """Pick runs for Compare among the first runs of the table (and those already picked), or take the filtered
    runs at once."""
    if not any(run.error is None for run in runs):
        return
    st.subheader("Compare runs")

    def readable(run_ids: Iterable[str], limit: int) -> list[str]:
        found = []
        for run_id in run_ids:
            if len(found) >= limit:
                break
            run = table.by_id.get(run_id)
            if run is not None and run.error is None:
                found.append(run_id)
        return found

    listed = st.session_state.get(FILTERED_KEY)
    listed = readable((run.id for run in runs) if listed is None else listed, MAX_COMPARE_OPTIONS)
    picked = st.session_state.get("runs_compare")
    picked = readable(state.compare_ids(runs) if picked is None else picked, len(table.by_id))
    options = list(dict.fromkeys(picked + listed))
    st.session_state["runs_compare"] = picked
    labels = {run_id: f"{table.by_id[run_id].name} · {run_id[-4:]}" for run_id in options}
    picked = st.multiselect("Runs to compare", options, format_func=labels.__getitem__, key="runs_compare",
                            help=f"The first {MAX_COMPARE_OPTIONS} runs of the table are offered: filter it to find "
                                 "others.")
    st.session_state[state.COMPARE_KEY] = picked
    left, right = st.columns(2)
    if left.button("Compare selected", icon=":material/compare_arrows:", disabled=len(picked) < 1):
        st.switch_page(os.path.join(VIEW_DIR, "compare.py"), query_params={"runs": ",".join(picked)})
    chosen = listed[:MAX_COMPARE_FILTERED]
    if right.button(f"Compare the {len(chosen):,} filtered runs" + (" (the first)" if len(listed) > len(chosen)
                                                                     else ""),
                    icon=":material/stacked_line_chart:", disabled=not chosen):
        st.session_state[state.COMPARE_KEY] = chosen
        st.switch_page(os.path.join(VIEW_DIR, "compare.py"), query_params={"runs": ",".join(chosen)})


def scan_progress() -> None:
    """The first scan of a large root opens every run: show how far it got."""
    bar = st.progress(0.0, text="Reading the runs for the first time…")

    def report(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Reading the runs for the first time… {done:,} of {total:,}")

    state.store().runs(progress=report)
    bar.empty()


def main() -> None:
    open_requested_run()
    st.title("Runs")
    if not state.store().scanned:
        scan_progress()
    runs, table = runs_list.current()
    controls = st.columns([3, 2, 2, 2])
    text = controls[0].text_input("Filter", placeholder="name, tag, hparam or id", key="runs_filter")
    statuses = controls[1].multiselect("Status", [style[2] for style in STATUS_STYLE.values()],
                                       key="runs_status")
    groups = controls[2].multiselect("Group", table.groups, key="runs_group", disabled=not table.groups)
    best = [c.removesuffix(" (best)") for c in table.frame.columns if c.endswith(" (best)")]
    sorts = list(SORTS) + [f"best {metric}" for metric in best]
    sorts += [COLUMN_SORT + name for name in ("progress", "duration", "params", "tags", "group", "id")]
    sort = controls[3].selectbox("Sort", sorts, key="runs_sort")
    more = st.columns([6, 1, 1, 1])
    where = more[0].text_input("Where", placeholder="lr < 1e-3 and units >= 64 and best_val_loss < 0.5",
                               key="runs_where", help="Comparisons (== != < <= > >=) of hparams, metrics (last "
                               "value; best_<metric> for the best), name, status, group, tags, epochs, params and "
                               "id, joined by and / or / not.")
    reverse = more[1].toggle("Reverse", key="runs_reverse")
    fold = more[2].toggle("Fold groups", key="runs_fold", disabled=not table.groups,
                          help="One row per group (a KerasTuner search, or runs sharing a group): click it to see "
                               "its runs, best first.")
    page_size = more[3].selectbox("Rows", PAGE_SIZES, index=1, key="runs_page_size")
    choice = ViewChoice(text=text, statuses=tuple(statuses), groups=tuple(groups), where=where, sort=sort,
                        reverse=reverse, fold=fold)
    st.fragment(show_table, run_every=state.live_interval())(choice, page_size)
    compare_part(runs, table)


main()

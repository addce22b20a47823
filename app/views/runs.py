"""Runs: every run under the root with its status, progress, key metrics, hparams and tags; filtered by text, status,
group and a hparam/metric expression, sorted by any column, one page at a time, sweeps folded into one row each."""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Iterable

import pandas as pd
import streamlit as st

from kerascope.app import state, tables, widgets
from kerascope.app.formatting import STATUS_STYLE, md_escape, number_text
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

SORTS = {
    "newest first": ("started", False),
    "oldest first": ("started", True),
    "name": ("name", True),
    "status": ("status", True),
}
COLUMN_SORT = "column: "  # "column: params" sorts by that column (ascending; "reverse" flips it)
RECOMPUTE_EVERY_S = 2.0  # statuses age (stale) without file events: rebuild the table at least this often
OPENED_KEY = "runs_opened"  # clicks handled: part of the table's key, so it comes back unselected
SHOWN_KEY = "runs_shown"  # the table's rows as last drawn (run ids, GROUP_ROW + name): what a click refers to
EXPANDED_KEY = "runs_expanded"  # the groups whose runs are shown under their row
FILTERED_KEY = "runs_filtered"  # the ids of the runs the table lists (all pages), in its order: what Compare offers
GROUP_ROW = "group:"
PAGE_SIZES = (50, 100, 500)
MAX_COMPARE_OPTIONS = 500  # runs offered in the Compare picker (the first ones of the table, plus those picked)
MAX_COMPARE_FILTERED = 200  # "Compare the filtered runs" takes at most this many
OPEN_KEY = "runs_open"  # the run a click on the table asked to open
# Pages are switched to by absolute path: the entry script may run from another folder (app/cli.py, serve_plotly_js).
VIEW_DIR = os.path.dirname(os.path.abspath(__file__))


def filtered(frame: pd.DataFrame, text: str, statuses: list[str], groups: list[str] | None = None) -> pd.DataFrame:
    if text:
        haystack = (frame["name"] + " " + frame["tags"] + " " + frame["group"] + " " + frame["hparams"] + " "
                    + frame["id"]).str.lower()
        frame = frame[haystack.str.contains(text.lower(), regex=False)]
    if statuses:
        frame = frame[frame["status"].str.split(" ", n=1).str[1].isin(statuses)]
    if groups:
        frame = frame[frame["group"].isin(groups)]
    return frame


def run_rows(runs: list[Run], cache: dict[str, tuple[int, float, dict[str, object]]]) -> list[dict[str, object]]:
    """Each run's row, rebuilt only when the watcher saw its files change (and, for runs that may be live, at least
    every RECOMPUTE_EVERY_S: their status ages without file events)."""
    watcher, now = state.watcher(), time.monotonic()
    rows = []
    for run in runs:
        version = watcher.version(run.id)
        cached = cache.get(run.id)
        if cached is None or cached[0] != version or (
                cached[2][tables.STATUS] == fmt.RUNNING and now - cached[1] >= RECOMPUTE_EVERY_S):
            cached = cache[run.id] = (version, now, tables.run_row(run))
        rows.append(cached[2])
    if len(cache) > len(runs):  # deleted runs
        ids = {run.id for run in runs}
        for gone in [run_id for run_id in cache if run_id not in ids]:
            del cache[gone]
    return rows


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """The runs list, shared by every session: rebuilt only when a file changed under the root (or, while a run is
    live, every RECOMPUTE_EVERY_S, as statuses age)."""
    shared = state.shared_table()
    key = (state.watcher().total, len(runs), runs[0].id if runs else "")
    with shared.lock:
        now = time.monotonic()
        if shared.frame is None or shared.key != key or (shared.live and now - shared.time >= RECOMPUTE_EVERY_S):
            rows = run_rows(runs, shared.rows)
            shared.frame, shared.key, shared.time = tables.runs_frame(runs, rows), key, now
            shared.live = any(row[tables.STATUS] == fmt.RUNNING for row in rows)
        return shared.frame


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


def sort_order(sort: str, runs: list[Run], frame: pd.DataFrame) -> tuple[str, bool]:
    column, ascending = SORTS.get(sort, ("started", False))
    if sort.startswith("best "):
        metric = sort.removeprefix("best ")
        column, ascending = f"{metric} (best)", tables.metric_direction(runs, metric) == fmt.MIN
    elif sort.startswith(COLUMN_SORT):
        column, ascending = sort.removeprefix(COLUMN_SORT), True
    return column, ascending


def sorted_frame(frame: pd.DataFrame, column: str, ascending: bool) -> pd.DataFrame:
    if column not in frame:
        return frame
    return frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")


def ranking(frame: pd.DataFrame, runs: list[Run], sort: str) -> tuple[str | None, bool]:
    """Which column ranks the runs of a group (best first): the sorted-by metric, else the first key metric's best."""
    if sort.startswith("best "):
        return sort_order(sort, runs, frame)
    best = [c for c in frame.columns if c.endswith(" (best)")]
    val = [c for c in best if c == "val_loss (best)"]
    column = (val or best or [None])[0]
    if column is None:
        return None, True
    metric = column.removesuffix(" (best)")
    return column, tables.metric_direction(runs, metric) == fmt.MIN


def folded(frame: pd.DataFrame, column: str, ascending: bool, rank: tuple[str | None, bool]) -> tuple[pd.DataFrame,
                                                                                                    list[str]]:
    """One row per group (its best run's values, "▸ N runs"), sorted among the other runs; an expanded group's runs
    follow its row, best first. Returns the frame and what each row is (a run id, or GROUP_ROW + the group)."""
    expanded = st.session_state.get(EXPANDED_KEY, set())
    grouped = frame["group"] != ""
    heads, members = [], {}
    for name, group in frame[grouped].groupby("group", sort=False):
        if rank[0] is not None:
            group = sorted_frame(group, rank[0], rank[1])
        members[name] = group
        head = group.iloc[0].copy()
        head["status"] = ("▾ " if name in expanded else "▸ ") + f"{len(group)} runs"
        head["where"] = f"best: {group.iloc[0]['name']}"
        head["name"] = name
        head["id"] = GROUP_ROW + name
        heads.append(head)
    top = sorted_frame(pd.concat([frame[~grouped], pd.DataFrame(heads)], ignore_index=True)
                       if heads else frame[~grouped], column, ascending)
    parts, shown = [], []
    ids = list(top["id"])
    start = 0
    for index, row_id in enumerate(ids):
        if row_id.startswith(GROUP_ROW) and row_id.removeprefix(GROUP_ROW) in expanded:
            parts.append(top.iloc[start:index + 1])
            shown.extend(ids[start:index + 1])
            group = members[row_id.removeprefix(GROUP_ROW)].copy()
            group["name"] = "↳ " + group["name"]
            parts.append(group)
            shown.extend(group["id"])
            start = index + 1
    parts.append(top.iloc[start:])
    shown.extend(ids[start:])
    return pd.concat(parts, ignore_index=True), shown


def show_table(text: str, statuses: list[str], groups: list[str], where: str, sort: str, reverse: bool,
               fold: bool, page_size: int) -> None:
    open_clicked_run()
    runs = state.store().runs()
    if not runs:
        widgets.no_runs_message()
        return
    frame = filtered(runs_table(runs), text, statuses, groups)
    frame, problem = tables.where_filtered(frame, where)
    if problem:
        st.error(f"Filter expression not applied: {md_escape(problem)}", icon=":material/error:")
    column, ascending = sort_order(sort, runs, frame)
    ascending = ascending != reverse
    if fold and (frame["group"] != "").any():
        frame, shown = folded(frame, column, ascending, ranking(frame, runs, sort))
    else:
        frame = sorted_frame(frame, column, ascending)
        shown = list(frame["id"])
    st.session_state[FILTERED_KEY] = [run_id for run_id in shown if not run_id.startswith(GROUP_ROW)]
    attention = frame[(frame["reason"] != "") & ~frame["id"].str.startswith(GROUP_ROW)]
    if len(attention):
        lines = [f"- **{md_escape(name)}** ({md_escape(status)}): {md_escape(reason)}"
                 for name, status, reason in zip(attention["name"][:10], attention["status"][:10],
                                                 attention["reason"][:10], strict=True)]
        more = f"\n\n… and {len(attention) - 10:,} more" if len(attention) > 10 else ""
        st.warning("Runs that need attention:\n" + "\n".join(lines) + more, icon=":material/warning:")
    pages = max((len(frame) - 1) // page_size + 1, 1)
    page = min(int(st.session_state.get("runs_page", 1) or 1), pages)
    start = (page - 1) * page_size
    shown_frame = frame.iloc[start:start + page_size]
    shown_frame = shown_frame[[c for c in shown_frame.columns if not c.startswith("_")]].copy()
    shown_frame["id"] = shown_frame["id"].map(lambda run_id: "" if run_id.startswith(GROUP_ROW) else run_id)
    # Metric values as text: 4 significant digits, "NaN"/"Inf" spelled out (a number column shows NaN as "None").
    for name in [c for c in shown_frame.columns if c.endswith("(last)") or c.endswith("(best)")]:
        shown_frame[name] = shown_frame[name].map(number_text)
    shown_frame["progress"] = shown_frame["progress"] * 100  # whole percents: "17%", never "21.22%"
    statuses_shown = frame.loc[~frame["id"].str.startswith(GROUP_ROW), "status"].value_counts()
    rows_text = f"rows {start + 1:,}-{start + len(shown_frame):,} of {len(frame):,} · " if pages > 1 else ""
    st.caption(f"{rows_text}{len(st.session_state[FILTERED_KEY]):,} of {len(runs):,} runs · "
               + " · ".join(f"{n:,} {s}" for s, n in statuses_shown.items())
               + " · click a run to open it" + (", a group to fold or unfold it" if fold else ""))
    st.session_state[SHOWN_KEY] = shown[start:start + page_size]
    st.dataframe(shown_frame, hide_index=True, column_config=column_config(shown_frame), width="stretch",
                 on_select="rerun", selection_mode="single-row", key=table_key())
    if pages > 1:
        st.number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, step=1, key="runs_page")


def compare_part(runs: list[Run]) -> None:
    """Pick runs for Compare among the first runs of the table (and those already picked), or take the filtered
    runs at once."""
    readable = {run.id: run for run in runs if run.error is None}
    if not readable:
        return
    st.subheader("Compare runs")
    listed = [run_id for run_id in st.session_state.get(FILTERED_KEY, list(readable)) if run_id in readable]
    picked = [run_id for run_id in st.session_state.get("runs_compare", state.compare_ids(list(readable.values())))
              if run_id in readable]
    options = list(dict.fromkeys(picked + listed[:MAX_COMPARE_OPTIONS]))
    st.session_state["runs_compare"] = picked
    labels = {run_id: f"{readable[run_id].name} · {run_id[-4:]}" for run_id in options}
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
    runs = state.store().runs()
    frame = runs_table(runs) if runs else None
    controls = st.columns([3, 2, 2, 2])
    text = controls[0].text_input("Filter", placeholder="name, tag, hparam or id", key="runs_filter")
    statuses = controls[1].multiselect("Status", [style[2] for style in STATUS_STYLE.values()],
                                       key="runs_status")
    group_names = sorted({run.group for run in runs if run.group})
    groups = controls[2].multiselect("Group", group_names, key="runs_group", disabled=not group_names)
    best = [c.removesuffix(" (best)") for c in frame.columns if c.endswith(" (best)")] if frame is not None else []
    sorts = list(SORTS) + [f"best {metric}" for metric in best]
    sorts += [COLUMN_SORT + name for name in ("progress", "duration", "params", "tags", "group", "id")]
    sort = controls[3].selectbox("Sort", sorts, key="runs_sort")
    more = st.columns([6, 1, 1, 1])
    where = more[0].text_input("Where", placeholder="lr < 1e-3 and units >= 64 and best_val_loss < 0.5",
                               key="runs_where", help="Comparisons (== != < <= > >=) of hparams, metrics (last "
                               "value; best_<metric> for the best), name, status, group, tags, epochs, params and "
                               "id, joined by and / or / not.")
    reverse = more[1].toggle("Reverse", key="runs_reverse")
    fold = more[2].toggle("Fold groups", key="runs_fold", disabled=not group_names,
                          help="One row per group (a KerasTuner search, or runs sharing a group): click it to see "
                               "its runs, best first.")
    page_size = more[3].selectbox("Rows", PAGE_SIZES, index=1, key="runs_page_size")

    st.fragment(show_table, run_every=state.live_interval())(text, statuses, groups, where, sort, reverse, fold,
                                                              page_size)
    compare_part(runs)


main()

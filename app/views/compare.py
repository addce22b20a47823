"""Compare: every metric of the picked runs (or their groups), hparams that differ, final metrics against hparams and
model size, CSV export."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kerascope.app import charts, state, tables, widgets
from kerascope.app.compare_charts import (
    MAX_CHART_POINTS,
    MAX_DRAWN_RUNS,
    NO_GROUPS,
    Grid,
    grid_figures,
    grid_metrics,
    group_figures,
    group_options,
    points_per_run,
    run_colors,
    scatter_figure,
)
from kerascope.app.formatting import count_text, md_escape, number_text, run_label
from kerascope.app.live_chart import live_chart
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

MAX_OPTIONS = 500


def grid_part(run_ids: list[str], grid: Grid, group_by: str) -> None:
    """Every metric's chart, live: rebuilt only when a run read new records or the choices changed."""
    present = {run.id: run for run in state.store().runs()}  # one scan of the logdir per tick
    runs = [present[run_id] for run_id in run_ids if run_id in present]
    for run in runs:
        run.refresh(("epoch",) if grid.level == "epoch" else ("batch",))
    key = (tuple((run.id, run.version) for run in runs), grid, group_by)

    def build() -> dict[str, go.Figure]:
        if group_by == NO_GROUPS:
            return grid_figures(runs, grid)
        return group_figures(runs, grid, group_by)

    figures = state.session_cached("compare_figures", key, build)
    if not figures:
        st.info(f"The selected runs recorded no {grid.level}-level metrics.")
        return
    if group_by == NO_GROUPS and len(runs) > MAX_DRAWN_RUNS:
        st.caption(f"The charts draw the first {MAX_DRAWN_RUNS} of the {len(runs):,} runs picked (group them to see "
                   f"all as bands); each run is downsampled to {points_per_run(MAX_DRAWN_RUNS):,} points.")
    elif len(runs) * charts.MAX_POINTS > MAX_CHART_POINTS:
        st.caption(f"With {len(runs):,} runs each curve is downsampled to {points_per_run(len(runs)):,} points "
                   "(the CSV export keeps every value).")
    names = list(figures)
    view = f"{grid}|{group_by}|{sorted(run_ids)}"
    for start in range(0, len(names), 2):
        for column, name in zip(st.columns(2), names[start : start + 2], strict=False):
            with column:
                live_chart(figures[name], key=f"compare_{name}", view=view)


def highlight_differing(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    marks = tables.differing_cells(frame)
    return frame.style.apply(lambda _: marks.map(lambda differs: "background-color: #fff3cd" if differs else ""),
                             axis=None)


def csv_reader(runs: list[Run], metric: str, level: str) -> Callable[[], bytes]:
    return lambda: tables.series_csv(runs, metric, level)


def main() -> None:
    st.title("Compare")
    runs = [run for run in state.store().runs() if run.error is None]
    if not runs:
        widgets.no_runs_message()
        return
    by_id = {run.id: run for run in runs}
    # Offered: the runs picked, then the newest ones (a picker of ten thousand names is no picker; the Runs page
    # filters and sends any selection here).
    default = state.compare_ids(runs)
    picked_ids = [run_id for run_id in st.session_state.get("compare_runs", default) if run_id in by_id]
    options = list(dict.fromkeys(picked_ids + list(by_id)[:MAX_OPTIONS]))
    picked = st.multiselect("Runs", options, default=default if "compare_runs" not in st.session_state else None,
                            key="compare_runs", format_func=lambda run_id: run_label(by_id[run_id]))
    st.session_state[state.COMPARE_KEY] = picked
    chosen = [by_id[run_id] for run_id in picked]
    if not chosen:
        st.info("Pick one or more runs above (or select them on the Runs page) to compare them.")
        return
    controls = st.columns([2, 2, 3, 3])
    level = controls[0].segmented_control("Level", ["epoch", "batch"], default="epoch", key="compare_level") or "epoch"
    align = controls[1].segmented_control("x axis", ["step", "epoch"], default="epoch" if level == "epoch" else
                                          "step", key=f"compare_align_{level}") or "step"
    smoothing = controls[2].slider("Smoothing (EMA)", 0.0, 0.99, 0.0 if level == "epoch" else 0.6, 0.01,
                                   key=f"compare_smoothing_{level}")
    groupings = group_options(chosen)
    if st.session_state.get("compare_group", NO_GROUPS) not in groupings:  # e.g. from a link for other runs
        del st.session_state["compare_group"]
    group_by = controls[3].selectbox("Group runs by", groupings, key="compare_group",
                                     help="Repeated seeds or a sweep: each group's mean as a line and its min-max "
                                          "range as a band.")
    st.fragment(grid_part, run_every=state.live_interval())(picked, Grid(level, align, smoothing), group_by)

    metrics = grid_metrics(chosen, level)
    if metrics:
        if st.session_state.get(f"compare_metric_{level}", metrics[0]) not in metrics:  # e.g. from an old link
            del st.session_state[f"compare_metric_{level}"]
        metric = st.selectbox("Export a metric", metrics, key=f"compare_metric_{level}")
        column = metric if level == "epoch" or metric == "lr" else fmt.BATCH_VALUE_PREFIX + metric
        st.download_button(f"Export {md_escape(metric)} ({level} level, every recorded value) as CSV",
                           data=csv_reader(chosen, column, level), file_name=f"kerascope-{level}-{metric}.csv",
                           mime="text/csv", icon=":material/download:", on_click="ignore")

    colors = list(run_colors(chosen).values())
    st.subheader("Hyperparameters")
    hparams = tables.hparams_frame(chosen)
    if hparams.empty or not len(hparams.columns):
        st.caption("These runs recorded no hparams (pass `hparams={...}` to LiveMonitor).")
    else:
        only_diff = st.toggle("Only differing values", key="compare_only_diff")
        differing = tables.differing_columns(hparams)
        shown = hparams[differing] if only_diff and differing else hparams
        st.caption(f"{len(differing)} of {len(hparams.columns)} hparams differ; the values that differ from the "
                   "usual one (the most common, else the first run's) are highlighted.")
        st.dataframe(highlight_differing(shown), width="stretch")

    st.subheader("Final metrics and model size")
    finals = tables.final_metrics_frame(chosen)
    # Shown as number_text writes them ("8.1e-05", "NaN"), sorted as numbers.
    values = [column for column in finals.columns if column not in ("params", "size")]
    finals_shown = finals.style.format(number_text, subset=values).format(
        lambda count: count_text(None if pd.isna(count) else int(count)), subset=["params"])
    st.dataframe(finals_shown, width="stretch")
    final_names = [c for c in finals.columns if c not in ("epochs", "params", "size")]
    if len(chosen) < 2 or not final_names:
        return
    left, right = st.columns(2)
    default = next((final_names.index(m) for m in ("best val_accuracy", "best val_loss", "val_loss")
                    if m in final_names), 0)
    target = left.selectbox("Final metric", final_names, index=default, key="compare_final_metric")
    sized = finals.dropna(subset=["params"]) if "params" in finals else finals.iloc[0:0]
    with left:
        if len(sized) >= 2:
            live_chart(scatter_figure(sized, "params", target, colors, log_x=True), key="compare_size",
                       view=target)
    with right:
        numeric = [c for c in hparams.columns if pd.to_numeric(hparams[c], errors="coerce").notna().all()]
        if numeric:
            hparam = st.selectbox("Against hparam", numeric, key="compare_scatter_hparam")
            frame = finals[[target]].join(pd.to_numeric(hparams[hparam], errors="coerce"))
            live_chart(scatter_figure(frame, hparam, target, colors), key="compare_hparam", view=f"{target}|{hparam}")
    if len(hparams.columns):
        st.subheader("Hyperparameters against a final metric")
        live_chart(charts.parallel_figure(hparams.join(finals[[target]]), target), key="compare_parallel",
                   view=target)


main()

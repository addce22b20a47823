"""Compare: overlay a metric across runs, hparams that differ, hparams against a final metric, CSV export."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from kerascope.app import charts, state, tables, widgets
from kerascope.app.formatting import md_escape, run_label
from kerascope.app.live_chart import live_chart
from kerascope.monitor import Run
from kerascope.monitor import format as fmt


def level_metrics(runs: list[Run], level: str) -> list[str]:
    names: dict[str, None] = {}
    for run in runs:
        frame = run.epoch_metrics() if level == "epoch" else run.batch_metrics()
        names.update(dict.fromkeys(tables.metric_names(frame)))
        if level == "batch":
            names.update(dict.fromkeys(c for c in frame.columns if c.startswith(fmt.BATCH_VALUE_PREFIX) or c == "lr"))
    return list(names)


def run_series(run: Run, metric: str, level: str, align: str) -> charts.Series | None:
    if level == "epoch":
        frame = run.epoch_metrics()
        if metric not in frame or align not in frame:
            return None
        return charts.Series(tables.run_key(run), frame[align].to_numpy(float), frame[metric].to_numpy(float))
    arrays = run.arrays("batch")
    if metric not in arrays or "step" not in arrays:
        return None
    x = charts.batch_x(arrays, align, run.progress.steps_per_epoch)
    return charts.Series(tables.run_key(run), x, arrays[metric], key=f"{run.path}/{metric}")


def overlay(run_ids: list[str], metric: str, level: str, align: str, smoothing: float, log_y: bool) -> None:
    present = {run.id: run for run in state.store().runs()}  # one scan of the root per tick
    runs = [present[run_id] for run_id in run_ids if run_id in present]
    for run in runs:
        run.refresh()
    # Rebuilt only when a run read new records or the choices changed: most live ticks reuse the figure.
    key = (tuple((run.id, run.version) for run in runs), metric, level, align, smoothing, log_y)

    def build() -> object:
        series = [s for s in (run_series(run, metric, level, align) for run in runs) if s is not None]
        return None if not series else charts.metric_figure(
            series, title=f"{metric} ({level} level)", x_axis=align, smoothing=smoothing, log_y=log_y,
            markers=level == "epoch", height=420)

    figure = state.session_cached("compare_figure", key, build)
    if figure is None:
        st.info(f"None of the selected runs recorded {md_escape(metric)} at {level} level.")
        return
    live_chart(figure, key="compare_overlay", view=f"{metric}|{level}|{align}|{log_y}|{sorted(run_ids)}")


def highlight_differing(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    differing = set(tables.differing_columns(frame))
    return frame.style.apply(
        lambda column: ["background-color: #fff3cd" if column.name in differing else "" for _ in column], axis=0)


def csv_reader(runs: list[Run], metric: str, level: str) -> Callable[[], bytes]:
    return lambda: tables.series_csv(runs, metric, level)


def main() -> None:
    st.title("Compare")
    runs = [run for run in state.store().runs() if run.error is None]
    if not runs:
        widgets.no_runs_message()
        return
    by_id = {run.id: run for run in runs}
    picked = st.multiselect("Runs", list(by_id), default=state.compare_ids(runs), key="compare_runs",
                            format_func=lambda run_id: run_label(by_id[run_id]))
    st.session_state[state.COMPARE_KEY] = picked
    chosen = [by_id[run_id] for run_id in picked]
    if not chosen:
        st.info("Pick one or more runs above (or select them on the Runs page) to compare them.")
        return
    controls = st.columns([3, 3, 4, 4, 2])
    level = controls[0].segmented_control("Level", ["epoch", "batch"], default="epoch", key="compare_level") or "epoch"
    align = controls[1].segmented_control("Align by", ["step", "epoch"], default="epoch" if level == "epoch" else
                                          "step", key=f"compare_align_{level}") or "step"
    metrics = level_metrics(chosen, level)
    if not metrics:
        st.info(f"The selected runs have no {level}-level metrics.")
        return
    if st.session_state.get(f"compare_metric_{level}", metrics[0]) not in metrics:  # e.g. from an old link
        del st.session_state[f"compare_metric_{level}"]
    metric = controls[2].selectbox("Metric", metrics, key=f"compare_metric_{level}")
    smoothing = controls[3].slider("Smoothing (EMA)", 0.0, 0.99, 0.0 if level == "epoch" else 0.6, 0.01,
                                   key=f"compare_smoothing_{level}")
    log_y = controls[4].toggle("log y", key="compare_log_y")
    st.fragment(overlay, run_every=state.live_interval())(picked, metric, level, align, smoothing, log_y)
    # Widget labels are markdown too: a metric name is user text.
    st.download_button(f"Export {md_escape(metric)} ({level} level, every recorded value) as CSV",
                       data=csv_reader(chosen, metric, level), file_name=f"kerascope-{level}-{metric}.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")

    st.subheader("Hyperparameters")
    hparams = tables.hparams_frame(chosen)
    if hparams.empty or not len(hparams.columns):
        st.caption("These runs recorded no hparams (pass `hparams={...}` to LiveMonitor).")
    else:
        only_diff = st.toggle("Only differing values", key="compare_only_diff")
        differing = tables.differing_columns(hparams)
        shown = hparams[differing] if only_diff and differing else hparams
        st.caption(f"{len(differing)} of {len(hparams.columns)} hparams differ (highlighted).")
        st.dataframe(highlight_differing(shown), width="stretch")

    st.subheader("Final metrics")
    finals = tables.final_metrics_frame(chosen)
    st.dataframe(finals, width="stretch", column_config={c: st.column_config.NumberColumn(c, format="%.5g")
                                                         for c in finals.columns})

    if len(chosen) >= 2 and len(hparams.columns):
        st.subheader("Hyperparameters vs a final metric")
        final_names = [c for c in finals.columns if c != "epochs"]
        default = next((final_names.index(m) for m in ("val_loss", "loss") if m in final_names), 0)
        target = st.selectbox("Final metric", final_names, index=default, key="compare_parallel_metric")
        frame = hparams.join(finals[[target]])
        live_chart(charts.parallel_figure(frame, target), key="compare_parallel", view=target)


main()

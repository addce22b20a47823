"""Run (live): progress, alerts, epoch and batch metric charts, the per-batch learning rate and the events."""

from __future__ import annotations

import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kerascope.app import alerts, state, widgets
from kerascope.app.run_charts import ChartOptions, batch_figures, epoch_figures
from kerascope.monitor.reader import Run

FORCE_REFRESH_S = 2.0  # re-read even without a file event, in case the watcher missed one (some mounts)


def figures_for(run: Run, options: ChartOptions) -> tuple[dict[str, go.Figure], dict[str, go.Figure]]:
    """Cached per session: figures are rebuilt only when new records were read (or the options changed).

    A tick in which the watcher saw no change to this run costs a dictionary look-up; the run's files are still
    re-read every FORCE_REFRESH_S in case the watcher missed an event.
    """
    seen = state.watcher().version(run.id)
    now = time.monotonic()
    cached = st.session_state.get("run_figures")
    if cached and cached["key"] == (run.id, options):
        if cached["seen"] == seen and now - cached["checked"] < FORCE_REFRESH_S:
            return cached["figures"]
        run.refresh()
        if cached["version"] == run.version:
            cached.update(seen=seen, checked=now)
            return cached["figures"]
    run.refresh()
    figures = (epoch_figures(run, options), batch_figures(run, options))
    st.session_state["run_figures"] = {"key": (run.id, options), "seen": seen, "checked": now,
                                       "version": run.version, "figures": figures}
    return figures


def show_charts(figures: dict[str, go.Figure], prefix: str) -> None:
    names = list(figures)
    for start in range(0, len(names), 2):
        columns = st.columns(2)
        for column, name in zip(columns, names[start : start + 2], strict=False):
            with column:
                st.plotly_chart(figures[name], key=f"{prefix}_{name}", config={"displaylogo": False})


def show_progress(run: Run) -> None:
    progress = widgets.progress(run)
    text = progress.text
    if progress.eta_s is not None:
        text += f" · ETA {widgets.format_seconds(progress.eta_s)}"
    duration = widgets.duration(run)
    if duration is not None:
        text += f" · {widgets.format_seconds(duration)} elapsed"
    if progress.fraction is not None:
        st.progress(progress.fraction, text=text)
    else:
        st.caption(text)


def show_alerts(run: Run) -> None:
    for alert in alerts.run_alerts(run):
        body = f"**{widgets.md_escape(alert.title)}** — {widgets.md_escape(alert.detail)}"
        if alert.level == "error":
            st.error(body, icon=":material/error:")
        else:
            st.warning(body, icon=":material/warning:")


def events_table(run: Run) -> None:
    events = run.events()
    if not len(events):
        st.caption("No events recorded yet.")
        return
    frame = events[["time", "step", "epoch", "kind", "message"]].copy()
    frame["time"] = pd.to_datetime(pd.to_numeric(frame["time"], errors="coerce"), unit="s").dt.floor("s")
    st.dataframe(frame.iloc[::-1], hide_index=True, width="stretch", height=min(38 + 35 * len(frame), 320))


def live_part(run_id: str, options: ChartOptions) -> None:
    try:
        run = state.store().run(run_id)
    except KeyError:
        st.warning("This run's directory was removed.")
        return
    show_progress(run)
    show_alerts(run)
    epoch_charts, batch_charts = figures_for(run, options)
    if not epoch_charts and not batch_charts:
        st.info("No metrics recorded yet: the first ones appear at the end of the first logged batch or epoch.")
    if epoch_charts:
        st.subheader("Epoch metrics")
        show_charts(epoch_charts, "epoch")
    if batch_charts:
        st.subheader("Batch metrics")
        show_charts(batch_charts, "batch")
    st.subheader("Events")
    events_table(run)


def main() -> None:
    run = widgets.readable_run("run", "Run")
    if run is None:
        return
    controls = st.columns([3, 3, 3, 1])
    x_axis = controls[0].segmented_control("x axis", ["step", "epoch", "time"], default="step", key="run_x") or "step"
    smoothing = controls[1].slider("Smoothing of batch charts (EMA)", 0.0, 0.99, 0.6, 0.01, key="run_smoothing")
    window = controls[2].slider("Visible x range (% of the run)", 0, 100, (0, 100), key="run_window",
                                help="Kept while live data arrives (a zoom made on a chart resets when it "
                                     "updates; pause live updates to zoom freely). 100 follows the latest data.")
    log_y = controls[3].toggle("log y", key="run_log_y")
    options = ChartOptions(x_axis, smoothing, log_y, (window[0] / 100, window[1] / 100))
    st.fragment(live_part, run_every=state.live_interval())(run.id, options)


main()

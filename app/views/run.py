"""Run (live): progress, alerts, epoch and batch metric charts, the per-batch learning rate and the events."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kerascope.app import alerts, state, widgets
from kerascope.app.formatting import duration, format_seconds, md_escape, progress
from kerascope.app.live_chart import chart_payload, draw_chart
from kerascope.app.run_charts import ChartOptions, batch_figures, chart_overflow, epoch_figures, system_figures
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

FORCE_REFRESH_S = 2.0  # re-read even without a file event, in case the watcher missed one (some mounts)


def run_version(run: Run) -> int:
    """The run's version after reading what is new. Every session reads through the one shared Run, at most every
    FORCE_REFRESH_S unless the watcher saw a change (in case it missed an event: some mounts)."""

    def read() -> int:
        run.refresh()
        return run.version

    return state.session_cached("run_read", (run.id, state.watcher().version(run.id)), read,
                                max_age_s=FORCE_REFRESH_S)


def chart_payloads(run: Run, version: int, options: ChartOptions, follow: bool) -> dict[str, dict[str, str]]:
    """Section -> chart name -> what the browser receives, built once per run version and view for all sessions:
    ten viewers of one live run cost the server one figure build per new record, not ten."""

    def build() -> dict[str, dict[str, str]]:
        # A zoom belongs to one run on one axis: another choice starts from the full view.
        view = f"{run.id}|{options.x_axis}"
        sections = {"epoch": epoch_figures(run, options), "batch": batch_figures(run, options)}
        payloads = {prefix: {name: chart_payload(figure, key=f"{prefix}_{name}", view=view, follow=follow)
                             for name, figure in figures.items()}
                    for prefix, figures in sections.items()}
        payloads["system"] = {name: chart_payload(figure, key=f"system_{name}", view=run.id)
                              for name, figure in system_figures(run).items()}
        return payloads

    return state.shared().get(("run_charts", run.id, version, options, follow), build)


def show_charts(payloads: dict[str, str], prefix: str) -> None:
    names = list(payloads)
    for start in range(0, len(names), 2):
        columns = st.columns(2)
        for column, name in zip(columns, names[start : start + 2], strict=False):
            with column:
                draw_chart(payloads[name], key=f"{prefix}_{name}")


def show_progress(run: Run) -> None:
    where = progress(run)
    text = where.text
    if where.eta_s is not None:
        text += f" · ETA {format_seconds(where.eta_s)}"
    elapsed = duration(run)
    if elapsed is not None:
        text += f" · {format_seconds(elapsed)} elapsed"
    if where.fraction is not None:
        st.progress(where.fraction, text=text)
    else:
        st.caption(text)


def show_alerts(run: Run) -> None:
    for alert in alerts.run_alerts(run):
        body = f"**{md_escape(alert.title)}** — {md_escape(alert.detail)}"
        if alert.level == "error":
            st.error(body, icon=":material/error:")
        else:
            st.warning(body, icon=":material/warning:")


def show_what_went_wrong(run: Run) -> None:
    """The panel of a diverged run: when, what, the LR, the first layer to break and the evidence."""
    rows = alerts.what_went_wrong(run)
    if rows is None:
        return
    with st.container(border=True):
        st.markdown("#### :material/troubleshoot: What went wrong")
        st.markdown("\n".join(f"- **{label}:** {md_escape(text)}" for label, text in rows))


def events_table(run: Run) -> None:
    events = run.events()
    if not len(events):
        st.caption("No events recorded yet.")
        return
    # Every documented column but `data`, the event's own fields, which the message already words.
    frame = events[[column for column in fmt.EVENT_COLUMNS if column != "data"]].copy()
    frame["time"] = pd.to_datetime(pd.to_numeric(frame["time"], errors="coerce"), unit="s").dt.floor("s")
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce") + 1  # as Keras prints it: "Epoch 1/10"
    st.dataframe(frame.iloc[::-1], hide_index=True, width="stretch", height=min(38 + 35 * len(frame), 320))


def live_part(run_id: str, options: ChartOptions, follow: bool) -> None:
    try:
        run = state.store().run(run_id)
    except KeyError:
        st.warning("This run's directory was removed.")
        return
    show_alerts(run)
    show_what_went_wrong(run)
    charts = chart_payloads(run, run_version(run), options, follow)
    if not charts["epoch"] and not charts["batch"]:
        st.info("No metrics recorded yet: the first ones appear at the end of the first logged batch or epoch.")
    if (overflow := chart_overflow(run)) is not None:
        st.caption(overflow)
    for prefix, title in (("epoch", "Epoch metrics"), ("batch", "Batch metrics"), ("system", "System")):
        if charts[prefix]:
            st.subheader(title)
            show_charts(charts[prefix], prefix)
    st.subheader("Events")
    events_table(run)


def header_part(run_id: str) -> None:
    """Title, status, notes and progress: a fragment of its own, so the badge follows status.json every tick."""
    try:
        run = state.store().run(run_id)
    except KeyError:
        return
    widgets.run_header(run)
    show_progress(run)


def main() -> None:
    run = widgets.readable_run("Run", header=False)
    if run is None:
        return
    st.fragment(header_part, run_every=state.live_interval())(run.id)
    controls = st.columns(3)
    x_axis = controls[0].segmented_control("x axis", ["step", "epoch", "time"], default="step", key="run_x") or "step"
    smoothing = controls[1].slider("Smoothing of batch charts (EMA)", 0.0, 0.99, 0.6, 0.01, key="run_smoothing")
    follow = controls[2].toggle("Follow the newest step", value=True, key="run_follow",
                                help="After you zoom in on a chart (drag across it), the zoomed window slides "
                                     "with the newest data while the run trains; off, it stays where you put it. "
                                     "Double-click a chart to see all of it again.")
    options = ChartOptions(x_axis, smoothing)
    st.fragment(live_part, run_every=state.live_interval())(run.id, options, follow)


main()

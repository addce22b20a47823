"""Activations & weights: per-layer statistics over time, and one layer's histogram as it evolves."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kerascope.app import charts, state, widgets
from kerascope.monitor.reader import Run

ACTIVATION_STATS = {"std": "spread (std)", "zero_frac": "zero fraction (dead units near 1)", "mean": "mean",
                    "max": "max"}
WEIGHT_STATS = {"std": "spread (std)", "norm": "norm", "mean": "mean", "max": "max"}


def section(frame: pd.DataFrame, kind: str, stats: dict[str, str]) -> None:
    """Heatmap of one statistic (rows x step) and the histogram over time of one chosen row."""
    if not len(frame):
        where = " on `activation_data` (pass a small batch of inputs)" if kind == "activation" else ""
        st.info(f"No {kind} statistics in this run. LiveMonitor records them every `activation_freq` epochs{where}.")
        return
    left, right = st.columns([1, 2])
    stat = left.selectbox(f"{kind.capitalize()} statistic", list(stats), format_func=stats.get, key=f"{kind}_stat")
    rows = list(dict.fromkeys(frame["row"]))
    row = right.selectbox("Layer" if kind == "activation" else "Weight", rows, key=f"{kind}_row")
    zmax = 1.0 if stat == "zero_frac" else None
    st.plotly_chart(charts.heatmap_figure(frame, row="row", value=stat, zmax=zmax,
                                          title=f"{kind} {stats[stat]} per layer and step"),
                    key=f"{kind}_heatmap", config={"displaylogo": False})
    st.plotly_chart(charts.histogram_over_time(frame[frame["row"] == row], title=f"{row}: {kind} histogram over "
                                               "time"), key=f"{kind}_histogram", config={"displaylogo": False})


def weight_rows(weights: pd.DataFrame) -> pd.DataFrame:
    frame = weights.copy()
    frame["row"] = frame["layer"].astype(str) + "/" + frame["weight"].fillna("").astype(str)
    return frame


def live_part(run_id: str) -> None:
    try:
        run: Run = state.store().run(run_id)
    except KeyError:
        st.warning("This run's directory was removed.")
        return
    run.refresh()
    activations = run.activations().assign(row=lambda f: f["layer"].astype(str))
    weights = weight_rows(run.weights())
    st.subheader("Activations")
    section(activations, "activation", ACTIVATION_STATS)
    st.subheader("Weights")
    section(weights, "weight", WEIGHT_STATS)


def main() -> None:
    run = widgets.readable_run("activations", "Activations & weights")
    if run is None:
        return
    # Statistics arrive once per epoch: a slower timer is plenty and keeps the layer pickers responsive.
    interval = state.live_interval()
    st.fragment(live_part, run_every=interval and 2.0)(run.id)


main()

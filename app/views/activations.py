"""Activations, weights & gradients: per-layer statistics over time, one layer's histogram as it evolves, and the
per-layer gradient norms with the learning rate beside them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from kerascope.app import alerts, charts, state, widgets
from kerascope.app.formatting import md_escape
from kerascope.app.live_chart import live_chart
from kerascope.monitor import Run

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
    overflowed = alerts.overflowed_rows(frame)
    if overflowed:
        st.error(f"Overflow: {', '.join(md_escape(row) for row in overflowed)} reached non-finite values or the float "
                 "limit (about 3.4e38) at the latest step. A spread of 0 here means every value is the same huge "
                 "number, not dead units.", icon=":material/error:")
    dead = alerts.dead_share(frame) if kind == "activation" else {}
    if dead:
        st.warning("Dead units (share of exact zeros at the latest step): " + ", ".join(
            f"{md_escape(row)} {share:.0%}" for row, share in dead.items()), icon=":material/warning:")
    zmax = 1.0 if stat == "zero_frac" else None
    heatmap = charts.heatmap_figure(frame, row="row", value=stat, zmax=zmax,
                                    title=f"{kind} {stats[stat]} per layer and step")
    live_chart(heatmap, key=f"{kind}_heatmap", view=stat)
    live_chart(charts.histogram_over_time(frame[frame["row"] == row], title=f"{row}: {kind} histogram over time"),
               key=f"{kind}_histogram", view=row)


def weight_rows(weights: pd.DataFrame) -> pd.DataFrame:
    frame = weights.copy()
    frame["row"] = frame["layer"].astype(str) + "/" + frame["weight"].fillna("").astype(str)
    return frame


def gradient_section(run: Run) -> None:
    """Per-layer gradient norms over steps (log colour) and the selected layer's weights with the LR."""
    gradients = run.gradients()
    if not len(gradients):
        st.info("No gradient statistics in this run. Pass `LiveMonitor(gradient_data=(x_val[:64], y_val[:64]))` to "
                "record per-layer gradient norms every `gradient_freq` batches.")
        return
    # Rebuilt only when the run read new records (the page reruns every 2 s).
    norms = state.session_cached("gradient_norms", (run.id, run.version),
                                 lambda: charts.layer_gradient_norms(gradients))
    live_chart(charts.gradient_heatmap(norms, title="gradient norm per layer and step (log colour)"),
               key="gradient_heatmap", view="log")
    layers = list(dict.fromkeys(norms["row"]))
    divergence = run.divergence
    default = layers.index(divergence.layer) if divergence and divergence.layer in layers else 0
    layer = st.selectbox("Layer", layers, index=default, key="gradient_layer")
    arrays = run.arrays("batch")
    lr = (arrays["step"], arrays["lr"]) if "lr" in arrays and len(arrays["step"]) else None
    live_chart(charts.gradient_lines(gradients, layer, lr, title=f"{layer}: gradient norms and learning rate"),
               key="gradient_lines", view=layer)


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
    st.subheader("Gradients")
    gradient_section(run)


def main() -> None:
    run = widgets.readable_run("Activations & weights")
    if run is None:
        return
    # Statistics arrive once per epoch: a slower timer is plenty and keeps the layer pickers responsive.
    interval = state.live_interval()
    st.fragment(live_part, run_every=interval and 2.0)(run.id)


main()

"""Training problems worth a banner at the top of the Run page: NaN/Inf, divergence, dead units, exploding activations.

Each check reads only data the run already holds (epoch metrics, the latest activation statistics, events), so the
checks cost little on every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kerascope.monitor.reader import Run

DEAD_ZERO_FRAC = 0.99  # a ReLU layer whose outputs are (almost) all exactly zero has stopped learning
EXPLODING_STD = 1e3  # activation spread far beyond what initializations produce
EXPLODING_GROWTH = 100.0  # std grew this many times since the first record
DIVERGENCE_FACTOR = 2.0  # latest loss more than this many times the best one so far


@dataclass(frozen=True)
class Alert:
    level: str  # "error" or "warning"
    title: str
    detail: str


def run_alerts(run: Run) -> list[Alert]:
    """Every alert for `run`, most serious first."""
    alerts = _non_finite(run) + _divergence(run.epoch_metrics()) + _activation_alerts(run.activations())
    return sorted(alerts, key=lambda alert: alert.level != "error")


def _non_finite(run: Run) -> list[Alert]:
    events = run.events()
    metrics = set()
    for data in events.loc[events["kind"] == "nan", "data"]:
        if isinstance(data, dict) and data.get("metric"):
            metrics.add(str(data["metric"]))
    epoch = run.epoch_metrics()
    if len(epoch):
        last = epoch.iloc[-1]
        for column in epoch.columns:
            if column not in ("epoch", "step", "time", "phase") and np.isinf(last[column]):
                metrics.add(column)
    if not metrics:
        return []
    return [Alert("error", "NaN/Inf in metrics", f"non-finite values in {', '.join(sorted(metrics))}: training "
                  "has numerically broken down (lower the learning rate, clip gradients, check the inputs)")]


def _divergence(epoch: pd.DataFrame) -> list[Alert]:
    alerts = []
    for column in ("loss", "val_loss"):
        if column not in epoch or len(epoch) < 3:
            continue
        values = epoch[column].to_numpy(float)
        values = values[np.isfinite(values)]
        if len(values) < 3:
            continue
        best, last = values.min(), values[-1]
        if best > 0 and last > DIVERGENCE_FACTOR * best and last > values[-2]:
            alerts.append(Alert("warning", f"{column} is diverging",
                                f"{column} is {last:.4g}, {last / best:.1f}x its best value {best:.4g}"))
    return alerts


def _activation_alerts(activations: pd.DataFrame) -> list[Alert]:
    if not len(activations):
        return []
    frame = activations.dropna(subset=["step", "layer"])
    if not len(frame):
        return []
    latest = frame[frame["step"] == frame["step"].max()]
    alerts = []
    dead = latest[pd.to_numeric(latest["zero_frac"], errors="coerce") >= DEAD_ZERO_FRAC]
    if len(dead):
        names = ", ".join(f"{layer} ({frac:.0%} zeros)" for layer, frac in zip(dead["layer"], dead["zero_frac"],
                                                                                 strict=True))
        alerts.append(Alert("warning", "Dead units", f"layers whose outputs are almost all zero: {names}. "
                            "Dead ReLUs: try a lower learning rate, LeakyReLU or better initialization"))
    first = frame.groupby("layer", sort=False)["std"].first()
    exploding = []
    for layer, std in zip(latest["layer"], pd.to_numeric(latest["std"], errors="coerce"), strict=True):
        start = first.get(layer)
        grown = start is not None and start > 0 and std / start > EXPLODING_GROWTH
        if np.isfinite(std) and (std > EXPLODING_STD or grown):
            exploding.append(f"{layer} (std {std:.3g})")
    if exploding:
        alerts.append(Alert("warning", "Exploding activations", f"activations grew very large in "
                            f"{', '.join(exploding)}: consider normalization or a lower learning rate"))
    return alerts

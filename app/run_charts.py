"""The Run page's charts, built from a Run without Streamlit (so the benchmark measures exactly this work)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from kerascope.app import charts, tables
from kerascope.monitor.reader import Run


@dataclass(frozen=True)
class ChartOptions:
    x_axis: str
    smoothing: float
    log_y: bool
    window: tuple[float, float]


def epoch_figures(run: Run, options: ChartOptions) -> dict[str, go.Figure]:
    """One chart per metric, train and val_ together, one point per epoch."""
    frame = run.epoch_metrics()
    events = run.events()
    figures = {}
    # A run whose epoch records lack the chosen axis (a hand-made or damaged file) plots by epoch, then by row.
    axis = next((name for name in (options.x_axis, "epoch") if frame[name].notna().any()), None)
    x = frame[axis].to_numpy(float) if axis else np.arange(len(frame), dtype=float)
    for metric in tables.metric_names(frame):
        if metric.startswith("val_") and metric.removeprefix("val_") in frame:
            continue
        series = [charts.Series(name, x, frame[name].to_numpy(float))
                  for name in (metric, f"val_{metric}") if name in frame]
        # One point per epoch needs no smoothing: the points are already averages over the epoch.
        figures[metric] = charts.metric_figure(series, title=metric, x_axis=options.x_axis, log_y=options.log_y,
                                               events=events, markers=True, window=options.window)
    return figures


def batch_figures(run: Run, options: ChartOptions) -> dict[str, go.Figure]:
    """One chart per metric at batch level (the batch's own value where recorded), plus the learning rate."""
    arrays = run.arrays("batch")
    if "step" not in arrays or not len(arrays["step"]):
        return {}
    x = charts.batch_x(arrays, options.x_axis, run.status_info.get("steps_per_epoch"))
    events = run.events()
    names = [n for n in arrays if n not in tables.NOT_METRICS and not n.startswith("batch_")]
    figures = {}
    for name in sorted(names, key=lambda n: (n != "loss", n)):
        column = f"batch_{name}" if f"batch_{name}" in arrays else name
        series = [charts.Series(name, x, arrays[column], key=f"{run.path}/{column}")]
        figures[name] = charts.metric_figure(series, title=f"{name} per batch" if column != name else name,
                                             x_axis=options.x_axis, smoothing=options.smoothing,
                                             log_y=options.log_y, events=events, window=options.window)
    if "lr" in arrays:
        figures["learning rate"] = charts.metric_figure([charts.Series("lr", x, arrays["lr"])],
                                                        title="learning rate per batch", x_axis=options.x_axis,
                                                        log_y=options.log_y, events=events, window=options.window)
    return figures

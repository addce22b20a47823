"""The Run page's charts, built from a Run without Streamlit (so the benchmark measures exactly this work)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kerascope.app import charts, tables
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

# Charts per level on the Run page: a run that logs hundreds of metrics would otherwise take the page (and the server)
# minutes to draw; the rest are named in `chart_overflow`'s message and stay in the CSV export and the notebook API.
MAX_CHARTS = 24
LR_CHART = "learning rate"  # the learning rate's chart: per batch, or per epoch for runs without batch records
# Epoch record columns holding the learning rate an epoch ran with: LiveMonitor's, then the one ReduceLROnPlateau and
# LearningRateScheduler put in the epoch logs.
EPOCH_LR_COLUMNS = ("lr", "learning_rate")


@dataclass(frozen=True)
class ChartOptions:
    x_axis: str  # "step", "epoch" (epochs completed) or "time"
    smoothing: float  # EMA weight for batch-level charts


def best_marker(run: Run, frame: pd.DataFrame, x: np.ndarray) -> tuple[float, int] | None:
    """Where to mark the best epoch: on runs that stopped early (not by a NaN guard), whose restored weights are
    the best epoch's."""
    stop, best = run.stop, run.best_epoch
    if stop is None or stop.by_nan_guard or best is None:
        return None
    rows = np.flatnonzero(frame["epoch"].to_numpy(float) == best)
    return (float(x[rows[-1]]), best) if len(rows) else None


def key_metric(run: Run) -> str | None:
    """The metric the run is judged by: the one its checkpoints / "best" flag monitor, without its val_ prefix."""
    monitored = run.options.monitor
    return monitored.removeprefix(fmt.VAL_PREFIX) if monitored else None


def epoch_figures(run: Run, options: ChartOptions) -> dict[str, go.Figure]:
    """One chart per metric, train and val_ together, one point per epoch: loss first, then the key metric (the page
    draws in this order, and these are the charts a user looks at first)."""
    frame = run.epoch_metrics()
    events = run.events()
    figures = {}
    x = epoch_x(frame, options.x_axis)
    best = best_marker(run, frame, x)
    for metric in _epoch_charts(run, frame)[:MAX_CHARTS]:
        series = [charts.Series(name, x, frame[name].to_numpy(float))
                  for name in (metric, f"val_{metric}") if name in frame]
        # One point per epoch needs no smoothing: the points are already averages over the epoch.
        figures[metric] = charts.metric_figure(series, title=metric, x_axis=options.x_axis, events=events, best=best,
                                               robust_y="loss" in metric, markers=True)
    return figures


def system_figures(run: Run) -> dict[str, go.Figure]:
    """CPU % and memory of the training process (system.jsonl) over wall time."""
    frame = run.system_metrics()
    if not len(frame) or "time" not in frame:
        return {}
    x = frame["time"].to_numpy(float)
    figures = {}
    if "cpu_percent" in frame:
        figures["cpu"] = charts.metric_figure([charts.Series("CPU %", x, frame["cpu_percent"].to_numpy(float))],
                                              title="process CPU %", x_axis="time", height=260)
    memory = [charts.Series(label, x, frame[column].to_numpy(float) / 2**20)
              for column, label in (("rss_bytes", "RSS (MB)"), ("gpu_memory_bytes", "GPU memory (MB)"))
              if column in frame]
    if memory:
        figures["memory"] = charts.metric_figure(memory, title="memory (MB)", x_axis="time", height=260)
    return figures


def epoch_x(frame: pd.DataFrame, x_axis: str) -> np.ndarray:
    """x of epoch records: their step or time, or epochs completed (the stored 0-based epoch + 1)."""
    # A run whose epoch records lack the chosen axis (a hand-made or damaged file) plots by epoch, then by row.
    axis = next((name for name in (x_axis, "epoch") if frame[name].notna().any()), None)
    if axis is None:
        return np.arange(1, len(frame) + 1, dtype=float)
    x = frame[axis].to_numpy(float)
    return x + 1 if axis == "epoch" else x


def _epoch_charts(run: Run, frame: pd.DataFrame) -> list[str]:
    """The epoch charts' metrics in page order (a val_ metric shares its train metric's chart)."""
    key = key_metric(run)
    names = sorted(tables.metric_names(frame), key=lambda name: (name != "loss", name != key))
    return [name for name in names if not (name.startswith("val_") and name.removeprefix("val_") in frame)]


def _batch_charts(arrays: dict[str, np.ndarray]) -> list[str]:
    names = [n for n in arrays if n not in fmt.NON_METRIC_COLUMNS and not n.startswith(fmt.BATCH_VALUE_PREFIX)]
    return sorted(names, key=lambda n: (n != "loss", n))


def chart_overflow(run: Run) -> str | None:
    """"truncated: N more metrics ..." when the run logs more metrics than the Run page charts, else None."""
    more = max(len(_epoch_charts(run, run.epoch_metrics())) - MAX_CHARTS, 0)
    more += max(len(_batch_charts(run.arrays("batch"))) - MAX_CHARTS, 0)
    if not more:
        return None
    return (f"truncated: {more:,} more metrics are not charted (the first {MAX_CHARTS} per level are); "
            "Compare and its CSV export reach every one")


def batch_figures(run: Run, options: ChartOptions) -> dict[str, go.Figure]:
    """One chart per metric at batch level (the batch's own value where recorded), plus the learning rate, which
    comes right after the loss."""
    arrays = run.arrays("batch")
    if "step" not in arrays or not len(arrays["step"]):
        return {}
    x = charts.batch_x(arrays, options.x_axis, run.progress.steps_per_epoch)
    events = run.events()
    epochs = run.epoch_metrics()
    best = best_marker(run, epochs, epoch_x(epochs, options.x_axis))
    figures = {}
    for name in _batch_charts(arrays)[:MAX_CHARTS]:
        column = f"batch_{name}" if f"batch_{name}" in arrays else name
        series = [charts.Series(name, x, arrays[column], key=f"{run.path}/{column}")]
        figures[name] = charts.metric_figure(series, title=f"{name} per batch" if column != name else name,
                                             x_axis=options.x_axis, smoothing=options.smoothing, events=events,
                                             best=best, robust_y="loss" in name)
    if "lr" in arrays:  # log y: schedules span decades; never smoothed: the LR is exact, not noisy
        figures[LR_CHART] = charts.metric_figure([charts.Series("lr", x, arrays["lr"])],
                                                        title="learning rate per batch", x_axis=options.x_axis,
                                                        log_y=True, events=events)
    first = [name for name in ("loss", LR_CHART) if name in figures]
    return {name: figures[name] for name in first + [name for name in figures if name not in first]}


def epoch_lr_figure(run: Run, options: ChartOptions) -> go.Figure | None:
    """The learning rate each epoch ran with (log y, never smoothed), for runs whose LR is in their epoch records
    only (batch logging off); None when no epoch record holds one."""
    frame = run.epoch_metrics()
    column = next((name for name in EPOCH_LR_COLUMNS if name in frame and frame[name].notna().any()), None)
    if column is None:
        return None
    x = epoch_x(frame, options.x_axis)
    return charts.metric_figure([charts.Series("lr", x, frame[column].to_numpy(float))], title="learning rate",
                                x_axis=options.x_axis, log_y=True, events=run.events(),
                                best=best_marker(run, frame, x), markers=True)


def page_figures(run: Run, options: ChartOptions) -> dict[str, dict[str, go.Figure]]:
    """The Run page's metric charts by section ("epoch", "batch"), each in page order: loss, the key metric and the
    learning rate (per batch, else per epoch) come first (the charts a user looks at first), then the other epoch
    metrics, then the batch metrics. Before the first epoch ends, the batch section opens with loss and the learning
    rate."""
    epoch, batch = epoch_figures(run, options), batch_figures(run, options)
    if not epoch:
        return {"epoch": epoch, "batch": batch}
    lr = batch.pop(LR_CHART) if LR_CHART in batch else epoch_lr_figure(run, options)
    if lr is None:
        return {"epoch": epoch, "batch": batch}
    leading = [name for name in epoch if name in ("loss", key_metric(run))]  # epoch_figures puts them first
    return {"epoch": {**{name: epoch[name] for name in leading}, LR_CHART: lr, **epoch}, "batch": batch}

"""Plotly figure builders. Long series are downsampled (MinMaxLTTB) to a bounded number of WebGL points per trace.

Nothing here touches Streamlit, so the builders are cheap to test and to benchmark.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from tsdownsample import MinMaxLTTBDownsampler

from kerascope.app.smoothing import EmaCache, ema

MAX_POINTS = 2000  # per trace: what the browser receives, whatever the run's length
# WebGL pays off only for long traces; short ones stay SVG, which redraws faster on a remount and does not use up
# the browser's WebGL contexts (about 16 per page).
WEBGL_FROM_POINTS = 1000
MAX_EVENT_MARKERS = 60
EVENT_STYLE = {  # kind -> (colour, label drawn at the top of the chart; "" draws the line only)
    "phase": ("#6f42c1", "phase"),
    "early_stop": ("#d62728", "early stop"),
    "lr_change": ("#ff7f0e", "LR"),
    "checkpoint": ("#2ca02c", ""),
    "nan": ("#d62728", "NaN"),
    "failed": ("#d62728", "failed"),
    "interrupted": ("#7f7f7f", "interrupted"),
}
X_TITLES = {"step": "step", "epoch": "epoch", "time": "wall time"}
_downsampler = MinMaxLTTBDownsampler()
_smoothed = EmaCache()  # process-wide: sessions watching the same run share the work


@dataclass(frozen=True)
class Series:
    """One trace: a name and its x/y values at full resolution; `key` names a growing series (run and column) whose
    smoothing is then cached and extended with only the new points."""

    name: str
    x: np.ndarray
    y: np.ndarray
    key: str | None = None


def plain(text: object) -> str:
    """User text for plotly, which renders a subset of HTML in names, titles and labels: escape it."""
    return html.escape(str(text), quote=False)


def finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop points where y is NaN/Inf or x is missing (a metric absent from some records)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(y) & np.isfinite(x)
    return (x, y) if keep.all() else (x[keep], y[keep])


def downsample(x: np.ndarray, y: np.ndarray, n_out: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `n_out` points that keep the series' extremes and shape (MinMaxLTTB); x must be increasing."""
    if len(y) <= n_out:
        return x, y
    if (x[1:] < x[:-1]).any():  # LTTB needs sorted x (a resumed run may log a step twice): fall back to sorting
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    index = _downsampler.downsample(x, y, n_out=n_out)
    return x[index], y[index]


def to_axis(x: np.ndarray, axis: str) -> np.ndarray | pd.DatetimeIndex:
    """Values as drawn on the chosen x axis: wall time becomes datetimes, the rest stays numeric."""
    if axis == "time":
        return pd.to_datetime(x, unit="s")
    return x


def batch_x(arrays: dict[str, np.ndarray], axis: str, steps_per_epoch: object = None) -> np.ndarray:
    """x values of batch records on an axis; "epoch" is fractional (epoch + batch / steps per epoch) so batches
    spread across their epoch instead of piling up on it."""
    if axis != "epoch":
        return arrays[axis]
    batch = arrays["batch"]
    if isinstance(steps_per_epoch, int) and steps_per_epoch > 0:
        per_epoch = float(steps_per_epoch)
    else:
        per_epoch = max(float(np.nanmax(batch)) + 1, 1.0) if len(batch) else 1.0
    return arrays["epoch"] + batch / per_epoch


def metric_figure(
    series: list[Series],
    *,
    title: str,
    x_axis: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    events: pd.DataFrame | None = None,
    markers: bool = False,
    height: int = 320,
    window: tuple[float, float] = (0.0, 1.0),
) -> go.Figure:
    """A line chart of several series on one y axis (train and val of one metric, or one metric of many runs).

    Args:
        series: the traces, at full resolution (downsampled here).
        title: chart title.
        x_axis: "step", "epoch" or "time" (x values are Unix seconds then).
        smoothing: EMA weight in [0, 1); when > 0 the raw trace is drawn faint under the smoothed one.
        log_y: logarithmic y axis (non-positive values are dropped by plotly).
        events: events to draw as vertical lines (columns kind, step, epoch, time, message).
        markers: draw point markers (epoch-level charts with few points).
        height: pixels.
        window: the visible part of the x extent, as fractions (0.5, 1.0) = the latest half. Set server-side, it
            survives live refreshes, which remount the chart and reset a zoom done in the browser.

    Example:
    ```python
    frame = run.epoch_metrics()
    series = [Series(name, frame["step"].to_numpy(), frame[name].to_numpy()) for name in ("loss", "val_loss")]
    st.plotly_chart(metric_figure(series, title="loss", events=run.events(), log_y=True))
    ```
    """
    traces = []
    for index, item in enumerate(series):
        x, y = finite(item.x, item.y)
        color = _color(index)
        mode = "lines+markers" if markers else "lines"
        if smoothing > 0 and len(y) > 1:
            xs, ys = downsample(x, y)
            traces.append(scatter(len(xs))(x=to_axis(xs, x_axis), y=ys, name=plain(f"{item.name} (raw)"), mode="lines",
                                       line={"color": color, "width": 1}, opacity=0.25, showlegend=False,
                                       hoverinfo="skip"))
            y = _smoothed.smooth(item.key, y, smoothing) if item.key else ema(y, smoothing)
        xs, ys = downsample(x, y)
        traces.append(scatter(len(xs))(x=to_axis(xs, x_axis), y=ys, name=plain(item.name), mode=mode,
                                   line={"color": color, "width": 2}, marker={"size": 5}))
    figure = go.Figure(traces)
    figure.update_layout(
        title={"text": plain(title), "font": {"size": 15}}, height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        xaxis_title=X_TITLES.get(x_axis, x_axis), yaxis_type="log" if log_y else "linear", hovermode="x unified",
    )
    if window != (0.0, 1.0):
        apply_window(figure, series, x_axis, window)
    if events is not None and len(events):
        add_event_lines(figure, events, x_axis)
    return figure


def scatter(points: int) -> type[go.Scatter] | type[go.Scattergl]:
    return go.Scattergl if points >= WEBGL_FROM_POINTS else go.Scatter


def apply_window(figure: go.Figure, series: list[Series], x_axis: str, window: tuple[float, float]) -> None:
    lows = [np.nanmin(s.x) for s in series if len(s.x) and np.isfinite(s.x).any()]
    highs = [np.nanmax(s.x) for s in series if len(s.x) and np.isfinite(s.x).any()]
    if not lows:
        return
    low, high = min(lows), max(highs)
    bounds = [low + fraction * (high - low) for fraction in window]
    figure.update_xaxes(range=list(to_axis(np.array(bounds), x_axis)), autorange=False)


def add_event_lines(figure: go.Figure, events: pd.DataFrame, x_axis: str) -> None:
    """Draw events (phases, early stop, LR changes, checkpoints, NaN) as labelled vertical lines."""
    shown = events[events["kind"].isin(list(EVENT_STYLE))].tail(MAX_EVENT_MARKERS)
    shapes, annotations = list(figure.layout.shapes), list(figure.layout.annotations)
    labels: dict[object, tuple[str, list[str]]] = {}  # x -> (color of the first, labels): one text per x
    for _, event in shown.iterrows():
        x = event.get(x_axis)
        if x is None or pd.isna(x):
            continue
        x = pd.to_datetime(x, unit="s") if x_axis == "time" else float(x)
        color, label = EVENT_STYLE[event["kind"]]
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"color": color, "width": 1, "dash": "dot"}})
        if label and label not in labels.setdefault(x, (color, []))[1]:
            labels[x][1].append(label)
    for x, (color, texts) in labels.items():
        if texts:  # events at the same x (a phase that also changes the LR) share one label, not overlapping ones
            annotations.append({"x": x, "xref": "x", "y": 1, "yref": "paper", "text": " · ".join(texts),
                                "showarrow": False, "font": {"size": 10, "color": color}, "yanchor": "bottom"})
    figure.update_layout(shapes=shapes, annotations=annotations)


def heatmap_figure(frame: pd.DataFrame, *, row: str, value: str, title: str, colorscale: str = "Viridis",
                   zmax: float | None = None) -> go.Figure:
    """Rows (layers) x step heatmap of one statistic; `frame` has columns `row`, step and `value`."""
    table = frame.pivot_table(index=row, columns="step", values=value, aggfunc="last", sort=False)
    labels = [plain(label) for label in table.index]
    figure = go.Figure(go.Heatmap(z=table.to_numpy(dtype=float), x=table.columns.to_numpy(), y=labels,
                                  colorscale=colorscale, zmin=0 if zmax is not None else None, zmax=zmax,
                                  colorbar={"title": {"text": value}}, hovertemplate="%{y}<br>step %{x}<br>"
                                  f"{value} %{{z:.4g}}<extra></extra>"))
    figure.update_layout(title={"text": plain(title), "font": {"size": 15}}, xaxis_title="step",
                         height=max(260, 60 + 28 * len(table.index)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         yaxis={"autorange": "reversed", "type": "category"})
    return figure


def histogram_over_time(frame: pd.DataFrame, *, title: str, bins: int = 40) -> go.Figure:
    """The histograms of one layer (rows of `frame` with `step` and `histogram`) as a step x value heatmap.

    Each record has its own bin edges; counts are moved onto one common grid (by bin centre) and normalized per
    step, so distributions of different spread stay comparable as they evolve.
    """
    records = [(step, h) for step, h in zip(frame["step"], frame["histogram"], strict=True)
               if isinstance(h, dict) and len(h.get("edges") or []) == len(h.get("counts") or []) + 1 > 1]
    if not records:
        return go.Figure().update_layout(title=plain(title))
    low = min(min(h["edges"]) for _, h in records)
    high = max(max(h["edges"]) for _, h in records)
    grid = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    columns = []
    for _, h in records:
        edges = np.asarray(h["edges"], dtype=float)
        counts, _ = np.histogram((edges[:-1] + edges[1:]) / 2, bins=grid, weights=np.asarray(h["counts"], float))
        columns.append(counts / counts.sum() if counts.sum() else counts)
    centres = (grid[:-1] + grid[1:]) / 2
    figure = go.Figure(go.Heatmap(z=np.array(columns).T, x=[step for step, _ in records], y=centres,
                                  colorscale="Blues", colorbar={"title": {"text": "share"}},
                                  hovertemplate="step %{x}<br>value %{y:.3g}<br>share %{z:.3f}<extra></extra>"))
    figure.update_layout(title={"text": plain(title), "font": {"size": 15}}, xaxis_title="step", yaxis_title="value",
                         height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def parallel_figure(frame: pd.DataFrame, metric: str) -> go.Figure:
    """Parallel coordinates: one axis per hparam column of `frame` and a last axis for `metric` (the colour)."""
    dimensions = []
    for column in frame.columns:
        values = frame[column]
        numeric = pd.to_numeric(values, errors="coerce")
        if column == metric or numeric.notna().all():
            dimensions.append({"label": plain(column), "values": numeric.to_numpy(float)})
        else:
            labels = values.map(str)
            codes = {label: i for i, label in enumerate(sorted(labels.unique()))}
            dimensions.append({"label": plain(column), "values": labels.map(codes).to_numpy(float),
                               "tickvals": list(codes.values()), "ticktext": [plain(label) for label in codes]})
    color = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float) if metric in frame else None
    figure = go.Figure(go.Parcoords(dimensions=dimensions,
                                    line={"color": color, "colorscale": "Viridis", "showscale": True}))
    figure.update_layout(height=360, margin={"l": 60, "r": 60, "t": 50, "b": 20})
    return figure


def _color(index: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    return palette[index % len(palette)]

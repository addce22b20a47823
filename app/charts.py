"""Plotly figure builders. Long series are downsampled (MinMaxLTTB) to a bounded number of points per trace, drawn
as SVG (go.Scatter).

Nothing here touches Streamlit, so the builders are cheap to test and to benchmark.
"""

from __future__ import annotations

import html
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from tsdownsample import MinMaxLTTBDownsampler

from kerascope.app.formatting import number_text, numbers_text
from kerascope.app.smoothing import EmaCache, ema
from kerascope.monitor import format as fmt

# Per trace: what the browser receives, whatever the run's length. At this size SVG draws as fast as WebGL, and
# each WebGL context costs about 0.4 s at page load in software rendering (and browsers allow only ~16 per page).
MAX_POINTS = 2000
MAX_EVENT_MARKERS = 60  # per kind: the latest ones
# Events drawn on metric charts: kind -> (legend name, colour, line dash, label). Each kind is one trace, so a click
# on its legend entry hides it. Phases, LR changes and early stop are labelled lines; checkpoints are small ticks on
# the x axis (a line on every chart for each save hides the curves).
EVENT_STYLE = {
    fmt.EVENT_PHASE: ("phases", "#6f42c1", "solid"),
    fmt.EVENT_LR_CHANGE: ("LR changes", "#ff7f0e", "dot"),
    fmt.EVENT_EARLY_STOP: ("early stop", "#d62728", "dash"),
    fmt.EVENT_NAN: ("NaN / Inf", "#d62728", "solid"),
    fmt.EVENT_DIVERGENCE: ("divergence", "#d62728", "dashdot"),
    fmt.FAILED: ("failed", "#d62728", "solid"),
    fmt.INTERRUPTED: ("interrupted", "#7f7f7f", "solid"),
    fmt.EVENT_RESUMED: ("resumed", "#17becf", "dash"),  # a restarted script took over from here
}
# Whose labels win the rows above the chart where space runs out: the one-off events a run is read by first.
LABEL_PRIORITY = ("early stop", "NaN / Inf", "divergence", "failed", "interrupted", "best epoch", "phases", "resumed",
                  "LR changes")
# Kinds that happen at the end of an epoch (x = epochs completed on the epoch axis), the others at its start.
_AT_EPOCH_END = {fmt.EVENT_EARLY_STOP, fmt.EVENT_CHECKPOINT, fmt.EVENT_NAN, fmt.EVENT_DIVERGENCE, fmt.FAILED,
                 fmt.INTERRUPTED}
LABEL_ROWS = 3  # labels of nearby events are stacked on this many rows; a line with no free row goes unlabelled
LABEL_ROW_HEIGHT = 0.09  # of the plot's height: a 10 px label's line on a 340 px chart
# Labels are placed in Python, where the chart's width is unknown: in pixels of a plot area LABEL_PLOT_PX wide (a Run
# page chart's on a 1280 px wide window, two charts a row, is 364 px), with LABEL_CHAR_PX per character (the 10 px
# label font draws 4.5 to 5.3 px; the margin covers wider fonts). A wider chart only spreads the labels further apart.
LABEL_PLOT_PX = 340.0
LABEL_CHAR_PX = 6.0
LABEL_GAP_PX = 8.0  # between two labels on a row, and plotly's offset of a label from its line
# A value's hover reads as the tables do (`number_text`: "8.1e-05", not 0.000081): plotly's number formats cannot
# switch to scientific notation below 1e-3, so each point carries its text.
HOVER_TEMPLATE = "%{customdata}"
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
    color: str | None = None  # default: by position in the chart


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
    """x values of batch records on an axis; "epoch" is epochs completed, fractional ((batch + 1) / steps per epoch
    into the epoch), so batches spread across their epoch and the end of the first epoch is 1, as Keras prints it."""
    if axis != "epoch":
        return arrays[axis]
    batch = arrays["batch"]
    if isinstance(steps_per_epoch, int) and steps_per_epoch > 0:
        per_epoch = float(steps_per_epoch)
    else:
        per_epoch = max(float(np.nanmax(batch)) + 1, 1.0) if len(batch) else 1.0
    return arrays["epoch"] + (batch + 1) / per_epoch


def metric_figure(
    series: list[Series],
    *,
    title: str,
    x_axis: str = "step",
    smoothing: float = 0.0,
    log_y: bool = False,
    robust_y: bool = False,
    events: pd.DataFrame | None = None,
    best: tuple[object, int] | None = None,
    markers: bool = False,
    height: int = 340,
    max_points: int = MAX_POINTS,
) -> go.Figure:
    """A line chart of several series on one y axis (train and val of one metric, or one metric of many runs).

    The chart has its own y scale buttons (linear / log, and "cut top 1 %" with `robust_y`), kept by the browser
    across live updates; events are drawn on an overlay axis, one legend entry per kind.

    Args:
        series: the traces, at full resolution (downsampled here).
        title: chart title.
        x_axis: "step", "epoch" (epochs completed: the end of the first epoch is 1) or "time" (x is Unix seconds).
        smoothing: EMA weight in [0, 1); when > 0 the raw trace is drawn faint under the smoothed one.
        log_y: start with a logarithmic y axis (non-positive values are not drawn on it).
        robust_y: offer a y range that ignores the top 1 % of values (a loss spike hides the rest of the curve).
        events: events to draw (columns kind, step, epoch, time, message, data).
        best: (x, 0-based epoch) of the best epoch to mark, e.g. the weights EarlyStopping restored.
        markers: draw point markers (epoch-level charts with few points).
        height: pixels.
        max_points: points per trace sent to the browser (many runs on one chart get fewer each).

    Example:
    ```python
    frame = run.epoch_metrics()
    series = [Series(name, frame["epoch"].to_numpy() + 1, frame[name].to_numpy()) for name in ("loss", "val_loss")]
    live_chart(metric_figure(series, title="loss", x_axis="epoch", events=run.events()), key="loss")
    ```
    """
    traces = []
    values = []
    for index, item in enumerate(series):
        x, y = finite(item.x, item.y)
        values.append(y)
        color = item.color or _color(index)
        mode = "lines+markers" if markers else "lines"
        if smoothing > 0 and len(y) > 1:
            xs, ys = downsample(x, y, max_points)
            traces.append(go.Scatter(x=to_axis(xs, x_axis), y=ys, name=plain(f"{item.name} (raw)"), mode="lines",
                                     line={"color": color, "width": 1}, opacity=0.25, showlegend=False,
                                     hoverinfo="skip"))
            y = _smoothed.smooth(item.key, y, smoothing) if item.key else ema(y, smoothing)
        xs, ys = downsample(x, y, max_points)
        traces.append(go.Scatter(x=to_axis(xs, x_axis), y=ys, name=plain(item.name), mode=mode,
                                 line={"color": color, "width": 2}, marker={"size": 5}, **value_hover(ys)))
    figure = go.Figure(traces)
    figure.update_layout(
        title={"text": plain(title), "font": {"size": 15}, "x": 0.0, "xanchor": "left", "xref": "paper"},
        height=height, margin={"l": 10, "r": 10, "t": 44, "b": 10},
        # Below the plot: the toolbar (top right) and the scale buttons never cover it.
        legend={"orientation": "h", "yanchor": "top", "y": -0.18, "xanchor": "left", "x": 0.0},
        yaxis={"type": "log" if log_y else "linear", "automargin": True, "exponentformat": "e"},
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        hovermode="x unified", updatemenus=[scale_buttons(np.concatenate(values) if values else np.array([]),
                                                          log_y, robust_y)],
    )
    all_x = [item.x for item in series if len(item.x)]
    span = (float(np.nanmin([np.nanmin(x) for x in all_x])), float(np.nanmax([np.nanmax(x) for x in all_x]))) \
        if all_x else None
    marked = events if events is not None else pd.DataFrame(columns=["kind"])
    best_line = None
    if best is not None:
        x, epoch = best
        best_line = (to_axis(np.array([x]), x_axis)[0], f"best epoch {epoch + 1}", "the best epoch, whose weights "
                     "EarlyStopping(restore_best_weights=True) restores")
    figure.add_traces(event_traces(marked, x_axis, span, best_line))
    return figure


def value_hover(y: np.ndarray) -> dict[str, object]:
    """A trace's hover arguments: each point's y value as `number_text` writes it."""
    # An object array, not a list: plotly checks and copies a list item by item.
    return {"customdata": np.array(numbers_text(y), dtype=object), "hovertemplate": HOVER_TEMPLATE}


def scale_buttons(values: np.ndarray, log_y: bool, robust_y: bool) -> dict:
    """The chart's own y scale switch: linear, log and (optionally) linear without the top 1 % of values."""
    buttons = [{"label": "linear", "method": "relayout", "args": [{"yaxis.type": "linear", "yaxis.autorange": True}]},
               {"label": "log", "method": "relayout", "args": [{"yaxis.type": "log", "yaxis.autorange": True}]}]
    if robust_y and len(values) > 1:
        low, high = float(np.min(values)), float(np.percentile(values, 99))
        pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
        buttons.append({"label": "cut top 1 %", "method": "relayout",
                        "args": [{"yaxis.type": "linear", "yaxis.autorange": False,
                                  "yaxis.range": [low - pad, high + pad]}]})
    return {"type": "buttons", "direction": "right", "active": 1 if log_y else 0, "showactive": True,
            "x": 1.0, "xanchor": "right", "y": 1.0, "yanchor": "bottom", "pad": {"t": 0, "b": 4},
            "font": {"size": 10}, "buttons": buttons}


def event_x(event: pd.Series, x_axis: str) -> object:
    """Where an event sits on the x axis: its step, its wall time, or epochs completed (start or end of its epoch)."""
    if x_axis == "epoch":
        epoch = pd.to_numeric(event.get("epoch"), errors="coerce")
        return None if pd.isna(epoch) else float(epoch) + (1.0 if event["kind"] in _AT_EPOCH_END else 0.0)
    value = pd.to_numeric(event.get(x_axis), errors="coerce")
    if pd.isna(value):
        return None
    return pd.to_datetime(value, unit="s") if x_axis == "time" else float(value)


def event_label(event: pd.Series, nan_epochs: set[float] = frozenset()) -> str:
    """The short text drawn at an event's line (user text escaped). A stop in an epoch where a metric became NaN was
    a NaN guard's (TerminateOnNaN), not early stopping."""
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    kind = event["kind"]
    if kind == fmt.EVENT_EARLY_STOP and pd.to_numeric(event.get("epoch"), errors="coerce") in nan_epochs:
        return "NaN guard stop"
    if kind == fmt.EVENT_PHASE:
        trainable = data.get("trainable_params")
        phase = data.get("phase")
        count = f" · {trainable:,} trainable" if isinstance(trainable, int) else ""
        return f"phase {phase}{count}" if phase is not None else f"phase{count}"
    if kind == fmt.EVENT_LR_CHANGE:
        new = data.get("new")
        return f"LR {number_text(new)}" if isinstance(new, (int, float)) else "LR"
    if kind == fmt.EVENT_DIVERGENCE:
        layer = data.get("layer")
        return f"diverged · {plain(layer)}" if isinstance(layer, str) else "diverged"
    return {fmt.EVENT_EARLY_STOP: "early stop", fmt.EVENT_NAN: "NaN", fmt.FAILED: "failed",
            fmt.INTERRUPTED: "interrupted"}.get(kind, plain(kind))


def event_traces(events: pd.DataFrame, x_axis: str, span: tuple[float, float] | None,
                 best: tuple[object, str, str] | None = None) -> list[go.Scatter]:
    """Per event kind on the overlay axis: its vertical lines, and their labels as a second trace of the same legend
    group (a click on the kind's legend entry hides both); checkpoints are ticks on the x axis.

    Hovering shows the event's message. `best` adds the best epoch's line (x, label, hover). `span` is the x range of
    the chart's data (numbers; Unix seconds on the time axis), used to keep labels apart.
    """
    kinds: list[tuple[str, str, str, list[tuple[object, str, str]]]] = []
    nan_epochs = set(pd.to_numeric(events.loc[events["kind"] == fmt.EVENT_NAN, "epoch"], errors="coerce")) \
        if "epoch" in events else set()
    for kind, (name, color, dash) in EVENT_STYLE.items():
        lines = []
        for _, event in events[events["kind"] == kind].tail(MAX_EVENT_MARKERS).iterrows():
            x = event_x(event, x_axis)
            if x is not None:
                lines.append((x, event_label(event, nan_epochs), _message(event)))
        if lines:
            kinds.append((name, color, dash, lines))
    if best is not None:
        kinds.append(("best epoch", "#2ca02c", "dash", [best]))
    # Labels are placed in order of importance: where rows run out, the LR changes' go first.
    ranked = sorted(range(len(kinds)), key=lambda k: LABEL_PRIORITY.index(kinds[k][0]))
    placed = iter(place_labels([(x, label) for k in ranked for x, label, _ in kinds[k][3]], span))
    places = {k: [next(placed) for _ in kinds[k][3]] for k in ranked}
    traces = []
    for k, (name, color, dash, lines) in enumerate(kinds):
        traces += _labelled_lines(name, color, dash, lines, places[k])
    checkpoints = events[events["kind"] == fmt.EVENT_CHECKPOINT].tail(MAX_EVENT_MARKERS)
    ticks = [(event_x(event, x_axis), _message(event) or "checkpoint") for _, event in checkpoints.iterrows()]
    ticks = [(x, text) for x, text in ticks if x is not None]
    if ticks:
        traces.append(go.Scatter(x=[x for x, _ in ticks], y=[0.02] * len(ticks), yaxis="y2", mode="markers",
                                 name="checkpoints", marker={"symbol": "triangle-up", "size": 9, "color": "#2ca02c"},
                                 hovertext=[text for _, text in ticks], hoverinfo="text"))
    return traces


def _message(event: pd.Series) -> str:
    """An event's message as hover text (escaped); "" when the record has none (a hand-written line)."""
    message = event.get("message")
    return plain(message) if isinstance(message, str) else ""


@dataclass(frozen=True)
class LabelPlace:
    """Where an event's label is drawn: its height on the overlay axis (0 to 1) and which side of its line it reads."""

    top: float
    leftwards: bool


def place_labels(labels: list[tuple[object, str]], span: tuple[float, float] | None,
                 plot_px: float = LABEL_PLOT_PX) -> list[LabelPlace | None]:
    """Each label's place (in the order given), or None for no label, so that no two labels overlap.

    A label reads rightwards from its line, or leftwards where it would pass the chart's right edge; in the order
    given, each takes the first row (from the top) where it clears every label already there by LABEL_GAP_PX, in
    pixels of a plot area `plot_px` wide. Where every row is taken the line stays unlabelled (its hover still says
    what it is).

    Args:
        labels: (x as drawn: a number or a timestamp, label text) per event line.
        span: the x range of the chart's data (Unix seconds on the time axis); the lines widen it.
        plot_px: the plot area's assumed width.
    """
    xs = [_x_number(x) for x, _ in labels]
    known = [x for x in xs if x is not None] + (list(span) if span else [])
    if not known:  # no line has an x to draw at
        return [None] * len(labels)
    low, high = min(known), max(known)
    units_per_px = (high - low) / plot_px if high > low else 1.0 / plot_px
    rows: list[list[tuple[float, float]]] = [[] for _ in range(LABEL_ROWS)]
    places: list[LabelPlace | None] = [None] * len(labels)
    for index, (x, (_, text)) in enumerate(zip(xs, labels, strict=True)):
        if x is None:
            continue
        width = (len(text) * LABEL_CHAR_PX + LABEL_GAP_PX) * units_per_px
        leftwards = x + width > high and x - low > high - x
        extent = (x - width, x) if leftwards else (x, x + width)
        row = next((row for row, taken in enumerate(rows)
                    if all(extent[1] <= start or extent[0] >= end for start, end in taken)), None)
        if row is not None:
            rows[row].append(extent)
            places[index] = LabelPlace(1.0 - LABEL_ROW_HEIGHT * row, leftwards)
    return places


def _x_number(x: object) -> float | None:
    """An event's x as a number: timestamps of the time axis as Unix seconds."""
    if isinstance(x, pd.Timestamp):
        return x.timestamp()
    return float(x) if isinstance(x, numbers.Real) and np.isfinite(x) else None


def _labelled_lines(name: str, color: str, dash: str, lines: list[tuple[object, str, str]],
                    places: list[LabelPlace | None]) -> list[go.Scatter]:
    """A kind's full-height lines at each x (x, label, hover) and, as a separate text trace in the same legend group,
    the labels that have a place (plotly.js drops some labels of a lines+text trace that has gaps and empty texts)."""
    xs: list[object] = []
    ys: list[float | None] = []
    hovers: list[str] = []
    for x, label, hover in lines:
        xs += [x, x, None]
        ys += [0.0, 1.0, None]
        hovers += [hover or label, hover or label, ""]
    traces = [go.Scatter(x=xs, y=ys, yaxis="y2", mode="lines", name=name, legendgroup=name,
                         line={"color": color, "width": 1, "dash": dash}, hovertext=hovers, hoverinfo="text")]
    shown = [(x, label, place) for (x, label, _), place in zip(lines, places, strict=True) if place]
    if shown:
        traces.append(go.Scatter(x=[x for x, _, _ in shown], y=[place.top for _, _, place in shown], yaxis="y2",
                                 mode="text", name=name, legendgroup=name, showlegend=False,
                                 text=[label for _, label, _ in shown],
                                 textposition=["bottom left" if place.leftwards else "bottom right"
                                               for _, _, place in shown],
                                 textfont={"size": 10, "color": color}, cliponaxis=False, hoverinfo="skip"))
    return traces


def heatmap_figure(frame: pd.DataFrame, *, row: str, value: str, title: str, colorscale: str = "Viridis",
                   zmax: float | None = None, shown: tuple[str, str] | None = None) -> go.Figure:
    """Rows (layers) x step heatmap of one statistic; `frame` has columns `row`, step and `value`. The hover reads
    `value`, or with `shown` = (column, label) another column of `frame` (the colour may be a transform of it)."""
    hovered_column, hover_label = shown or (value, value)
    # Every recorded row and step keeps its place, also where all its values are NaN (a broken layer is drawn,
    # marked); a value that is not a number (a damaged record) reads as missing.
    cells = frame[frame[row].notna() & frame["step"].notna()]
    cells = cells.assign(**{column: pd.to_numeric(cells[column], errors="coerce")
                            for column in dict.fromkeys((value, hovered_column))})
    table = cells.pivot_table(index=row, columns="step", values=value, aggfunc="last", sort=False, dropna=False)
    hovered = table
    if hovered_column != value:
        hovered = cells.pivot_table(index=row, columns="step", values=hovered_column, aggfunc="last", sort=False,
                                    dropna=False)
    labels = [plain(label) for label in table.index]
    figure = go.Figure(go.Heatmap(z=table.to_numpy(dtype=float), x=table.columns.to_numpy(), y=labels,
                                  colorscale=colorscale, zmin=0 if zmax is not None else None, zmax=zmax,
                                  colorbar={"title": {"text": value}}, text=cell_texts(hovered.to_numpy(dtype=float)),
                                  hovertemplate=f"%{{y}}<br>step %{{x}}<br>{plain(hover_label)} %{{text}}"
                                  "<extra></extra>"))
    missing = np.argwhere(~np.isfinite(table.to_numpy(dtype=float)))
    if len(missing):  # a blank cell would read "no data": non-finite values get an explicit mark
        figure.add_trace(go.Scatter(x=table.columns.to_numpy()[missing[:, 1]], y=[labels[i] for i in missing[:, 0]],
                                    mode="markers", name="NaN / Inf", marker={"symbol": "x", "size": 9,
                                                                               "color": "#d62728"},
                                    hovertemplate="%{y}<br>step %{x}<br>NaN / Inf<extra></extra>"))
    figure.update_layout(title={"text": plain(title), "font": {"size": 15}}, xaxis_title="step",
                         height=max(260, 60 + 28 * len(table.index)), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         yaxis={"autorange": "reversed", "type": "category", "automargin": True})
    return figure


def cell_texts(z: np.ndarray) -> list[list[str]]:
    """A heatmap's values as `number_text` writes them, row by row (its hover text)."""
    texts = numbers_text(z)
    width = z.shape[1] if z.ndim == 2 else len(texts)
    return [texts[start:start + width] for start in range(0, len(texts), max(width, 1))]


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
    shares = np.array(columns).T
    # Hover texts as number_text writes them (plotly's ".3g" reads 0.000081): each cell's value and share.
    values = np.repeat(np.array(numbers_text(centres), dtype=object)[:, None], len(records), axis=1)
    figure = go.Figure(go.Heatmap(z=shares, x=[step for step, _ in records], y=centres, text=values.tolist(),
                                  customdata=cell_texts(shares), colorscale="Blues",
                                  colorbar={"title": {"text": "share"}},
                                  hovertemplate="step %{x}<br>value %{text}<br>share %{customdata}<extra></extra>"))
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
    figure = go.Figure(go.Parcoords(dimensions=dimensions, labelangle=-12, labelside="top",
                                    labelfont={"size": 12}, tickfont={"size": 10},
                                    line={"color": color, "colorscale": "Viridis", "showscale": True}))
    figure.update_layout(height=380, margin={"l": 70, "r": 70, "t": 70, "b": 20})
    return figure


def _color(index: int) -> str:
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
    return palette[index % len(palette)]


def layer_gradient_norms(gradients: pd.DataFrame) -> pd.DataFrame:
    """step, row (layer), norm: each layer's gradient norm over all its weights, NaN where any was non-finite."""
    frame = gradients.dropna(subset=["step", "layer"])
    norms = pd.to_numeric(frame["norm"], errors="coerce")
    broken = ~np.isfinite(norms) | (pd.to_numeric(frame["nonfinite_frac"], errors="coerce").fillna(0) > 0)
    squares = (norms**2).where(~broken, np.nan)
    table = pd.DataFrame({"step": frame["step"], "row": frame["layer"].astype(str), "square": squares})
    grouped = table.groupby(["step", "row"], sort=False)["square"].sum(min_count=1)
    # A layer with any non-finite weight gradient is non-finite as a whole (sum would skip the NaN).
    any_broken = table["square"].isna().groupby([table["step"], table["row"]], sort=False).any()
    result = np.sqrt(grouped.where(~any_broken, np.nan)).rename("norm").reset_index()
    return result.sort_values("step", kind="stable")


def gradient_heatmap(norms: pd.DataFrame, *, title: str) -> go.Figure:
    """Layers x step of gradient norms (`layer_gradient_norms`), coloured on a log10 scale."""
    values = norms["norm"].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    floor = positive.min() if len(positive) else 1.0
    # Exact zeros (a layer that got no gradient) take the lowest colour rather than the NaN mark.
    logged = np.log10(np.where(np.isfinite(values) & (values <= 0), floor, values), where=np.isfinite(values),
                      out=np.full_like(values, np.nan))
    figure = heatmap_figure(norms.assign(log_norm=logged), row="row", value="log_norm", title=title,
                            colorscale="Inferno", shown=("norm", "gradient norm"))
    if len(positive):
        low, high = int(np.floor(np.log10(positive.min()))), int(np.ceil(np.log10(positive.max())))
        ticks = list(range(low, high + 1, max(1, (high - low) // 8)))
        figure.data[0].colorbar.update(title={"text": "norm"}, tickvals=ticks, ticktext=[f"1e{k}" for k in ticks])
    return figure


def gradient_lines(gradients: pd.DataFrame, layer: str, lr: tuple[np.ndarray, np.ndarray] | None, *,
                   title: str) -> go.Figure:
    """The gradient norm of each weight of `layer` over steps (log y), with the learning rate on a second axis."""
    figure = go.Figure()
    frame = gradients[gradients["layer"].astype(str) == layer]
    for index, (weight, rows) in enumerate(frame.groupby(frame["weight"].astype(str), sort=False)):
        rows = rows.sort_values("step", kind="stable")
        x, y = finite(rows["step"].to_numpy(), pd.to_numeric(rows["norm"], errors="coerce").to_numpy())
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=plain(f"{layer}/{weight}"),
                                    line={"color": _color(index)}, **value_hover(y)))
        broken = rows[pd.to_numeric(rows["nonfinite_frac"], errors="coerce").fillna(0) > 0]
        if len(broken):
            figure.add_trace(go.Scatter(x=broken["step"].to_numpy(), y=np.full(len(broken), y.max() if len(y) else 1),
                                        mode="markers", name=plain(f"{weight}: NaN / Inf"),
                                        marker={"symbol": "x", "size": 10, "color": "#d62728"}))
    if lr is not None:
        x, y = downsample(*finite(*lr))
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name="learning rate", yaxis="y2",
                                    line={"color": "#7f7f7f", "dash": "dot"}, **value_hover(y)))
    figure.update_layout(title={"text": plain(title), "font": {"size": 15}}, xaxis_title="step",
                         yaxis={"type": "log", "title": "gradient norm", "automargin": True},
                         yaxis2={"type": "log", "title": "learning rate", "overlaying": "y", "side": "right",
                                 "showgrid": False, "automargin": True, "tickformat": ".1~e"},
                         height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h"})
    return figure

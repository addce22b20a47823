"""The Compare page's charts, built from runs without Streamlit: a grid with every metric overlaying the runs (one
colour per run on every chart), groups of runs as mean and min-max band, and final values against an hparam or the
model's size."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from kerascope.app import charts, tables
from kerascope.app.formatting import number_text
from kerascope.monitor import Run
from kerascope.monitor import format as fmt

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
NO_GROUPS = "no groups"
# Many runs on one chart: at most MAX_DRAWN_RUNS traces (the first picked), sharing MAX_CHART_POINTS points (each run
# at least MIN_RUN_POINTS), so a chart of hundreds of runs costs the browser what a chart of a few long runs does.
MAX_DRAWN_RUNS = 100
MAX_CHART_POINTS = 40_000
MIN_RUN_POINTS = 100
MAX_LEGEND_RUNS = 20
SEARCH = "search (run group)"  # KerasTuner trials of one search share run.json `group`
NAME_PREFIX = "name prefix"
FIRST_TAG = "first tag"
HPARAM = "hparam: "
_NUMBERED_TAIL = re.compile(r"[\s_\-=#.:]*\d+$")  # "seed 3", "run_12", "lr=2" -> their prefix


@dataclass(frozen=True)
class Grid:
    """What the grid shows: a level ("epoch" or "batch"), the x axis ("step" or "epoch") and the EMA weight."""

    level: str
    align: str
    smoothing: float


def run_colors(runs: list[Run]) -> dict[str, str]:
    """One colour per run, the same on every chart (by the order the runs were picked)."""
    return {run.id: PALETTE[index % len(PALETTE)] for index, run in enumerate(runs)}


def grid_metrics(runs: list[Run], level: str) -> list[str]:
    """Every metric any of the runs logged at this level: val_loss first, then loss, then the others (val_ twins
    first, as the held-out value is the one compared)."""
    names: dict[str, None] = {}
    for run in runs:
        if level == "epoch":
            names.update(dict.fromkeys(tables.metric_names(run.epoch_metrics())))
        else:
            frame = run.batch_metrics()
            names.update(dict.fromkeys(c.removeprefix(fmt.BATCH_VALUE_PREFIX) for c in frame.columns
                                       if c.startswith(fmt.BATCH_VALUE_PREFIX)))
            if "lr" in frame:
                names["lr"] = None
    preferred = [name for name in ("val_loss", "loss") if name in names]
    rest = sorted((name for name in names if name not in preferred), key=lambda n: (not n.startswith("val_"), n))
    return preferred + rest


def run_series(run: Run, metric: str, grid: Grid, color: str | None = None) -> charts.Series | None:
    """One run's values of `metric` at the grid's level, against its x axis (epochs completed or step)."""
    if grid.level == "epoch":
        frame = run.epoch_metrics()
        if metric not in frame:
            return None
        x = frame["epoch"].to_numpy(float) + 1 if grid.align == "epoch" else frame["step"].to_numpy(float)
        return charts.Series(tables.run_key(run), x, frame[metric].to_numpy(float), color=color)
    arrays = run.arrays("batch")
    column = metric if metric == "lr" else fmt.BATCH_VALUE_PREFIX + metric
    if column not in arrays or "step" not in arrays:
        return None
    x = charts.batch_x(arrays, grid.align, run.progress.steps_per_epoch)
    return charts.Series(tables.run_key(run), x, arrays[column], key=f"{run.path}/{column}", color=color)


def drawn(runs: list[Run]) -> list[Run]:
    """The runs a chart draws: the first MAX_DRAWN_RUNS picked."""
    return runs[:MAX_DRAWN_RUNS]


def points_per_run(count: int) -> int:
    return min(charts.MAX_POINTS, max(MIN_RUN_POINTS, MAX_CHART_POINTS // max(count, 1)))


def grid_figures(runs: list[Run], grid: Grid) -> dict[str, go.Figure]:
    """One chart per metric, every run on it in its own colour (at most MAX_DRAWN_RUNS runs, downsampled per run)."""
    runs = drawn(runs)
    colors = run_colors(runs)
    figures = {}
    for metric in grid_metrics(runs, grid.level):
        series = [s for s in (run_series(run, metric, grid, colors[run.id]) for run in runs) if s is not None]
        if series:
            figure = charts.metric_figure(
                series, title=metric, x_axis=grid.align, smoothing=0.0 if metric == "lr" else grid.smoothing,
                log_y=metric == "lr", robust_y="loss" in metric, markers=grid.level == "epoch" and len(runs) <= 10,
                height=300, max_points=points_per_run(len(series)))
            if len(series) > MAX_LEGEND_RUNS:  # a legend of a hundred names hides the chart; hover names each run
                figure.update_layout(showlegend=False, hovermode="closest")
            figures[metric] = figure
    return figures


def group_of(run: Run, group_by: str) -> str:
    """The group a run belongs to: its name without a trailing number, its first tag, or one hparam's value."""
    if group_by == SEARCH:
        return run.group or "(no group)"
    if group_by == NAME_PREFIX:
        return _NUMBERED_TAIL.sub("", run.name) or run.name
    if group_by == FIRST_TAG:
        return (run.tags or ["(no tag)"])[0]
    if group_by.startswith(HPARAM):
        name = group_by.removeprefix(HPARAM)
        hparams = run.hparams or {}
        return f"{name}={tables.format_value(hparams[name])}" if name in hparams else f"{name} not set"
    return run.id


def group_options(runs: list[Run]) -> list[str]:
    names = sorted({str(name) for run in runs for name in (run.hparams or {})})
    searches = [SEARCH] if any(run.group for run in runs) else []
    return [NO_GROUPS, *searches, NAME_PREFIX, FIRST_TAG, *(HPARAM + name for name in names)]


def group_band(series: list[charts.Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, mean, min, max) of several runs' curves on the union of their x values; each run counts only inside
    its own x range (a shorter run does not pull the mean toward its last value)."""
    grid = np.unique(np.concatenate([charts.finite(s.x, s.y)[0] for s in series]))
    stacked = []
    for item in series:
        x, y = charts.finite(item.x, item.y)
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        values = np.interp(grid, x, y) if len(x) else np.full(len(grid), np.nan)
        values[(grid < (x[0] if len(x) else np.inf)) | (grid > (x[-1] if len(x) else -np.inf))] = np.nan
        stacked.append(values)
    table = np.vstack(stacked)
    with np.errstate(all="ignore"):
        return grid, np.nanmean(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def group_figures(runs: list[Run], grid: Grid, group_by: str) -> dict[str, go.Figure]:
    """One chart per metric with each group's mean as a line and its min-max range as a band."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_of(run, group_by), []).append(run)
    figures = {}
    for metric in grid_metrics(runs, grid.level):
        figure = go.Figure()
        for index, (name, members) in enumerate(groups.items()):
            series = [s for s in (run_series(run, metric, grid) for run in members) if s is not None]
            if not series:
                continue
            x, mean, low, high = group_band(series)
            color = PALETTE[index % len(PALETTE)]
            label = charts.plain(f"{name} ({len(series)} run{'s' if len(series) > 1 else ''})")
            figure.add_trace(go.Scatter(x=x, y=high, mode="lines", line={"width": 0}, showlegend=False,
                                        hoverinfo="skip", legendgroup=label))
            figure.add_trace(go.Scatter(x=x, y=low, mode="lines", line={"width": 0}, fill="tonexty",
                                        fillcolor=_translucent(color), showlegend=False, hoverinfo="skip",
                                        legendgroup=label))
            figure.add_trace(go.Scatter(x=x, y=mean, mode="lines", name=label, line={"color": color, "width": 2},
                                        legendgroup=label, **charts.value_hover(mean)))
        if figure.data:
            figure.update_layout(
                title={"text": charts.plain(f"{metric} · mean and min-max per group"), "font": {"size": 15},
                       "x": 0.0, "xanchor": "left"},
                height=300, margin={"l": 10, "r": 10, "t": 44, "b": 10}, hovermode="x unified",
                legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0.0},
                yaxis={"type": "log" if metric == "lr" else "linear", "automargin": True})
            figures[metric] = figure
    return figures


def scatter_figure(frame: pd.DataFrame, x: str, y: str, colors: list[str], *, log_x: bool = False) -> go.Figure:
    """One point per run (rows of `frame`, labelled by its index): `y` against `x`."""
    labels = [charts.plain(label) for label in frame.index]
    figure = go.Figure(go.Scatter(
        x=frame[x], y=pd.to_numeric(frame[y], errors="coerce"), mode="markers+text", text=labels,
        textposition="top center", marker={"size": 11, "color": colors[: len(frame)]},
        hovertext=[f"{label}<br>{charts.plain(x)}: {number_text(a)}<br>{charts.plain(y)}: {number_text(b)}"
                   for label, a, b in zip(labels, frame[x], frame[y], strict=True)], hoverinfo="text"))
    figure.update_layout(title={"text": charts.plain(f"{y} against {x}"), "font": {"size": 15}, "x": 0.0},
                         height=340, margin={"l": 10, "r": 10, "t": 44, "b": 10}, showlegend=False,
                         xaxis={"title": charts.plain(x), "type": "log" if log_x else "-", "automargin": True},
                         yaxis={"title": charts.plain(y), "automargin": True})
    return figure


def _translucent(color: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"

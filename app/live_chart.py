"""Charts that update in place: a Streamlit component drawing plotly figures with plotly.js.

`st.plotly_chart` gives a chart a new identity whenever its figure changes (Streamlit hashes the figure into the
element id), so a live chart remounts on every record: the user's zoom is lost and the chart blanks while it redraws.
This component keeps one DOM node per `key` and hands each new figure to `Plotly.react`, which redraws in place and,
with a constant `layout.uirevision`, keeps the user's zoom, pan and legend toggles. plotly.js comes from the installed
plotly package, which the command line puts where Streamlit serves static files (no CDN, works offline).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.io.json import to_json_plotly

CONFIG = {"displaylogo": False, "responsive": True}
# The trace types in plotly.js's cartesian bundle (app/vendor/README.md); any other type needs the full bundle.
CARTESIAN_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
                              "image", "pie", "scatter", "scatterternary", "violin"})
DEFAULT_HEIGHT = 320

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "live_chart.js"), encoding="utf-8") as _source:
    _JS = _source.read()

# Not style-isolated: plotly.js injects its CSS (modebar, hover labels) into the page's <head>, which a shadow root
# would not see.
_component = st.components.v2.component(
    "kerascope_live_chart",
    html='<div class="kerascope-chart"></div>',
    css=".kerascope-chart { width: 100%; }",
    js=_JS,
    isolate_styles=False,
)


def preload_plotly() -> None:
    """Start loading plotly.js in the browser now, before the first chart is ready (call it early on every page)."""
    _component(data="", key="kerascope_plotly_preload", height=0)


def last_x(figure: go.Figure) -> Any:
    """The largest x of the figure's data traces (events on the overlay axis aside), as plotly.js reads it: the
    newest point, for follow mode; None without points."""
    values = []
    for trace in figure.data:
        x = getattr(trace, "x", None)
        if x is not None and len(x) and getattr(trace, "yaxis", None) in (None, "y") and x[-1] is not None:
            values.append(x[-1])
    if not values:
        return None
    newest = max(values)
    if isinstance(newest, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(newest).strftime("%Y-%m-%d %H:%M:%S.%f")
    return float(newest)


def chart_payload(figure: go.Figure, *, key: str, view: str = "", follow: bool = False) -> str:
    """What the browser receives for `figure` (JSON); the figure itself is left as it was, so figures shared by
    several sessions can be drawn by all of them. Arguments as for `live_chart`."""
    x_last = last_x(figure)
    drawn = figure.to_plotly_json()
    # A digest: plotly.js only compares it, and the view may hold user text (a run id).
    layout = {**drawn["layout"], "uirevision": hashlib.sha1(f"{key}|{view}".encode()).hexdigest()[:16]}
    points = sum(len(trace.x) for trace in figure.data if getattr(trace, "x", None) is not None)
    spec = {
        "figure": {"data": drawn["data"], "layout": layout},
        "config": CONFIG,
        "height": figure.layout.height or DEFAULT_HEIGHT,
        "follow": follow,
        "x_last": x_last,
        "x_is_time": isinstance(x_last, str),
        "points": points,
        "revision": hash((points, x_last)),
        "bundle": "cartesian" if all(trace.type in CARTESIAN_TRACES for trace in figure.data) else "full",
    }
    return to_json_plotly(spec)


def draw_chart(payload: str, *, key: str) -> None:
    """Draw a chart from `chart_payload(...)`; on later reruns with the same `key`, update that chart in place."""
    _component(data=payload, key=key, height="content")


def live_chart(figure: go.Figure, *, key: str, view: str = "", follow: bool = False) -> None:
    """Draw `figure`; on later reruns with the same `key`, update that same chart in place.

    Args:
        figure: the figure to show (its traces are sent as they are: downsample long series first).
        key: the chart's identity on the page.
        view: what the chart shows (e.g. the x axis and y scale); a new value resets the user's zoom, since the old
            range means nothing on a new axis.
        follow: after the user zoomed in on x, slide that window with the newest point as data arrives (else the
            zoomed range stays where the user put it).

    Example:
    ```python
    live_chart(metric_figure(series, title="loss"), key="epoch_loss", view="step|linear", follow=True)
    ```
    """
    draw_chart(chart_payload(figure, key=key, view=view, follow=follow), key=key)

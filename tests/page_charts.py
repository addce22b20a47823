"""The charts a page drew, as AppTest sees them: the data each live chart component was mounted with."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

COMPONENT = "kerascope_live_chart"


def chart_specs(at: AppTest) -> list[dict]:
    """Each chart's payload: {"figure": plotly figure JSON, "follow": ..., "x_last": ..., ...}, in page order."""
    specs = []
    for element in at.get("bidi_component"):
        payload = json.loads(element.proto.json) if element.proto.component_name == COMPONENT else ""
        if payload:  # a JSON string, sent as JSON; the plotly.js preloader has none
            specs.append(json.loads(payload))
    return specs


def chart_figures(at: AppTest) -> list[dict]:
    return [spec["figure"] for spec in chart_specs(at)]

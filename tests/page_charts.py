"""The dashboard through AppTest: open a page as a link would, and read the charts it drew (the data each live
chart component was mounted with)."""

from __future__ import annotations

import json
import os

from streamlit.testing.v1 import AppTest

COMPONENT = "kerascope_live_chart"
APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app", "streamlit_app.py")


def open_link(logdir, page: str, **params: str) -> AppTest:
    """The app over `logdir` opened at `page` (e.g. "views/run.py") with these URL query parameters."""
    return _open(logdir, page, params, {})


def open_page(logdir, page: str, **session: object) -> AppTest:
    """The app over `logdir` opened at `page` with these session state values (e.g. run_id=...)."""
    return _open(logdir, page, {}, session)


def _open(logdir, page: str, params: dict[str, str], session: dict[str, object]) -> AppTest:
    os.environ["KERASCOPE_LOGDIR"] = os.fspath(logdir)
    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in params.items():
        at.query_params[name] = value
    for key, value in session.items():
        at.session_state[key] = value
    if page != "views/runs.py":
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


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

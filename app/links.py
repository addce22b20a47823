"""Deep links: the URL holds the page, the run (or the runs compared) and the page's main controls.

`/run?run=<run id>&x=epoch&smooth=0.8` opens that run's Run page with those controls. The entry script calls
`restore` before the page runs (URL -> session state: a shared link, a bookmark, a reload, back/forward) and `save`
after it (session state -> URL, so the address bar always describes what is shown). A run id in a link is checked
against the runs in the logdir; an unknown one leaves the choice alone and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from kerascope.app import state, widgets
from kerascope.app.compare_charts import NO_GROUPS

WRITTEN_KEY = "link_written"  # the query parameters this session last applied or put in the URL
# Each page's control values as the session last saw them: Streamlit drops a widget's state when another page runs,
# so a page revisited (back, or its sidebar link) would otherwise start from its defaults.
REMEMBERED_KEY = "link_remembered"
ENTERED_PAGE_KEY = "link_page"  # the page the session's last full run began
PROBLEM_KEY = "link_problem"  # what a link asked for that could not be shown, until the page says it
RUN_PARAM = "run"
RUNS_PARAM = "runs"
SINGLE_RUN_PAGES = ("run", "activations", "model", "checkpoints")


@dataclass(frozen=True)
class Control:
    """One widget of a page mirrored in the URL."""

    param: str  # the query parameter
    key: str  # the widget's key
    parse: Callable[[str], Any]  # URL text -> widget value; raises ValueError for text that is not a valid value
    default: Any  # not written to the URL (short links)

    def text(self, value: Any) -> str:
        if isinstance(value, bool):
            return "1" if value else "0"
        return f"{value:g}" if isinstance(value, float) else str(value)


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(text)
        return text
    return parse


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.99:
        raise ValueError(text)
    return round(value, 2)


def flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


CONTROLS = {
    "run": (
        Control("x", "run_x", choice("step", "epoch", "time"), "step"),
        Control("smooth", "run_smoothing", fraction, 0.6),
        Control("follow", "run_follow", flag, True),
    ),
    "compare": (
        Control("level", "compare_level", choice("epoch", "batch"), "epoch"),
        Control("group", "compare_group", str, NO_GROUPS),
    ),
}
# The Compare page keeps one metric, alignment and smoothing per level (their keys end with the level), with the
# page's defaults for that level.
COMPARE_PER_LEVEL = {
    "epoch": (
        Control("metric", "compare_metric_epoch", str, None),
        Control("align", "compare_align_epoch", choice("step", "epoch"), "epoch"),
        Control("smooth", "compare_smoothing_epoch", fraction, 0.0),
    ),
    "batch": (
        Control("metric", "compare_metric_batch", str, None),
        Control("align", "compare_align_batch", choice("step", "epoch"), "step"),
        Control("smooth", "compare_smoothing_batch", fraction, 0.6),
    ),
}


def page_name(url_path: str) -> str:
    return url_path or "runs"


def _controls(page: str) -> list[Control]:
    controls = list(CONTROLS.get(page, ()))
    if page == "compare":
        controls += COMPARE_PER_LEVEL[st.session_state.get("compare_level") or "epoch"]
    return controls


def restore(url_path: str) -> bool:
    """Apply the URL's parameters to the session when the URL is not the one this session last wrote (after the
    page's controls as this session last left them: back, forward and a sidebar link return to the view a page had).

    Returns:
        False when the link names a run that is not in the logdir (`problem()` then says which).
    """
    # Both checks are noted as soon as they are acted on, not when the page's run ends: a click while a long run is
    # still going interrupts it, and the run it starts must not apply the same values again over the click.
    page = page_name(url_path)
    if st.session_state.get(ENTERED_PAGE_KEY) != page:  # entered from another page: its widgets' state is gone
        for key, value in st.session_state.get(REMEMBERED_KEY, {}).get(page, {}).items():
            st.session_state[key] = value  # a link's own values, applied below, win
        st.session_state[ENTERED_PAGE_KEY] = page
    params = st.query_params.to_dict()
    if params == st.session_state.get(WRITTEN_KEY):
        return True
    st.session_state[WRITTEN_KEY] = params
    if page in SINGLE_RUN_PAGES and RUN_PARAM in params:
        run_id = params[RUN_PARAM]
        if _known(run_id):
            st.session_state[state.RUN_KEY] = run_id
            st.session_state.pop(widgets.RUN_PICKER_KEY, None)  # the picker then starts from the linked run
        else:
            st.session_state[PROBLEM_KEY] = f"The link asks for run “{run_id}”, which is not in this logdir."
            return False  # said once: WRITTEN_KEY holds the link, so the Runs page it leads to does not say it again
    if page == "compare" and RUNS_PARAM in params:
        wanted = [run_id for run_id in params[RUNS_PARAM].split(",") if run_id]
        missing = [run_id for run_id in wanted if not _known(run_id)]
        st.session_state[state.COMPARE_KEY] = [run_id for run_id in wanted if run_id not in missing]
        st.session_state.pop("compare_runs", None)  # the multiselect then starts from the linked runs
        if missing:
            st.session_state[PROBLEM_KEY] = (f"The link asks for {len(missing)} run(s) not in this logdir: "
                                             + ", ".join(f"“{run_id}”" for run_id in missing))
    if page == "compare" and "level" in params:  # the per-level keys below depend on it
        _apply(CONTROLS["compare"][0], params["level"])
    for control in _controls(page):
        if control.param in params:
            _apply(control, params[control.param])
    return True


def _known(run_id: str) -> bool:
    """A run of the logdir (looked up by id: the link names a few runs, the logdir may hold thousands)."""
    try:
        state.store().run(run_id)
    except KeyError:
        return False
    return True


def _apply(control: Control, text: str) -> None:
    try:
        st.session_state[control.key] = control.parse(text)
    except ValueError:
        pass  # a hand-edited link with a value the control does not offer: keep the current one


def problem() -> str | None:
    """What the last link asked for that could not be shown (once)."""
    return st.session_state.pop(PROBLEM_KEY, None)


def save(url_path: str) -> None:
    """Write the page's run (or compared runs) and controls into the URL."""
    page = page_name(url_path)
    params: dict[str, str] = {}
    if page in SINGLE_RUN_PAGES and st.session_state.get(state.RUN_KEY):
        params[RUN_PARAM] = st.session_state[state.RUN_KEY]
    if page == "compare" and st.session_state.get(state.COMPARE_KEY):
        params[RUNS_PARAM] = ",".join(st.session_state[state.COMPARE_KEY])
    remembered = st.session_state.setdefault(REMEMBERED_KEY, {}).setdefault(page, {})
    for control in _controls(page):
        value = st.session_state.get(control.key)
        if value is not None:
            remembered[control.key] = value
        if value is not None and value != control.default:
            params[control.param] = control.text(value)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state[WRITTEN_KEY] = params

"""Deep links through the whole app (AppTest): the URL opens a run, a comparison and their controls, and follows them.

The same links are clicked in a real browser in tests/test_browser_links.py (reload, back, a row click).
"""

from __future__ import annotations

import os

import pytest
from page_charts import open_link
from run_factory import make_root
from streamlit.testing.v1 import AppTest


@pytest.fixture
def root(runs_root):
    return runs_root, {key: os.path.basename(path) for key, path in make_root(runs_root).items()}


def query(at: AppTest) -> dict[str, str]:
    return {name: values[0] if isinstance(values, list) else values for name, values in at.query_params.items()}


def test_a_run_link_opens_that_run_with_its_controls(root):
    runs_root, ids = root
    at = open_link(runs_root, "views/run.py", run=ids["wide"], x="epoch", smooth="0.8", follow="0")
    assert at.title[0].value == "wide"  # not the newest run, which the page shows by default
    assert at.session_state["run_x"] == "epoch"
    assert at.session_state["run_smoothing"] == 0.8
    assert at.session_state["run_follow"] is False
    assert query(at) == {"run": ids["wide"], "x": "epoch", "smooth": "0.8", "follow": "0"}


def test_the_url_follows_the_controls_and_leaves_defaults_out(root):
    runs_root, ids = root
    at = open_link(runs_root, "views/run.py", run=ids["baseline"])
    assert query(at) == {"run": ids["baseline"]}
    at.button_group[0].set_value("time").run()
    at.slider(key="run_smoothing").set_value(0.3).run()
    assert query(at) == {"run": ids["baseline"], "x": "time", "smooth": "0.3"}
    at.slider(key="run_smoothing").set_value(0.6).run()  # back to the default: out of the link again
    assert query(at) == {"run": ids["baseline"], "x": "time"}


def test_every_single_run_page_takes_the_run_from_the_link(root):
    runs_root, ids = root
    for page in ("views/activations.py", "views/model.py", "views/checkpoints.py"):
        at = open_link(runs_root, page, run=ids["wide"])
        assert at.title[0].value == "wide", page
        assert query(at)["run"] == ids["wide"], page


def test_a_link_to_a_run_that_is_not_here_says_so_and_shows_the_run_list(root):
    runs_root, _ = root
    at = open_link(runs_root, "views/run.py", run="20990101-000000-nope-0000")
    errors = [error.value.replace("\\", "") for error in at.error]  # markdown-escaped: the id is user text
    assert any("“20990101-000000-nope-0000”" in error and "not in this logdir" in error for error in errors)
    assert at.title[0].value == "Runs"
    assert len(at.dataframe[0].value) == 7  # every run of the logdir, to pick from


def test_bad_control_values_in_a_link_are_ignored(root):
    runs_root, ids = root
    at = open_link(runs_root, "views/run.py", run=ids["baseline"], x="sideways", smooth="7", follow="yes")
    assert at.session_state["run_x"] == "step"
    assert at.session_state["run_smoothing"] == 0.6
    assert at.session_state["run_follow"] is True


def test_a_compare_link_opens_those_runs_at_that_level_and_metric(root):
    runs_root, ids = root
    runs = f"{ids['baseline']},{ids['wide']}"
    at = open_link(runs_root, "views/compare.py", runs=runs, level="batch", metric="lr", group="hparam: lr")
    assert at.multiselect(key="compare_runs").value == [ids["baseline"], ids["wide"]]
    assert at.session_state["compare_level"] == "batch"
    assert at.selectbox(key="compare_metric_batch").value == "lr"
    assert at.selectbox(key="compare_group").value == "hparam: lr"
    assert query(at) == {"runs": runs, "level": "batch", "metric": "lr", "group": "hparam: lr"}
    at = open_link(runs_root, "views/compare.py", runs=runs, metric="no such metric", group="hparam: nope")
    assert at.selectbox(key="compare_metric_epoch").value != "no such metric"
    assert at.selectbox(key="compare_group").value == "no groups"  # a grouping these runs do not offer


def test_a_page_visited_again_in_the_session_keeps_its_controls(root):
    """Streamlit drops a widget's state while another page runs: the Run page's controls come back as they were."""
    runs_root, ids = root
    at = open_link(runs_root, "views/run.py", run=ids["baseline"])
    at.button_group[0].set_value("epoch").run()
    at.slider(key="run_smoothing").set_value(0.3).run()
    at.switch_page("views/model.py").run()
    assert "run_x" not in at.session_state  # what Streamlit does to a widget another page does not draw
    at.switch_page("views/run.py").run()
    assert (at.session_state["run_x"], at.session_state["run_smoothing"]) == ("epoch", 0.3)
    assert query(at) == {"run": ids["baseline"], "x": "epoch", "smooth": "0.3"}

"""Every dashboard page over the malformed-run corpus (tests/corpus/runs), driven by Streamlit's AppTest.

Each single-run page is opened on every run of the corpus; the Runs page lists them all and the Compare page
compares them all. No page may raise, broken runs show their reason, and user-written strings holding `<script>` and
`<img onerror>` reach the page only as text: never in a markdown element that allows HTML, never in an HTML element,
and HTML-escaped inside plotly figures (which render a subset of HTML).
"""

from __future__ import annotations

import json
import os
import re

import pytest
from streamlit.testing.v1 import AppTest
from test_corpus import CORPUS, EXPECTED

from kerascope import RunStore

APP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app", "streamlit_app.py")
RUN_PAGES = ("views/run.py", "views/activations.py", "views/model.py", "views/checkpoints.py")
MARKUP = re.compile(r"<\s*(script|img)\b", re.IGNORECASE)


def open_app(page: str) -> AppTest:
    os.environ["KERASCOPE_LOGDIR"] = CORPUS
    at = AppTest.from_file(APP, default_timeout=60)
    if page != "views/runs.py":
        at.switch_page(page)
    return at


def shown_text(at: AppTest) -> str:
    parts = [e.value for e in (*at.title, *at.markdown, *at.caption, *at.warning, *at.error, *at.info, *at.code)]
    return re.sub(r"\\(.)", r"\1", "\n".join(str(p) for p in parts))  # user text is backslash-escaped markdown


def assert_no_live_markup(at: AppTest, where: str) -> None:
    for element in at.markdown:
        if element.proto.allow_html:
            assert not MARKUP.search(element.value), (where, element.value[:200])
    for element in at.get("html"):
        assert not MARKUP.search(element.proto.body), (where, element.proto.body[:200])
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        assert not MARKUP.search(json.dumps(spec)), (where, "plotly spec holds raw markup")


@pytest.mark.parametrize("page", RUN_PAGES)
def test_every_run_page_opens_every_corpus_run(page):
    at = open_app(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    failures = {}
    for run in RunStore(CORPUS).runs():
        # Picked in the sidebar's run selector, as a user would.
        picker = next(box for box in at.selectbox if str(box.key).startswith("run_picker_"))
        picker.set_value(run.id).run()
        if at.exception:
            failures[run.id] = [e.value for e in at.exception]
            at = open_app(page)  # start a fresh session: the failed one may hold a half-built page
            at.run()
            continue
        assert_no_live_markup(at, f"{page} {run.id}")
        status, reason, _ = EXPECTED[run.id]
        if status == "broken" and reason not in shown_text(at):
            failures[run.id] = f"the reason {reason!r} is not shown"
    assert not failures, failures


def test_runs_page_lists_the_corpus_with_reasons():
    at = open_app("views/runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    frame = at.dataframe[0].value
    assert len(frame) == len(EXPECTED)
    by_id = {run.id: run for run in RunStore(CORPUS).runs()}
    names = set(frame["name"])
    assert {run.name for run in by_id.values()} == names
    assert '<script>alert("xss")</script><img src=x onerror=alert(1)>' in names  # the text itself, as a cell
    reasons = dict(zip(frame["id"], frame["reason"], strict=True)) if "id" in frame else {}
    for run_id, (status, reason, _) in EXPECTED.items():
        if status == "broken":
            assert str(reasons.get(run_id, "")).startswith(reason), run_id
    assert_no_live_markup(at, "runs page")


def test_compare_page_compares_every_corpus_run():
    at = open_app("views/compare.py")
    at.session_state["compare_ids"] = sorted(EXPECTED)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert_no_live_markup(at, "compare page")


@pytest.mark.parametrize("run_id", ["symlinks-to-outside", "checkpoints-index-wrong-types", "ok-reference"])
def test_checkpoint_downloads_are_offered_only_for_files_inside_the_run(run_id):
    at = open_app("views/checkpoints.py")
    at.session_state["run_id"] = run_id
    at.run()
    run = RunStore(CORPUS).run(run_id)
    picker = next(box for box in at.selectbox if not str(box.key).startswith("run_picker_"))
    offered = 0
    for path in picker.options:
        picker.set_value(path).run()
        assert not at.exception, [e.value for e in at.exception]
        if at.get("download_button"):
            offered += 1
            assert os.path.realpath(run.file_path(path)).startswith(os.path.realpath(CORPUS) + os.sep)
        else:
            assert at.error, path  # refused, and the page says why
    assert offered == (1 if run_id == "ok-reference" else 0)

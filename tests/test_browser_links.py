"""Links and navigation in a real headless Chromium: a deep link opens the right run and page, a reload keeps the
controls, back goes back, and a click on a row of the Runs table opens that run."""

from __future__ import annotations

import os
import re

import pytest
from run_factory import make_root
from test_browser import CHROMIUM, PATIENCE_MS, dashboard_page

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make chromium)")
ROW_PX = 35  # Streamlit's dataframe: header and rows are 35 px high


@pytest.fixture
def app(runs_root):
    ids = {key: os.path.basename(path) for key, path in make_root(runs_root).items()}
    with dashboard_page(os.fspath(runs_root)) as (page, base):
        yield page, base, ids


def heading(page, text: str) -> None:
    page.get_by_role("heading", name=text, exact=True).first.wait_for(timeout=PATIENCE_MS)


def active_segment(page) -> str:
    """The selected option of the first segmented control (the Run page's x axis)."""
    active = page.locator("button[aria-checked=true]").first
    active.wait_for(timeout=PATIENCE_MS)
    return active.inner_text().strip()


def test_a_deep_link_opens_that_run_and_a_reload_keeps_the_controls(app):
    page, base, ids = app
    page.goto(f"{base}/run?run={ids['wide']}&x=epoch&smooth=0.8")
    heading(page, "wide")  # not the newest run, which the page shows by default
    assert active_segment(page) == "epoch"
    page.locator("button[aria-checked]", has_text="time").first.click()  # a changed control goes into the URL
    page.wait_for_url(re.compile(r"x=time"), timeout=PATIENCE_MS)
    page.reload()
    heading(page, "wide")
    assert active_segment(page) == "time"
    assert f"run={ids['wide']}" in page.url and "smooth=0.8" in page.url


def test_back_returns_to_the_previous_run(app):
    page, base, ids = app
    page.goto(f"{base}/run?run={ids['wide']}")
    heading(page, "wide")
    page.goto(f"{base}/run?run={ids['baseline']}")
    heading(page, "baseline")
    page.go_back()
    heading(page, "wide")


def test_a_link_to_a_missing_run_says_so_over_the_run_list(app):
    page, base, _ = app
    page.goto(f"{base}/model?run=20990101-000000-gone-0000")
    page.get_by_text("which is not in this logdir", exact=False).first.wait_for(timeout=PATIENCE_MS)
    heading(page, "Runs")


def test_clicking_a_row_of_the_runs_table_opens_that_run(app):
    page, base, ids = app
    page.goto(f"{base}/")
    page.get_by_placeholder("name, tag, hparam or id").fill("wide")
    page.keyboard.press("Enter")
    page.get_by_text("1 of 7 runs", exact=False).first.wait_for(timeout=PATIENCE_MS)
    table = page.locator("[data-testid=stDataFrame]").first.bounding_box()
    page.mouse.click(table["x"] + 15, table["y"] + ROW_PX + ROW_PX / 2)  # the first row's selection box
    heading(page, "wide")
    page.wait_for_url(re.compile(rf"/run\?run={ids['wide']}"), timeout=PATIENCE_MS)
    page.get_by_text("Epoch metrics").first.wait_for(timeout=PATIENCE_MS)


def go_back_to(page, pattern: str) -> None:
    """Back until the URL matches `pattern`: Streamlit gives a page switch and each URL update of its own history
    entry, so the page before may be more than one step back."""
    for _ in range(4):
        if re.search(pattern, page.url):
            return
        page.go_back()
        page.wait_for_timeout(300)
    assert re.search(pattern, page.url), page.url


def test_back_and_forward_across_pages_restore_the_view_each_page_had(app):
    page, base, ids = app
    page.goto(f"{base}/run?run={ids['wide']}")
    heading(page, "wide")
    page.locator("button[aria-checked]", has_text="epoch").first.click()
    page.wait_for_url(re.compile(r"x=epoch"), timeout=PATIENCE_MS)
    page.get_by_role("link", name="Model").first.click()  # in-app navigation, no reload
    page.wait_for_url(re.compile(rf"/model\?run={ids['wide']}"), timeout=PATIENCE_MS)
    page.get_by_text("Layers").first.wait_for(timeout=PATIENCE_MS)
    go_back_to(page, r"/run\?")
    heading(page, "wide")
    assert active_segment(page) == "epoch"
    assert "Session State API" not in page.inner_text("body")  # Streamlit's warning for a widget set twice

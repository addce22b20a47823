"""Live charts in a real headless Chromium: they update in place, keep the user's zoom, pause and resume.

Records are appended with RunWriter while the Run page is open, the way LiveMonitor writes them during training.
"""

from __future__ import annotations

import os
import time

import pytest
from run_factory import make_root
from test_browser import CHROMIUM, PATIENCE_MS, dashboard_page, log_epoch

from kerascope import RunWriter

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make chromium)")
STEPS = 10  # batches per epoch, as log_epoch writes them
FIND_CHART = """(title) => [...document.querySelectorAll('.kerascope-chart')]
    .find(node => node.layout && node.layout.title && node.layout.title.text === title)"""


@pytest.fixture
def live(runs_root):
    writer = RunWriter(runs_root, name="live charts", flush_interval=0.1)
    log_epoch(writer, 0, epochs=50, steps=STEPS)
    try:
        with dashboard_page(os.fspath(runs_root)) as (page, base):
            page.goto(f"{base}/run")
            yield writer, page
    finally:
        writer.close()


def points(page, title: str) -> int:
    return page.evaluate(f"(title) => {{ const n = ({FIND_CHART})(title); return n ? n._fullData[0].x.length : 0; }}",
                         title)


def wait_points(page, title: str, count: int) -> None:
    page.wait_for_function(f"([title, count]) => {{ const n = ({FIND_CHART})(title); "
                           "return n && n._fullData.length > 0 && n._fullData[0].x.length === count; }",
                           arg=[title, count], timeout=PATIENCE_MS)


def x_range(page, title: str) -> list[float]:
    return page.evaluate(f"(title) => ({FIND_CHART})(title)._fullLayout.xaxis.range.slice()", title)


def drag_zoom(page, title: str, start: float, end: float) -> None:
    """Drag across the chart's plot area from `start` to `end` (fractions of its width), as a user zooms."""
    page.evaluate(f"(title) => ({FIND_CHART})(title).scrollIntoView()", title)
    box = page.evaluate(f"""(title) => {{
        const r = ({FIND_CHART})(title).querySelector('.nsewdrag').getBoundingClientRect();
        return {{x: r.x, y: r.y, width: r.width, height: r.height}}; }}""", title)
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, y, steps=8)
    page.mouse.up()


def train_for(writer: RunWriter, first_epoch: int, seconds: float) -> int:
    """Append an epoch every 0.5 s for `seconds`; returns the next epoch index."""
    epoch = first_epoch
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        log_epoch(writer, epoch, epochs=50, steps=STEPS)
        epoch += 1
        time.sleep(0.5)
    return epoch


def test_charts_keep_their_element_while_their_data_grows(live):
    writer, page = live
    wait_points(page, "loss", 1)
    count = page.evaluate("document.querySelectorAll('.kerascope-chart').length")
    assert count >= 3  # loss and lr per batch, loss per epoch
    page.evaluate("document.querySelectorAll('.kerascope-chart').forEach((node, i) => { node.__mark = i; })")
    for epoch in range(1, 5):
        log_epoch(writer, epoch, epochs=50, steps=STEPS)
        wait_points(page, "loss", epoch + 1)
        wait_points(page, "loss per batch", (epoch + 1) * STEPS)
    marks = page.evaluate("[...document.querySelectorAll('.kerascope-chart')].map(node => node.__mark)")
    assert marks == list(range(count))  # the same DOM nodes, none remounted or added


def test_a_drag_zoom_holds_across_live_updates(live):
    writer, page = live
    page.get_by_text("Follow the newest step").first.click()  # off: the zoom stays where the user put it
    next_epoch = train_for(writer, 1, 1.0)
    wait_points(page, "loss per batch", next_epoch * STEPS)
    drag_zoom(page, "loss per batch", 0.3, 0.6)
    page.wait_for_timeout(500)
    zoomed = x_range(page, "loss per batch")
    before = points(page, "loss per batch")
    next_epoch = train_for(writer, next_epoch, 5.0)
    wait_points(page, "loss per batch", next_epoch * STEPS)
    assert points(page, "loss per batch") > before
    assert x_range(page, "loss per batch") == pytest.approx(zoomed)


def test_follow_mode_slides_the_zoomed_window_with_the_newest_step(live):
    writer, page = live
    next_epoch = train_for(writer, 1, 1.0)
    wait_points(page, "loss per batch", next_epoch * STEPS)
    drag_zoom(page, "loss per batch", 0.5, 0.8)
    page.wait_for_timeout(500)
    low, high = x_range(page, "loss per batch")
    next_epoch = train_for(writer, next_epoch, 3.0)
    wait_points(page, "loss per batch", next_epoch * STEPS)
    page.wait_for_timeout(500)
    new_low, new_high = x_range(page, "loss per batch")
    assert new_high == pytest.approx(next_epoch * STEPS)  # the newest step is the right edge
    assert new_high - new_low == pytest.approx(high - low)  # the user's zoom width is kept


def test_pause_stops_updates_and_resume_catches_up(live):
    writer, page = live
    wait_points(page, "loss", 1)
    page.get_by_text("Live updates").first.click()
    page.wait_for_timeout(1000)  # the toggle's rerun has taken the fragment timer away
    for epoch in range(1, 4):
        log_epoch(writer, epoch, epochs=50, steps=STEPS)
    page.wait_for_timeout(2000)
    assert points(page, "loss") == 1
    page.get_by_text("Live updates").first.click()
    wait_points(page, "loss", 4)


def test_metric_charts_load_the_cartesian_bundle_and_parallel_coordinates_the_full_one(runs_root):
    ids = {key: os.path.basename(path) for key, path in make_root(runs_root).items()}
    with dashboard_page(os.fspath(runs_root)) as (page, base):
        bundles: list[str] = []
        page.on("request", lambda request: bundles.append(request.url.rsplit("/", 1)[-1])
                if "/app/static/" in request.url else None)
        page.goto(f"{base}/run?run={ids['wide']}")
        page.wait_for_function("() => !!document.querySelector('.kerascope-chart .scatterlayer .trace path.js-line')",
                               timeout=PATIENCE_MS)
        assert bundles == ["plotly-cartesian.min.js.gz"]  # a third of the full bundle: the Run page draws sooner
        page.goto(f"{base}/compare?runs={ids['baseline']},{ids['wide']}")
        page.wait_for_function("() => !!document.querySelector('.kerascope-chart .parcoords')", timeout=PATIENCE_MS)
        assert "plotly.min.js.gz" in bundles

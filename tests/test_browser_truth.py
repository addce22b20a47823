"""What the shipped sample runs say in a real headless Chromium: a diverged run reads diverged with its step, an
early-stopped run says so, the LR axis is logarithmic, and a click on an event kind's legend entry hides that kind."""

from __future__ import annotations

import os

import pytest
from test_browser import CHROMIUM, PATIENCE_MS, REPO, dashboard_page, free_port, log_epoch, start_app, stop_app

from kerascope import RunStore, RunWriter

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make chromium)")
SAMPLES = os.path.join(REPO, "sample_runs")
FIND_CHART = """(title) => [...document.querySelectorAll('.kerascope-chart')]
    .find(node => node.layout && node.layout.title && node.layout.title.text === title)"""


@pytest.fixture(scope="module")
def page():
    with dashboard_page(SAMPLES, width=1280, height=800) as (page, base):
        page.base = base
        yield page


def sample(prefix: str) -> str:
    return next(run.id for run in RunStore(SAMPLES).runs() if run.name.startswith(prefix))


def wait_chart(page, title: str) -> None:
    page.wait_for_function(f"(title) => {{ const n = ({FIND_CHART})(title); return n && n._fullLayout; }}",
                           arg=title, timeout=PATIENCE_MS)


def test_the_diverged_sample_reads_diverged_with_its_step(page):
    page.goto(f"{page.base}/run?run={sample('08')}")
    page.get_by_text("loss became NaN at step 138 (epoch 4)", exact=False).first.wait_for(timeout=PATIENCE_MS)
    page.get_by_text("diverged", exact=True).first.wait_for(timeout=PATIENCE_MS)
    page.goto(f"{page.base}/")
    attention = page.get_by_text("Runs that need attention", exact=False).first
    attention.wait_for(timeout=PATIENCE_MS)
    page.get_by_text("08 learning rate too high", exact=True).first.wait_for(timeout=PATIENCE_MS)


def test_the_early_stopped_sample_says_so_with_a_log_lr_axis_and_kind_toggles(page):
    page.goto(f"{page.base}/run?run={sample('06')}")
    page.get_by_text("stopped early at epoch 31 of 80 (best epoch 27)", exact=False).first.wait_for(
        timeout=PATIENCE_MS)
    wait_chart(page, "learning rate per batch")
    assert page.evaluate(f"(t) => ({FIND_CHART})(t)._fullLayout.yaxis.type", "learning rate per batch") == "log"
    wait_chart(page, "loss")
    visible = f"""(title) => Object.fromEntries(({FIND_CHART})(title)._fullData
        .filter(trace => trace.yaxis === 'y2').map(trace => [trace.name, trace.visible]))"""
    assert page.evaluate(visible, "loss")["checkpoints"] is True
    page.evaluate(f"(t) => ({FIND_CHART})(t).scrollIntoView()", "loss")
    toggle = """(title) => [...(%s)(title).querySelectorAll('.legendtext')]
        .find(text => text.textContent === 'checkpoints').closest('.traces').querySelector('.legendtoggle')"""
    legend = page.evaluate_handle(toggle % FIND_CHART, "loss")
    legend.as_element().click()
    page.wait_for_function(f"(t) => ({FIND_CHART})(t)._fullData.find(d => d.name === 'checkpoints').visible "
                           "=== 'legendonly'", arg="loss", timeout=PATIENCE_MS)
    assert page.evaluate(visible, "loss")["best epoch"] is True  # the other kinds stay


# Every event label a chart's figure holds, and the drawn label texts, legend and scale buttons with their boxes
# (left, top, right, bottom) on the screen.
EVENT_LABELS = f"""(title) => {{
    const node = ({FIND_CHART})(title);
    const box = (node) => {{ const r = node.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }};
    return {{
        labels: node._fullData.filter(trace => trace.yaxis === 'y2')
            .flatMap(trace => [].concat(trace.text || []).filter(text => text)),
        drawn: [...node.querySelectorAll('.scatterlayer .textpoint text')].filter(text => text.textContent)
            .map(text => [text.textContent, box(text)]),
        legend: box(node.querySelector('.legend')),
        buttons: [...node.querySelectorAll('.updatemenu-button')].map(box),
        chart: box(node),
    }};
}}"""


def overlapping(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_event_labels_of_the_early_stopped_sample_are_all_drawn_and_never_overlap(page):
    page.goto(f"{page.base}/run?run={sample('06')}")
    for title in ("loss", "learning rate per batch"):
        wait_chart(page, title)
        page.evaluate("document.fonts.ready")
        shown = page.evaluate(EVENT_LABELS, title)
        drawn = [text for text, _ in shown["drawn"]]
        assert sorted(drawn) == sorted(shown["labels"]), title  # plotly.js drew each label the figure holds
        assert {"phase 1 · 13,706 trainable", "LR 9e-04", "early stop"} <= set(drawn), (title, drawn)
        boxes = shown["drawn"]
        for index, (text, box) in enumerate(boxes):
            for other, other_box in boxes[index + 1:]:
                assert not overlapping(box, other_box), (title, text, box, other, other_box)
            for name, obstacle in [("legend", shown["legend"])] + [("button", b) for b in shown["buttons"]]:
                assert not overlapping(box, obstacle), (title, text, box, name, obstacle)
            assert shown["chart"][0] <= box[0] and box[2] <= shown["chart"][2], (title, text, box)  # not cut off
    # A click on a kind's legend entry hides its labels with its lines.
    page.evaluate(f"(t) => ({FIND_CHART})(t).scrollIntoView()", "loss")
    toggle = """(title) => [...(%s)(title).querySelectorAll('.legendtext')]
        .find(text => text.textContent === 'LR changes').closest('.traces').querySelector('.legendtoggle')"""
    page.evaluate_handle(toggle % FIND_CHART, "loss").as_element().click()
    page.wait_for_function(f"""(t) => ({FIND_CHART})(t)._fullData.filter(d => d.name === 'LR changes')
        .every(d => d.visible === 'legendonly')""", arg="loss", timeout=PATIENCE_MS)
    drawn = [text for text, _ in page.evaluate(EVENT_LABELS, "loss")["drawn"]]
    assert "phase 1 · 13,706 trainable" in drawn and not [text for text in drawn if text.startswith("LR ")], drawn


# The glide-data-grid behind st.dataframe draws on a canvas: its columns (title, width in px), its theme (font,
# cell padding) and each cell's drawn text (`displayData`) are read from the grid component's React props.
GRID = """(grid) => {
    const canvas = grid.querySelector('[data-testid=data-grid-canvas]');
    let fiber = canvas[Object.keys(canvas).find(key => key.startsWith('__reactFiber'))];
    while (fiber && !(fiber.memoizedProps && fiber.memoizedProps.columns && fiber.memoizedProps.theme
                      && fiber.memoizedProps.getCellContent)) fiber = fiber.return;
    return fiber.memoizedProps;
}"""
GRID_TEXT = f"""([grid, rows]) => {{
    const props = ({GRID})(grid);
    const titles = props.columns.map(column => column.title);
    const cell = (title, row) => props.getCellContent([titles.indexOf(title), row]);
    const context = document.createElement('canvas').getContext('2d');
    context.font = props.theme.baseFontStyle + ' ' + props.theme.fontFamily;
    return Object.fromEntries(props.columns.filter(column => column.title).map(column => [column.title, {{
        width: column.width, padding: props.theme.cellHorizontalPadding,
        texts: [...Array(rows).keys()].map(row => String(cell(column.title, row).displayData)),
        text_widths: [...Array(rows).keys()].map(row => context.measureText(
            String(cell(column.title, row).displayData)).width)}}]));
}}"""


def grid_columns(page, index: int, rows: int) -> dict[str, dict]:
    """The `index`-th table of the page: column title -> {width, padding, texts, text_widths} of its first rows."""
    grid = page.locator("[data-testid=stDataFrame]").nth(index)
    grid.locator("[data-testid=data-grid-canvas]").wait_for(timeout=PATIENCE_MS)
    page.evaluate("document.fonts.ready")
    return page.evaluate(GRID_TEXT, [grid.element_handle(), rows])


def test_the_runs_table_shows_names_statuses_and_where_whole(page):
    page.goto(f"{page.base}/")
    page.get_by_text("Runs that need attention", exact=False).first.wait_for(timeout=PATIENCE_MS)
    runs = RunStore(SAMPLES).runs()
    columns = grid_columns(page, 0, len(runs))
    assert "06 early stopping + ReduceLROnPlateau" in columns["name"]["texts"]
    assert "■ interrupted" in columns["status"]["texts"]
    assert "stopped early at epoch 31 of 80 (best epoch 27) · step 1,395" in columns["where"]["texts"]
    for title in ("name", "status", "where"):
        column = columns[title]
        needed = max(column["text_widths"]) + 2 * column["padding"]
        assert needed <= column["width"], f"{title}: {needed:.0f} px of text in a {column['width']} px column"


def test_a_long_where_text_shows_whole(page, runs_root):
    """72 characters (a long run stopped early) need more than a fixed "large" column's 400 px."""
    writer = RunWriter(runs_root, name="long")
    writer.update_status(epochs=10_000, epoch=1233, step=12_345_678)
    for epoch, val_loss in ((1199, 0.1), (1233, 0.2)):
        writer.log("epoch", {"epoch": epoch, "step": (epoch + 1) * 10_000, "time": 1.0, "val_loss": val_loss})
    writer.event("early_stop", "EarlyStopping stopped training", step=12_345_678, epoch=1233, data={"epoch": 1233})
    writer.close()
    port = free_port()
    process = start_app(str(runs_root), port)
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        column = grid_columns(page, 0, 1)["where"]
        assert column["texts"] == ["stopped early at epoch 1234 of 10000 (best epoch 1200) · step 12,345,678"]
        needed = column["text_widths"][0] + 2 * column["padding"]
        assert needed <= column["width"], f"{needed:.0f} px of text in a {column['width']} px column"
    finally:
        stop_app(process)


def test_compare_tables_read_numbers_as_the_dashboard_writes_them(page):
    ids = [sample("08"), sample("06")]
    page.goto(f"{page.base}/compare?runs={','.join(ids)}")
    page.get_by_text("Final metrics and model size").first.wait_for(timeout=PATIENCE_MS)
    columns = grid_columns(page, page.locator("[data-testid=stDataFrame]").count() - 1, 2)
    assert columns["loss"]["texts"] == ["NaN", "0.002871"]  # the diverged run's last loss: not "None"
    assert columns["params"]["texts"] == ["13,706", "13,706"]


def test_a_learning_rate_hover_reads_in_scientific_notation(page):
    page.goto(f"{page.base}/run?run={sample('06')}")
    wait_chart(page, "learning rate per batch")
    hover = f"""(title) => {{ const node = ({FIND_CHART})(title); node.scrollIntoView();
        window.Plotly.Fx.hover(node, {{xval: 1306}});
        return [...node.querySelectorAll('.hoverlayer .legend text.legendtext, .hoverlayer text')]
            .map(text => text.textContent); }}"""
    texts = page.evaluate(hover, "learning rate per batch")
    assert "lr : 8.1e-05" in texts, texts  # ReduceLROnPlateau's last rate (plotly's own ".4~g" reads 0.000081)


def test_a_laptop_screen_shows_title_status_progress_and_two_charts_at_once(page):
    """1280x800: the run's title at the top, its status badge, its progress bar and two charts above the fold."""
    page.goto(f"{page.base}/run?run={sample('01')}")
    drawn = """() => [...document.querySelectorAll('[data-testid=stMain] .kerascope-chart')]
        .filter(node => node._fullLayout).length >= 2"""
    page.wait_for_function(drawn, timeout=PATIENCE_MS)
    page.locator("[data-testid=stProgress]").first.wait_for(timeout=PATIENCE_MS)
    boxes = page.evaluate("""() => {
        const box = (node) => { const r = node.getBoundingClientRect(); return [r.top, r.bottom, r.height]; };
        return {title: box(document.querySelector('[data-testid=stMain] h1')),
                badge: box([...document.querySelectorAll('.stMarkdownBadge')]
                    .find(badge => badge.textContent === 'finished')),
                progress: box(document.querySelector('[data-testid=stProgress]')),
                // the charts drawn in the page (the plotly.js preloader in the sidebar is an empty chart node)
                charts: [...document.querySelectorAll('[data-testid=stMain] .kerascope-chart')]
                    .filter(node => node._fullLayout).slice(0, 2).map(box),
                scrolled: document.querySelector('[data-testid=stMain]').scrollTop + window.scrollY};
    }""")
    assert boxes["scrolled"] == 0
    assert 0 <= boxes["title"][0] <= 64, boxes  # no blank band above the title (Streamlit's default is 6rem)
    for name in ("title", "badge", "progress"):
        assert boxes[name][2] > 0 and boxes[name][1] <= 800, (name, boxes)
    assert len(boxes["charts"]) == 2
    for top, bottom, height in boxes["charts"]:
        assert height >= 300 and 0 < top and bottom <= 800, boxes



def test_the_live_header_follows_status_json_without_a_reload(page, runs_root):
    """The status badge is redrawn by the page's live timer: training ends, the open page says "finished"."""
    writer = RunWriter(runs_root, name="ending", flush_interval=0.2)
    log_epoch(writer, 0, epochs=3)
    port = free_port()
    process = start_app(str(runs_root), port)
    live = page.context.browser.new_page(viewport={"width": 1280, "height": 800})  # one Playwright per thread
    try:
        live.goto(f"http://127.0.0.1:{port}/run?run={os.path.basename(writer.run_dir)}")
        badge = live.locator(".stMarkdownBadge")
        badge.filter(has_text="running").first.wait_for(timeout=PATIENCE_MS)
        navigations = live.evaluate("performance.getEntriesByType('navigation').length")
        writer.close()  # status.json replaced with the final status
        badge.filter(has_text="finished").first.wait_for(timeout=PATIENCE_MS)
        assert badge.all_inner_texts() == ["finished"]
        assert live.evaluate("performance.getEntriesByType('navigation').length") == navigations
    finally:
        live.close()
        writer.close()
        stop_app(process)

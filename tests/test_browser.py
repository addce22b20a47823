"""The dashboard in a real headless Chromium: live updates without reloading, and every page renders.

The app runs as users start it (`python -m kerascope --logdir ... --port ...`); records are appended with RunWriter, the
way LiveMonitor writes them during training. Screenshots go to test-artifacts/ (not committed).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest
from run_factory import make_root

from kerascope import RunStore, RunWriter

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (make chromium)")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "test-artifacts")
PATIENCE_MS = 30_000
PAGES = {  # sidebar link -> text the page shows once rendered
    "Runs": "Compare runs",
    "Run (live)": "Epoch metrics",
    "Activations & weights": "Activation statistic",
    "Model": "Total parameters",
    "Checkpoints": re.compile(r"best\.keras|No checkpoints in this run"),
    "Compare": "Hyperparameters",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, process: subprocess.Popen, patience_s: float = 60.0) -> None:
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        assert process.poll() is None, app_log(process)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the dashboard did not answer /_stcore/health")


def start_app(logdir: str, port: int) -> subprocess.Popen:
    """The app's output goes to a file, not a pipe: nobody reads a pipe while the test runs, and a server whose pipe
    is full blocks on its next log line."""
    log = tempfile.NamedTemporaryFile(prefix="kerascope-app-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "kerascope", "--logdir", logdir, "--port", str(port)], cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log.name
    log.close()
    wait_healthy(port, process)
    return process


def app_log(process: subprocess.Popen, tail: int = 6000) -> str:
    with open(process.log_path, errors="replace") as log:
        return log.read()[-tail:]


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    with contextlib.suppress(OSError):
        os.remove(process.log_path)


def watch_console(page) -> None:
    """Keep what the page logs, its errors, navigations and WebSocket closes (a repeated line is counted, not kept)."""
    page.console_lines = []

    def note(line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if page.console_lines and page.console_lines[-1][1] == line:
            page.console_lines[-1][2] += 1
        else:
            page.console_lines.append([stamp, line, 1])

    page.on("console", lambda message: note(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: note(f"page error: {error}"))
    page.on("crash", lambda _: note("page crashed"))
    page.on("framenavigated", lambda frame: note(f"navigated: {frame.url}") if frame == page.main_frame else None)
    page.on("websocket", lambda socket: (note(f"websocket open: {socket.url}"),
                                         socket.on("close", lambda _: note("websocket closed"))))


# The pages dashboard_page has open: conftest.py saves what they show when a test fails (a fixture never sees the
# test's exception, and a timeout alone says nothing about why).
OPEN_PAGES: list[tuple[object, subprocess.Popen]] = []


def save_evidence(page, process: subprocess.Popen, name: str) -> str:
    """What a failed browser test saw: a screenshot, the page's text and the app's log, under test-artifacts/."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    stem = os.path.join(ARTIFACTS, re.sub(r"[^\w.-]+", "_", name))
    with contextlib.suppress(Exception):
        page.screenshot(path=f"{stem}.png", full_page=True)
    text = ""
    with contextlib.suppress(Exception):
        text = page.inner_text("body")
    log = app_log(process)
    console = "\n".join(f"{stamp} {line}" + (f" (x{count})" if count > 1 else "")
                        for stamp, line, count in getattr(page, "console_lines", [])[-300:])
    with open(f"{stem}.txt", "w") as out:
        out.write(f"URL: {page.url}\n\n--- page text ---\n{text}\n\n--- console ---\n{console}\n\n"
                  f"--- app log ---\n{log}\n")
    return f"page text: {text[-1500:]!r}\nconsole: {console[-3000:]}\napp log: {log[-3000:]}"


def launch_chromium(playwright):
    return playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])


@contextlib.contextmanager
def dashboard_page(logdir: str, width: int = 1400, height: int = 1000) -> Iterator[tuple[object, str]]:
    """The dashboard served over `logdir` as users start it, and a page of a fresh Chromium: (page, base URL)."""
    port = free_port()
    process = start_app(logdir, port)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": width, "height": height})
            watch_console(page)
            OPEN_PAGES.append((page, process))
            try:
                yield page, f"http://127.0.0.1:{port}"
            except Exception:  # used as a `with` block in the test itself: the exception passes through here
                print(save_evidence(page, process, os.environ.get("PYTEST_CURRENT_TEST", "browser test")))
                raise
            finally:
                OPEN_PAGES.remove((page, process))
                browser.close()
    finally:
        stop_app(process)


def log_epoch(writer: RunWriter, epoch: int, epochs: int, steps: int = 10) -> None:
    """One epoch the way LiveMonitor records it: its batches, the epoch line, the status heartbeat."""
    now = time.time()
    for batch in range(steps):
        step = epoch * steps + batch + 1
        loss = math.exp(-0.1 * step)
        writer.log("batch", {"step": step, "epoch": epoch, "batch": batch, "time": now, "loss": loss,
                             "batch_loss": loss, "lr": 0.01})
    writer.log("epoch", {"epoch": epoch, "step": (epoch + 1) * steps, "time": now, "loss": loss,
                         "val_loss": loss * 1.2, "lr": 0.01})
    writer.update_status(epoch=epoch, step=(epoch + 1) * steps, epochs=epochs, steps_per_epoch=steps)
    writer.flush()


def wait_for_points(page, title: str, points: int) -> None:
    """Wait until the plotly chart titled `title` draws `points` points in its first trace."""
    page.wait_for_function(
        """([title, points]) => [...document.querySelectorAll('.js-plotly-plot')].some(plot => {
            // Streamlit's theme wraps titles in <b>; plotly keeps binary arrays decoded in `_inputArray`.
            const text = ((plot.layout && plot.layout.title && plot.layout.title.text) || "").replace(/<[^>]+>/g, "");
            const x = plot.data.length > 0 ? plot.data[0].x : null;
            const length = x ? (x._inputArray || x).length : 0;
            return text === title && length === points;
        })""", arg=[title, points], timeout=PATIENCE_MS)


@pytest.fixture
def served(runs_root):
    make_root(runs_root)
    writer = RunWriter(runs_root, name="live browser run", meta={"hparams": {"lr": 0.01}}, flush_interval=0.2)
    log_epoch(writer, 0, epochs=5)
    port = free_port()
    process = start_app(os.fspath(runs_root), port)
    yield writer, port
    writer.close()
    stop_app(process)


@pytest.fixture
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


def test_live_epoch_appears_without_reload_and_every_page_renders(served, browser):
    writer, port = served
    os.makedirs(ARTIFACTS, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    elsewhere = []  # the dashboard works offline and tells no third party who opens it (fonts, icons, CDNs)
    page.on("request", lambda request: None if request.url.startswith((f"http://127.0.0.1:{port}/", "blob:", "data:"))
            else elsewhere.append(request.url))
    page.goto(f"http://127.0.0.1:{port}/run")
    page.get_by_text("live browser run", exact=True).first.wait_for(timeout=PATIENCE_MS)
    page.get_by_text("epoch 1/5", exact=False).first.wait_for(timeout=PATIENCE_MS)
    wait_for_points(page, "loss", 1)
    navigations = page.evaluate("performance.getEntriesByType('navigation').length")

    log_epoch(writer, 1, epochs=5)
    page.get_by_text("epoch 2/5", exact=False).first.wait_for(timeout=PATIENCE_MS)
    wait_for_points(page, "loss", 2)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == navigations  # no reload
    page.screenshot(path=os.path.join(ARTIFACTS, "run-live.png"), full_page=True)

    for link, shown in PAGES.items():
        page.get_by_role("link", name=link).first.click()
        page.get_by_text(shown, exact=False).first.wait_for(timeout=PATIENCE_MS)
        time.sleep(1.0)  # let the charts finish drawing before the screenshot
        name = link.lower().replace(" ", "-").replace("&", "and").replace("(", "").replace(")", "")
        page.screenshot(path=os.path.join(ARTIFACTS, f"page-{name}.png"), full_page=True)
    assert not page.get_by_text("Traceback", exact=False).count()
    assert elsewhere == []


def test_a_new_run_appears_in_the_list_without_reload(served, browser):
    writer, port = served
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"http://127.0.0.1:{port}/")
    page.get_by_text("Compare runs").first.wait_for(timeout=PATIENCE_MS)
    newcomer = RunWriter(writer.run_dir.rsplit(os.sep, 1)[0], name="arrived later", flush_interval=0.2)
    try:
        # The table is a canvas grid: its caption counts the runs, and the attention box is plain text.
        total = len([d for d in os.listdir(os.path.dirname(newcomer.run_dir)) if not d.startswith(".")])
        page.get_by_text(f"{total} of {total} runs", exact=False).first.wait_for(timeout=PATIENCE_MS)
    finally:
        newcomer.close()


XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_user_written_html_stays_text_on_every_page(runs_root, browser):
    """Names, hparams, tags, notes and event messages with markup reach the page as text, never as elements."""
    writer = RunWriter(runs_root, name=f"xss {XSS}", flush_interval=0.2,
                       meta={"hparams": {f"key {XSS}": f"value {XSS}"}, "tags": [XSS], "notes": XSS})
    log_epoch(writer, 0, epochs=2)
    writer.log("events", {"time": time.time(), "step": 10, "epoch": 0, "kind": "warning", "message": f"event {XSS}"})
    writer.flush()
    port = free_port()
    process = start_app(os.fspath(runs_root), port)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/run")
        # The title shows the name with its markup as literal text.
        page.get_by_text('xss <img src=x onerror="window.__xss=1">', exact=False).first.wait_for(timeout=PATIENCE_MS)
        page.get_by_text("event <img", exact=False).first.wait_for(state="attached", timeout=PATIENCE_MS)  # a grid cell
        for link, shown in PAGES.items():
            page.get_by_role("link", name=link).first.click()
            page.get_by_text(shown, exact=False).first.wait_for(timeout=PATIENCE_MS)
            time.sleep(0.5)
            assert page.evaluate("window.__xss") is None, link
            assert page.locator("img[src='x']").count() == 0, link
            assert page.locator("script", has_text="window.__xss").count() == 0, link
    finally:
        writer.close()
        process.terminate()
        process.wait(timeout=10)


def test_the_shipped_sample_runs_in_the_browser(browser):
    """The fine-tuning sample run's Run page: its charts and LR drawn; the README screenshot comes from here."""
    root = os.path.join(REPO, "sample_runs")
    fine_tuning = next(run for run in RunStore(root).runs() if run.name.startswith("07 "))
    port = free_port()
    process = start_app(root, port)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/run")
        page.get_by_text("Epoch metrics").first.wait_for(timeout=PATIENCE_MS)
        page.locator("[data-testid=stSidebar] [data-testid=stSelectbox]").first.click()
        page.keyboard.type("07 fine-tuning")
        page.keyboard.press("Enter")
        page.get_by_role("heading", name="07 fine-tuning in three phases").first.wait_for(timeout=PATIENCE_MS)
        wait_for_points(page, "learning rate per batch", len(fine_tuning.batch_metrics()))
        time.sleep(1.0)  # let every chart finish drawing before the screenshot
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "sample-run-fine-tuning.png"))
        assert not page.get_by_text("Traceback", exact=False).count()
    finally:
        process.terminate()
        process.wait(timeout=10)

"""Time to first chart and chart stability, side by side with the floor page and TensorBoard, in one run.

One small CNN on the digits is trained with both `LiveMonitor` and `keras.callbacks.TensorBoard(update_freq="batch")`,
so the three servers show the same run:
- Kerascope's Run page (`python -m kerascope`);
- the floor: a one-chart Streamlit page drawing that run's batch loss with `st.plotly_chart` (bench/floor_page.py),
  the least the chosen stack (Streamlit + plotly) can do;
- TensorBoard's time-series page (`tensorboard --logdir`).
Each trial opens a fresh browser context (no cache) and times navigation -> the first chart's line drawn; the targets
are visited in a rotating order. Measured after training, then again while a second (paced) training writes a new
run into both logdirs. Also counted while that training runs: chart elements added to Kerascope's Run page in 10 s
after its first draw (a remount adds one; the goal is 0).

Run: `python bench/first_chart.py [--trials 5]` (about 3 minutes; needs /usr/bin/chromium, playwright and
tensorboard: `make bench` installs it). Writes the `## Live charts` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO]

from dashboard_speed import replace_section  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECTION = "## Live charts"
PATIENCE_MS = 60_000
# What "the first chart is drawn" means on each page: a plotly line with a path, or TensorBoard's first scalar card
# with its axis labelled (its lines are painted on a canvas by a worker, which a page script cannot inspect).
PLOTLY_LINE = ".scatterlayer .trace path.js-line[d]"
FIRST_CHART = {
    "Kerascope Run page": f"() => !!document.querySelector('.kerascope-chart {PLOTLY_LINE}')",
    "floor: one st.plotly_chart": f"() => !!document.querySelector('.js-plotly-plot {PLOTLY_LINE}')",
    "TensorBoard time series": """() => [...document.querySelectorAll('scalar-card line-chart')].some(chart =>
        chart.querySelector('.series-view canvas')
        && /\\d/.test(chart.querySelector('line-chart-axis')?.textContent || ''))""",
}


def train(logdir: str, tb_logdir: str, epochs: int, pace_s: float) -> None:
    """The same training watched by both tools (`--train`, in a child process)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from kerascope import LiveMonitor
    from sample_runs.digits import compile_for_classification, digits_split, small_cnn

    class Pace(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            time.sleep(pace_s)

    x, y, x_val, y_val = digits_split()
    keras.utils.set_random_seed(0)
    model = compile_for_classification(small_cnn(), keras.optimizers.Adam(1e-3))
    callbacks = [LiveMonitor(logdir, name="bench", activation_data=x_val[:128]),
                 keras.callbacks.TensorBoard(tb_logdir, update_freq="batch")]
    if pace_s:
        callbacks.append(Pace())
    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=32, verbose=0, callbacks=callbacks)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(command: list[str], url: str) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command[:4]} did not answer {url}")


def first_chart_s(browser, url: str, drawn: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(drawn, timeout=PATIENCE_MS, polling=20)
        return time.perf_counter() - start
    finally:
        context.close()


def measure(browser, targets: dict[str, str], trials: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    for trial in range(trials):
        for name in names[trial % len(names):] + names[: trial % len(names)]:
            times[name].append(first_chart_s(browser, targets[name], FIRST_CHART[name]))
    return times


def remounts(browser, url: str, seconds: float = 10.0) -> tuple[int, int]:
    """(chart elements added after the first draw, charts on the page) while a training writes the run."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function(FIRST_CHART["Kerascope Run page"], timeout=PATIENCE_MS)
        page.wait_for_timeout(2000)  # every chart of the page drawn once
        page.evaluate("""() => {
            const chart = '.kerascope-chart, .js-plotly-plot';
            window.__added = 0;
            new MutationObserver(records => records.forEach(record => record.addedNodes.forEach(node => {
                if (node.nodeType === 1 && (node.matches(chart) || node.querySelector(chart))) window.__added++;
            }))).observe(document.body, {childList: true, subtree: true});
        }""")
        page.wait_for_timeout(seconds * 1000)
        return page.evaluate("window.__added"), page.evaluate("document.querySelectorAll('.kerascope-chart').length")
    finally:
        context.close()


def table(times: dict[str, list[float]]) -> list[str]:
    floor = statistics.median(times["floor: one st.plotly_chart"])
    lines = ["| page | median | min | max | / floor |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.2f} s | {min(values):.2f} s | {max(values):.2f} s | {median / floor:.2f}x |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--train", nargs=4, metavar=("LOGDIR", "TB_LOGDIR", "EPOCHS", "PACE_S"), help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print the section instead of updating the doc")
    args = parser.parse_args()
    if args.train:
        train(args.train[0], args.train[1], int(args.train[2]), float(args.train[3]))
        return

    from playwright.sync_api import sync_playwright

    work = tempfile.mkdtemp(prefix="kerascope-first-chart-")
    logdir, tb_logdir = os.path.join(work, "runs"), os.path.join(work, "tensorboard")
    trainer = [sys.executable, os.path.abspath(__file__), "--train"]
    subprocess.run([*trainer, logdir, os.path.join(tb_logdir, "finished"), "5", "0"], check=True, cwd=REPO)
    ports = [free_port() for _ in range(3)]
    env_floor = dict(os.environ, KERASCOPE_LOGDIR=logdir)
    servers = [
        serve([sys.executable, "-m", "kerascope", "--logdir", logdir, "--port", str(ports[0])],
              f"http://127.0.0.1:{ports[0]}/_stcore/health"),
        subprocess.Popen([sys.executable, "-m", "streamlit", "run", os.path.join(REPO, "bench", "floor_page.py"),
                          "--server.port", str(ports[1]), "--server.address", "127.0.0.1", "--server.headless", "true",
                          "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                         cwd=REPO, env=env_floor, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        serve([sys.executable, "-m", "tensorboard.main", "--logdir", tb_logdir, "--port", str(ports[2]),
               "--host", "127.0.0.1"], f"http://127.0.0.1:{ports[2]}/"),
    ]
    targets = {
        "Kerascope Run page": f"http://127.0.0.1:{ports[0]}/run",
        "floor: one st.plotly_chart": f"http://127.0.0.1:{ports[1]}/",
        "TensorBoard time series": f"http://127.0.0.1:{ports[2]}/#timeseries",
    }
    load_before = os.getloadavg()[0]
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for url, name in ((targets[n], n) for n in targets):  # warm each server once (first-request imports)
                first_chart_s(browser, url, FIRST_CHART[name])
            after = measure(browser, targets, args.trials)
            training = subprocess.Popen([*trainer, logdir, os.path.join(tb_logdir, "training"), "100", "0.02"],
                                        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(15)  # the new run exists and has records in both logdirs
                during = measure(browser, targets, args.trials)
                added, charts = remounts(browser, targets["Kerascope Run page"])
            finally:
                training.kill()
            browser.close()
    finally:
        for server in servers:
            server.terminate()
    load_after = os.getloadavg()[0]
    text = "\n".join([
        SECTION, "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, 1-minute load average {load_before:.1f} before and {load_after:.1f} after; "
        "headless Chromium with software rendering, a fresh browser context per trial. "
        f"Reproduce with `python bench/first_chart.py --trials {args.trials}`.", "",
        f"Time to first chart after training ({args.trials} trials each, rotating order):", "",
        *table(after), "",
        f"Time to first chart while a training writes a new run into both logdirs ({args.trials} trials each):", "",
        *table(during), "",
        f"Chart elements added to the Run page in 10 s of live updates after its first draw: {added} "
        f"({charts} charts on the page; each remount would add one).", "",
    ])
    if args.no_write:
        print(text)
    else:
        replace_section(os.path.join(REPO, "docs", "benchmarks.md"), SECTION, text)
        print(text)


if __name__ == "__main__":
    main()

"""Many viewers of one live run: record written -> visible in every open Run page, with 1, 5 and 10 browser sessions.

Each session is its own Chromium context (its own Streamlit session) on the Run page of one run. An epoch record is
appended every `--gap` seconds; each page notes, in the browser, when its loss chart first shows that epoch's point.
Latency = that moment - the moment the record was flushed (one clock: browser and writer run on this machine); a
point that arrives together with a later one counts as shown when both are. A record a page has not shown within
`--patience` seconds counts as missed. Writes the `## Many viewers` section of docs/benchmarks.md.

Run: `python bench/many_viewers.py` (about three minutes; needs /usr/bin/chromium and playwright).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO]

from bench.dashboard_speed import free_port, replace_section, wait_health  # noqa: E402
from kerascope import RunWriter  # noqa: E402

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECTION = "## Many viewers"
# In the page: note when a plotly chart titled "loss" first draws N points (Date.now(), milliseconds).
WATCH_POINTS = """() => {
    window.__seen = {};
    setInterval(() => {
        for (const plot of document.querySelectorAll('.js-plotly-plot')) {
            const title = ((plot.layout && plot.layout.title && plot.layout.title.text) || "").replace(/<[^>]+>/g, "");
            const x = title === "loss" && plot.data && plot.data.length ? plot.data[0].x : null;
            const points = x ? (x._inputArray || x).length : 0;
            if (points && !(points in window.__seen)) window.__seen[points] = Date.now();
        }
    }, 20);
}"""


def measure(sessions: int, trials: int, gap_s: float, patience_s: float) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as root:
        writer = RunWriter(root, name="many viewers", flush_interval=60)
        writer.update_status(epochs=trials + 2, steps_per_epoch=1)

        def log_epoch(epoch: int) -> float:
            writer.log("epoch", {"epoch": epoch, "step": epoch + 1, "time": time.time(), "loss": 1 / (epoch + 1)})
            writer.update_status(epoch=epoch, step=epoch + 1)
            writer.flush()
            return time.time()

        log_epoch(0)
        port = free_port()
        process = subprocess.Popen([sys.executable, "-m", "kerascope", "--logdir", root, "--port", str(port)],
                                   cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_health(port, process)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                         for _ in range(sessions)]
                for page in pages:
                    page.goto(f"http://127.0.0.1:{port}/run?run={writer.run_id}")
                for page in pages:
                    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0",
                                           timeout=120_000)
                    page.evaluate(WATCH_POINTS)
                server = psutil.Process(process.pid)
                cpu_before = sum(server.cpu_times()[:2])
                window = time.monotonic()
                written = {}
                for epoch in range(1, trials + 1):
                    time.sleep(gap_s)
                    written[epoch + 1] = log_epoch(epoch)
                time.sleep(patience_s)
                server_cpu = (sum(server.cpu_times()[:2]) - cpu_before) / (time.monotonic() - window)
                latencies, missed = [], 0
                for page in pages:
                    seen = {int(points): ms / 1000 for points, ms in page.evaluate("() => window.__seen").items()}
                    for points, at in written.items():
                        # Shown once the chart holds that point: two records may arrive in one redraw.
                        shown_at = min((t for count, t in seen.items() if count >= points), default=None)
                        if shown_at is not None and shown_at - at <= patience_s:
                            latencies.append(max(0.0, shown_at - at))
                        else:
                            missed += 1
                browser.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
            writer.close()
    shown = np.array(latencies) if latencies else np.array([float("nan")])
    return {"sessions": sessions, "updates": sessions * trials, "missed": missed,
            "p50_s": float(np.percentile(shown, 50)), "p95_s": float(np.percentile(shown, 95)),
            "max_s": float(shown.max()), "server_cpu": server_cpu}


def markdown(results: list[dict[str, float]], args: argparse.Namespace, load: tuple[float, float]) -> str:
    rows = [f"| {r['sessions']} | {r['p50_s']:.2f} s | {r['p95_s']:.2f} s | {r['max_s']:.2f} s | "
            f"{r['missed']} of {r['updates']} | {r['server_cpu'] * 100:.0f} % |" for r in results]
    return "\n".join([
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()} (1-minute load average {load[0]:.1f} before, {load[1]:.1f} after); one headless "
        f"Chromium, one browser context (Streamlit session) per viewer, all on the Run page of one live run. An epoch "
        f"record every {args.gap} s, {args.trials} records per row; an update not shown within {args.patience} s "
        "counts as missed. Reproduce with `python bench/many_viewers.py`.",
        "",
        "| sessions | record -> visible p50 | p95 | max | missed | dashboard server CPU (of one core) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Per session and tick the server does little: the run is re-read once for all sessions (one shared Run), "
        "figures and the chart payloads sent to the browser are built once per run version and shared by every "
        "session that shows the same view.",
        "",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between records")
    parser.add_argument("--patience", type=float, default=10.0, help="seconds after which an update counts as missed")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = [measure(count, args.trials, args.gap, args.patience) for count in args.sessions]
    load = (load_before, os.getloadavg()[0])
    print(json.dumps(results, indent=1))
    text = markdown(results, args, load)
    print(text)
    if not args.no_write:
        replace_section(os.path.join(REPO, "docs", "benchmarks.md"), SECTION, text)


if __name__ == "__main__":
    main()

"""Listing, filtering and comparing at sweep scale: N realistic runs, for N = 1,000 and 10,000.

Each generated run is a shipped sample run (per-batch metrics, activation and weight statistics, about 0.7 MB) whose
streams are hard links (little disk), with its own run.json (hparams lr/units/dropout, a group per 100 runs, tags),
status.json, epoch.jsonl (the template's curves scaled per run) and summary.json (as the writer leaves it). Measured:
- the first-ever scan (no catalog): a fresh process lists every run as the Runs page does (RunStore with its catalog,
  each run's row built), and its peak RSS;
- `RunStore(...).runs()` cold (a fresh process, catalog present) and warm (the same store again), rows included;
- a filter expression over the runs list (`lr < 1e-3 and units >= 64`);
- Compare of 50 runs (epoch metrics: every chart figure, the hparams and final-metrics tables);
- in Chromium: a dashboard started over the root with its catalog present -> the Runs page's table drawn (cold), a
  second visit in a fresh browser context (warm), and the dashboard's RSS after them;
- the same page over a root of 10 runs, measured in the same run: the floor the ratios are taken against;
- listing time against per-run data size: the same number of tiny runs (epoch.jsonl and events only) listed cold.

Run: `python bench/many_runs.py [--sizes 1000 10000]` (about 5 minutes on 2 cores; needs /usr/bin/chromium and
playwright, as the browser tests). Writes the `## Many runs` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]

from dashboard_speed import replace_section  # noqa: E402

from kerascope.monitor import format as fmt  # noqa: E402
from kerascope.monitor.summary import derive_summary, encode_summary  # noqa: E402

SECTION = "## Many runs"
TEMPLATE = "20261125-111256-01_baseline_CNN-f054"
LINKED = (fmt.BATCH_FILE, fmt.ACTIVATIONS_FILE, fmt.WEIGHTS_FILE, fmt.SYSTEM_FILE, fmt.EVENTS_FILE, fmt.SUMMARY_FILE,
          fmt.LAYERS_FILE, fmt.CONFIG_FILE, fmt.GRAPH_DOT_FILE)
EXPRESSION = "lr < 1e-3 and units >= 64"

LIST_COLD = r"""
import json, os, resource, sys, time
sys.path[:0] = [sys.argv[3]]
start = time.perf_counter()
from kerascope.app import tables
from kerascope.monitor import RunStore
from kerascope.monitor import Catalog
imported = time.perf_counter()
root, cache = sys.argv[1:3]
store = RunStore(root, catalog=Catalog(root, cache) if cache != "-" else None)
runs = store.runs()
rows = [tables.run_row(run) for run in runs]
cold = time.perf_counter() - imported
start = time.perf_counter()
runs = store.runs()
rows = [tables.run_row(run) for run in runs]
warm = time.perf_counter() - start
start = time.perf_counter()
frame = tables.runs_frame(runs, rows)
frame_s = time.perf_counter() - start
filter_s = []
for _ in range(5):
    start = time.perf_counter()
    matched, problem = tables.where_filtered(frame, sys.argv[4])
    filter_s.append(time.perf_counter() - start)
assert problem is None, problem
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"runs": len(runs), "cold_s": cold, "warm_s": warm, "frame_s": frame_s,
                  "filter_s": sorted(filter_s)[2], "matched": len(matched), "rss": rss}))
"""

COMPARE = r"""
import json, sys, time
sys.path[:0] = [sys.argv[2]]
from kerascope.app import tables
from kerascope.app.compare_charts import Grid, grid_figures
from kerascope.monitor import RunStore
runs = RunStore(sys.argv[1]).runs()[:50]
start = time.perf_counter()
figures = grid_figures(runs, Grid("epoch", "epoch", 0.0))
payload = sum(len(figure.to_json()) for figure in figures.values())
tables.hparams_frame(runs), tables.final_metrics_frame(runs)
print(json.dumps({"compare_s": time.perf_counter() - start, "charts": len(figures), "payload": payload}))
"""


def generate(root: str, count: int, template: str, tiny: bool = False) -> None:
    """`count` runs under `root`, made from the template run (see the module docstring)."""
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(template, fmt.RUN_FILE), encoding="utf-8") as f:
        base_meta = json.load(f)
    with open(os.path.join(template, fmt.STATUS_FILE), encoding="utf-8") as f:
        base_status = json.load(f)
    with open(os.path.join(template, fmt.EPOCH_FILE), encoding="utf-8") as f:
        epochs = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(template, fmt.EVENTS_FILE), "rb") as f:
        events = f.read()
    now = time.time()
    for index in range(count):
        clock = f"{index // 3600:02d}{index // 60 % 60:02d}{index % 60:02d}"
        run_id = f"20260101-{clock}-trial_{index:05d}-{index % 65536:04x}"
        run_dir = os.path.join(root, run_id)
        os.makedirs(os.path.join(run_dir, fmt.MODEL_DIR))
        for relpath in (fmt.EVENTS_FILE,) if tiny else LINKED:
            source = os.path.join(template, relpath)
            if os.path.exists(source):
                os.link(source, os.path.join(run_dir, relpath))
        lr, units = 10.0 ** -(1 + index % 4), (16, 32, 64, 128)[index // 4 % 4]
        meta = {**base_meta, "id": run_id, "name": f"trial {index}", "created": now - count + index,
                "hparams": {"lr": lr, "units": units, "dropout": round(0.1 * (index % 5), 1)},
                fmt.RUN_GROUP: f"sweep-{index // 100}", "tags": ["bench", f"units-{units}"]}
        status = {**base_status, "heartbeat": now, "ended": now}
        scale = 1.0 + (index % 17) / 20
        lines = [fmt.dumps_line({k: (v * scale if isinstance(v, float) and k not in fmt.NON_METRIC_COLUMNS else v)
                                 for k, v in record.items()}) for record in epochs]
        epoch_data = "".join(lines).encode("utf-8")
        with open(os.path.join(run_dir, fmt.EPOCH_FILE), "wb") as f:
            f.write(epoch_data)
        with open(os.path.join(run_dir, fmt.RUN_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        with open(os.path.join(run_dir, fmt.STATUS_FILE), "w", encoding="utf-8") as f:
            json.dump(status, f)
        with open(os.path.join(run_dir, fmt.RUN_SUMMARY_FILE), "wb") as f:
            f.write(encode_summary(derive_summary(meta, status, epoch_data, events)))


def child(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def browser_times(root: str, cache: str, count: int) -> dict[str, float]:
    """Dashboard start -> Runs table drawn (cold, catalog present), a fresh context's visit (warm), and RSS."""
    from playwright import sync_api
    from test_browser import free_port, launch_chromium, stop_app, wait_healthy

    env = dict(os.environ, KERASCOPE_CACHE_DIR=cache)
    drawn = f"() => document.body.innerText.includes('of {count:,} runs') && !!document.querySelector('canvas')"
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            port = free_port()
            start = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-m", "kerascope", "--logdir", root, "--port", str(port)],
                                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                wait_healthy(port, process)
                results = {}
                for label in ("cold_s", "warm_s"):
                    context = browser.new_context(viewport={"width": 1400, "height": 1000})
                    page = context.new_page()
                    if label == "warm_s":
                        start = time.perf_counter()
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.wait_for_function(drawn, timeout=300_000, polling=20)
                    results[label] = time.perf_counter() - start
                    context.close()
                results["rss"] = rss_of(process.pid)
                return results
            finally:
                stop_app(process)
        finally:
            browser.close()


def floor(workdir: str, template: str) -> dict[str, float]:
    """The same browser measurement over a root of 10 runs: what the page costs whatever the number of runs."""
    root = os.path.join(workdir, "floor")
    generate(root, 10, template)
    child(LIST_COLD, root, os.path.join(workdir, "cache-floor"), REPO, EXPRESSION)  # its catalog, as the others
    return browser_times(root, os.path.join(workdir, "cache-floor"), 10)


def bench(size: int, workdir: str, template: str) -> dict[str, object]:
    root, tiny_root = os.path.join(workdir, f"runs-{size}"), os.path.join(workdir, f"tiny-{size}")
    start = time.perf_counter()
    generate(root, size, template)
    generated = time.perf_counter() - start
    print(f"{size:,} runs generated in {generated:.0f} s", file=sys.stderr)
    cache = os.path.join(workdir, f"cache-{size}")
    first = child(LIST_COLD, root, cache, REPO, EXPRESSION)  # the first-ever scan fills the catalog
    cataloged = child(LIST_COLD, root, cache, REPO, EXPRESSION)
    uncataloged = child(LIST_COLD, root, "-", REPO, EXPRESSION)
    compare = child(COMPARE, root, REPO)
    shown = browser_times(root, cache, size)
    generate(tiny_root, size, template, tiny=True)
    tiny = child(LIST_COLD, tiny_root, "-", REPO, EXPRESSION)
    shutil.rmtree(tiny_root)
    shutil.rmtree(root)
    return {"size": size, "first": first, "cataloged": cataloged, "uncataloged": uncataloged, "compare": compare,
            "browser": shown, "tiny": tiny}


def section(results: list[dict[str, object]], base: dict[str, float], load: tuple[float, float]) -> str:
    sizes = " and ".join(f"{r['size']:,}" for r in results)
    head = ["| measure | " + " | ".join(f"{r['size']:,} runs" for r in results) + " | goal at 10,000 |",
            "| --- | " + " | ".join("---:" for _ in results) + " | --- |"]

    def row(name: str, goal: str, value) -> str:
        return f"| {name} | " + " | ".join(value(r) for r in results) + f" | {goal} |"

    mb = 1024 * 1024
    lines = head + [
        row("first-ever scan: every run listed, rows built (no catalog yet)", "<= 15 s, with a progress bar",
            lambda r: f"{r['first']['cold_s']:.2f} s"),
        row("Runs page drawn in Chromium, dashboard cold (process start, catalog present)", "<= 2 s",
            lambda r: f"{r['browser']['cold_s']:.2f} s"),
        row("Runs page drawn in Chromium, warm revisit (fresh browser context)", "<= 0.5 s",
            lambda r: f"{r['browser']['warm_s']:.2f} s"),
        row(f"... against a 10-run root in the same run (cold {base['cold_s']:.2f} s, warm {base['warm_s']:.2f} s)",
            "", lambda r: f"cold {r['browser']['cold_s'] / base['cold_s']:.2f}x, warm "
                          f"{r['browser']['warm_s'] / base['warm_s']:.2f}x"),
        row("`RunStore(...).runs()` + rows, cold (fresh process, catalog present)", "",
            lambda r: f"{r['cataloged']['cold_s']:.2f} s"),
        row("`RunStore(...).runs()` + rows, cold without a catalog", "",
            lambda r: f"{r['uncataloged']['cold_s']:.2f} s"),
        row("`RunStore(...).runs()` + rows, warm (same store)", "",
            lambda r: f"{r['cataloged']['warm_s'] * 1000:.0f} ms"),
        row("runs table (DataFrame of every row)", "", lambda r: f"{r['cataloged']['frame_s'] * 1000:.0f} ms"),
        row(f"filter `{EXPRESSION}`", "<= 100 ms",
            lambda r: f"{r['cataloged']['filter_s'] * 1000:.0f} ms ({r['cataloged']['matched']:,} match)"),
        row("Compare of 50 runs (epoch charts, hparams, final metrics)", "<= 1 s",
            lambda r: f"{r['compare']['compare_s']:.2f} s ({r['compare']['charts']} charts)"),
        row("dashboard RSS after both visits", "<= 500 MB", lambda r: f"{r['browser']['rss'] / mb:.0f} MB"),
        row("listing process peak RSS (first scan)", "", lambda r: f"{r['first']['rss'] / mb:.0f} MB"),
        row("tiny runs (epoch and events only), cold without a catalog", "",
            lambda r: f"{r['tiny']['cold_s']:.2f} s"),
        row("real-sized / tiny runs, cold without a catalog", "<= 1.5x",
            lambda r: f"{r['uncataloged']['cold_s'] / r['tiny']['cold_s']:.2f}x"),
    ]
    return (f"{SECTION}\n\nMeasured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, 1-minute load average {load[0]:.1f} before and {load[1]:.1f} "
            f"after (the machine is shared); headless Chromium with software rendering. {sizes} runs made from the "
            "sample run `01 baseline CNN` (0.7 MB, streams hard-linked). Reproduce with "
            "`python bench/many_runs.py`.\n\n" + "\n".join(lines) + "\n\n"
            "The cold listing reads run.json, status.json and summary.json of each run and never a stream; with the "
            "catalog it opens no run file at all (it checks each run's files' sizes and times). The browser's cold "
            "figure includes starting the dashboard process.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--no-write", action="store_true", help="print the results, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    template = os.path.join(REPO, "sample_runs", TEMPLATE)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as workdir:
        base = floor(workdir, template)
        results = [bench(size, workdir, template) for size in args.sizes]
    text = section(results, base, (load_before, os.getloadavg()[0]))
    print(json.dumps(results, indent=1), file=sys.stderr)
    print(text)
    if not args.no_write:
        replace_section(os.path.join(REPO, "docs", "benchmarks.md"), SECTION, text)


if __name__ == "__main__":
    main()

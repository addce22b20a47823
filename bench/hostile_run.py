"""What one oversized run costs the dashboard: the Run page's first script run (AppTest, a fresh process each time)
over a run whose events.jsonl holds 1,000,000 lines (130 MB), its time and the process's peak RSS.

Run: `python bench/hostile_run.py [--trials 3] [--repo OTHER_CHECKOUT ...]`; with --repo, each checkout is measured
in turn, interleaved, on the same run (to compare with an earlier commit: `git worktree add /tmp/old <commit>`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(REPO, "tests")]

from run_factory import make_run  # noqa: E402

OPEN_RUN_PAGE = r"""
import os, sys, time
from streamlit.testing.v1 import AppTest
from kerascope import RunStore
os.environ["KERASCOPE_LOGDIR"] = sys.argv[1]
at = AppTest.from_file(os.path.join(sys.argv[2], "app", "streamlit_app.py"), default_timeout=600)
at.session_state["run_id"] = RunStore(sys.argv[1]).runs()[0].id
at.switch_page("views/run.py")
start = time.perf_counter()
at.run()
seconds = time.perf_counter() - start
with open("/proc/self/status") as f:
    peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(seconds, peak_kb / 1024)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repo", action="append", default=[], help="another checkout to measure beside this one")
    args = parser.parse_args()
    logdir = os.path.join(tempfile.mkdtemp(prefix="kerascope-hostile-"), "runs")
    run_dir = make_run(logdir, "a million events", epochs=2, steps_per_epoch=3)
    event = json.dumps({"time": 1.0, "step": 1, "epoch": 0, "kind": "warning", "message": "x" * 60,
                        "data": {"what": "filler"}}).encode() + b"\n"
    with open(os.path.join(run_dir, "events.jsonl"), "ab") as f:
        for _ in range(10):
            f.write(event * 100_000)
    repos = [REPO, *args.repo]
    results: dict[str, list[tuple[float, float]]] = {repo: [] for repo in repos}
    load_before = os.getloadavg()[0]
    for _ in range(args.trials):
        for repo in repos:
            out = subprocess.run([sys.executable, "-c", OPEN_RUN_PAGE, logdir, repo], cwd=repo, check=True,
                                 env=dict(os.environ, PYTHONPATH=repo), capture_output=True, text=True)
            seconds, peak_mb = map(float, out.stdout.split())
            results[repo].append((seconds, peak_mb))
    print(f"1-minute load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    for repo, values in results.items():
        print(f"{repo}: first script run median {statistics.median(v[0] for v in values):.2f} s, "
              f"peak RSS median {statistics.median(v[1] for v in values):.0f} MB")


if __name__ == "__main__":
    main()

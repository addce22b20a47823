"""Run directories crafted to crash, hang or bloat the readers and the dashboard.

Each case runs in a child process: a crash (SIGSEGV in a native parser) or a hang (a FIFO opened for reading) must
show up as a failed child, not take the test session down with it. The timeouts only catch hangs; nothing here
measures speed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from run_factory import make_run

from kerascope.monitor import format as fmt
from kerascope.monitor.reader import MAX_RECORDS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_TIMEOUT_S = 240  # far above what these reads take (seconds): only a hang gets there

READ_EVERY_RUN = r"""
import json, sys
from kerascope import RunStore
out = {}
for run in RunStore(sys.argv[1]).runs():
    out[run.id] = {
        "status": run.status, "reason": run.reason, "rows": len(run.batch_metrics()),
        "epochs": len(run.epoch_metrics()), "system": len(run.system_metrics()),
        "events": len(run.events()), "checkpoints": len(run.checkpoints()), "summary": len(run.model_summary()),
        "dot": len(run.model_graph_dot()), "png": run.model_graph_png() is not None,
        "config": run.model_config() is not None, "layers": len(run.layers()), "activations": len(run.activations()),
        "weights": len(run.weights()), "gradients": len(run.gradients()), "problems": run.problems,
    }
print(json.dumps(out))
"""

OPEN_EVERY_PAGE = r"""
import os, sys
from streamlit.testing.v1 import AppTest
from kerascope import RunStore
os.environ["KERASCOPE_LOGDIR"] = sys.argv[1]
app = os.path.join(sys.argv[2], "app", "streamlit_app.py")
for page in ("views/runs.py", "views/run.py", "views/model.py", "views/activations.py", "views/checkpoints.py",
             "views/compare.py"):
    for run in RunStore(sys.argv[1]).runs():
        at = AppTest.from_file(app, default_timeout=120)
        at.session_state["run_id"] = run.id
        at.session_state["compare_ids"] = [run.id]
        if page != "views/runs.py":
            at.switch_page(page)
        at.run()
        assert not at.exception, (page, run.id, [e.value for e in at.exception])
print("ok")
"""


def run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script` in a fresh interpreter on the worktree's code (a crash or hang stays in the child)."""
    return subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=HANG_TIMEOUT_S, env=dict(os.environ, PYTHONPATH=REPO))


def test_a_deeply_nested_line_in_a_large_chunk_is_one_malformed_line(runs_root):
    """pyarrow's JSON reader (used for chunks >= 1 MB) segfaults on a line nested 20,000 levels deep."""
    run_dir = make_run(runs_root, "deep", epochs=1, steps_per_epoch=1)
    good = json.dumps({"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "loss": 0.5}).encode() + b"\n"
    deep = b'{"step": 2, "nested": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    copies = 1_100_000 // len(good)
    for name in (fmt.BATCH_FILE, fmt.EPOCH_FILE, fmt.SYSTEM_FILE, fmt.EVENTS_FILE):
        with open(os.path.join(run_dir, name), "wb") as f:
            f.write(good * copies + deep + good * 10)
    out = run_child(READ_EVERY_RUN, str(runs_root))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    seen = json.loads(out.stdout)[os.path.basename(run_dir)]
    assert seen["rows"] == seen["epochs"] == copies + 10
    assert seen["events"] == min(copies + 10, MAX_RECORDS["events"])  # the newest ones
    for name in (fmt.BATCH_FILE, fmt.EPOCH_FILE, fmt.SYSTEM_FILE, fmt.EVENTS_FILE):
        assert f"{name}: 1 malformed line(s) skipped" in seen["problems"]


FIFO_PATHS = (fmt.RUN_FILE, fmt.STATUS_FILE, fmt.CHECKPOINT_INDEX_FILE, fmt.SUMMARY_FILE, fmt.CONFIG_FILE,
              fmt.GRAPH_DOT_FILE, fmt.GRAPH_PNG_FILE, fmt.BATCH_FILE, fmt.EVENTS_FILE, fmt.ACTIVATIONS_FILE,
              fmt.WEIGHTS_FILE, fmt.GRADIENTS_FILE, fmt.LAYERS_FILE)
RECORD_STREAM_FIFOS = {fmt.ACTIVATIONS_FILE: "activations", fmt.WEIGHTS_FILE: "weights",
                       fmt.GRADIENTS_FILE: "gradients", fmt.LAYERS_FILE: "layers"}


def add_gradients(run_dir: str) -> None:
    """gradients.jsonl (make_run writes none): 2 records of 2 layers x (kernel, bias), as LiveMonitor writes them."""
    with open(os.path.join(run_dir, fmt.GRADIENTS_FILE), "w", encoding="utf-8") as f:
        for step in (3, 6):
            for layer in ("dense", "dense_1"):
                for weight in ("kernel", "bias"):
                    f.write(json.dumps({"step": step, "epoch": step // 3 - 1, "layer": layer, "weight": weight,
                                        "norm": 0.5, "max_abs": 0.1, "nonfinite_frac": 0.0,
                                        "global_norm": 1.0}) + "\n")


@pytest.fixture
def fifo_root(runs_root):
    """One run per path, with a FIFO in place of that file (and one healthy run beside them)."""
    runs = {}
    for index, relpath in enumerate(FIFO_PATHS):
        run_dir = make_run(runs_root, f"fifo {relpath}", epochs=2, steps_per_epoch=3, seed=index)
        add_gradients(run_dir)
        path = os.path.join(run_dir, relpath)
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkfifo(path)
        runs[relpath] = os.path.basename(run_dir)
    healthy = make_run(runs_root, "healthy", epochs=2, steps_per_epoch=3)
    add_gradients(healthy)
    runs["healthy"] = os.path.basename(healthy)
    yield runs
    # A reader stuck on a FIFO (the code before the fix) is released by a writer that opens and closes it.
    for relpath, run_id in runs.items():
        path = os.path.join(runs_root, run_id, relpath)
        if relpath != "healthy" and os.path.exists(path):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass


def test_fifos_in_place_of_run_files_never_block_the_reader(runs_root, fifo_root):
    out = run_child(READ_EVERY_RUN, str(runs_root))
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout)
    healthy = seen[fifo_root["healthy"]]
    assert healthy["status"] == "finished" and healthy["rows"] == 6
    assert [healthy[s] for s in ("activations", "weights", "gradients", "layers")] == [4, 8, 8, 2]
    assert seen[fifo_root[fmt.RUN_FILE]]["reason"] == "run.json unreadable: not a regular file (a FIFO): not read"
    assert seen[fifo_root[fmt.STATUS_FILE]]["reason"] == (
        "status.json unreadable: not a regular file (a FIFO): not read")
    assert seen[fifo_root[fmt.SUMMARY_FILE]]["summary"] == 0 and seen[fifo_root[fmt.GRAPH_DOT_FILE]]["dot"] == 0
    assert not seen[fifo_root[fmt.CONFIG_FILE]]["config"] and not seen[fifo_root[fmt.GRAPH_PNG_FILE]]["png"]
    assert seen[fifo_root[fmt.CHECKPOINT_INDEX_FILE]]["problems"] == [
        "checkpoints/index.json: not a regular file (a FIFO): not read"]
    assert seen[fifo_root[fmt.BATCH_FILE]]["problems"] == ["batch.jsonl: not a regular file (a FIFO): not read"]
    assert seen[fifo_root[fmt.EVENTS_FILE]]["epochs"] == 2
    for relpath, stream in RECORD_STREAM_FIFOS.items():
        assert seen[fifo_root[relpath]][stream] == 0
        assert seen[fifo_root[relpath]]["problems"] == [f"{relpath}: not a regular file (a FIFO): not read"]
        assert seen[fifo_root[relpath]]["status"] == "finished" and seen[fifo_root[relpath]]["rows"] == 6


def test_fifos_in_place_of_run_files_never_block_a_page(runs_root, fifo_root):
    out = run_child(OPEN_EVERY_PAGE, str(runs_root), REPO)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


OPEN_RUN_PAGE = r"""
import json, os, sys
from streamlit.testing.v1 import AppTest
from kerascope import RunStore
os.environ["KERASCOPE_LOGDIR"] = sys.argv[1]
run = RunStore(sys.argv[1]).runs()[0]
sizes = {"epoch_columns": len(run.epoch_metrics().columns), "events": len(run.events())}
at = AppTest.from_file(os.path.join(sys.argv[2], "app", "streamlit_app.py"), default_timeout=600)
at.session_state["run_id"] = run.id
at.switch_page("views/run.py")
at.run()
assert not at.exception, [e.value for e in at.exception]
shown = [str(e.value) for e in (*at.warning, *at.caption)]
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so it would include the forking test process's own size.
with open("/proc/self/status") as f:
    peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": peak_kb / 1024, "shown": shown,
                  "problems": run.problems, **sizes}))
"""
MAX_SERVER_RSS_MB = 500  # docs/reliability.md: what one hostile run may cost the dashboard's process


@pytest.mark.parametrize("case", ["100k_columns", "1m_events"])
def test_a_run_too_large_to_show_is_truncated_with_bounded_memory(runs_root, case):
    """The Run page over one oversized run, in a fresh process whose peak RSS is measured: the streams' caps hold
    (columns, records kept) and the page says what was left out."""
    run_dir = make_run(runs_root, case, epochs=2, steps_per_epoch=3)
    if case == "100k_columns":
        with open(os.path.join(run_dir, fmt.EPOCH_FILE), "a", encoding="utf-8") as f:
            for epoch in range(2, 12):
                record = {"epoch": epoch, "step": epoch * 3, "time": 1.0 + epoch}
                record.update((f"metric_{i:06d}", i * 1e-6) for i in range(100_000))
                f.write(json.dumps(record) + "\n")
    else:
        event = json.dumps({"time": 1.0, "step": 1, "epoch": 0, "kind": "warning", "message": "x" * 60,
                            "data": {"what": "filler"}}).encode() + b"\n"
        with open(os.path.join(run_dir, fmt.EVENTS_FILE), "ab") as f:
            for _ in range(10):
                f.write(event * 100_000)
    out = run_child(OPEN_RUN_PAGE, str(runs_root), REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    seen["shown"] = [re.sub(r"\\(.)", r"\1", text) for text in seen["shown"]]  # user text is escaped markdown
    assert seen["peak_rss_mb"] <= MAX_SERVER_RSS_MB, seen["peak_rss_mb"]
    if case == "100k_columns":
        assert seen["epoch_columns"] <= 500
        note = "epoch.jsonl: truncated: 99,"
        assert any(text.startswith("truncated: ") and "more metrics are not charted" in text for text in seen["shown"])
    else:
        assert seen["events"] == 10_000
        note = "events.jsonl: truncated: 99"
    assert any(note in text for text in seen["shown"]), seen["shown"]

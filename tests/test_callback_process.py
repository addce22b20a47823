"""What a run says when its training process dies: kill -9 (stale), an uncaught exception, Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import open_run, records

from kerascope import RunStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys
import keras
from train_helpers import BATCH, data, mlp
from kerascope import LiveMonitor

mode, root = sys.argv[1], sys.argv[2]


class Stop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1 and mode == "raise":
            raise ValueError("diverged at epoch 1")
        if epoch == 1 and mode == "interrupt":
            raise KeyboardInterrupt


x, y = data(samples=512)
live_monitor = LiveMonitor(root, name=mode, flush_interval=0.2, system_freq=0.5)
mlp().fit(x, y, epochs=100000 if mode == "kill" else 5, batch_size=BATCH, verbose=0, callbacks=[live_monitor, Stop()])
"""


def start(mode: str, root: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, root], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def epochs_written(root: str) -> int:
    for entry in os.scandir(root):
        path = os.path.join(entry.path, "epoch.jsonl")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return f.read().count(b"\n")
    return 0


@pytest.fixture(scope="module")
def finished_children(tmp_path_factory):
    """The three children run at once (each pays the TensorFlow import); kill -9 lands after two epochs on disk."""
    roots = {mode: str(tmp_path_factory.mktemp(mode)) for mode in ("kill", "raise", "interrupt")}
    children = {mode: start(mode, root) for mode, root in roots.items()}
    deadline = time.monotonic() + 120
    while epochs_written(roots["kill"]) < 2 and children["kill"].poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    children["kill"].send_signal(signal.SIGKILL)
    results = {}
    for mode, child in children.items():
        _, stderr = child.communicate(timeout=180)
        results[mode] = (child.returncode, stderr)
    return roots, results


def only_run(root: str):
    runs = RunStore(root).runs()
    assert len(runs) == 1
    return runs[0]


def test_kill_9_leaves_a_readable_run_that_turns_stale(finished_children, tmp_path):
    roots, results = finished_children
    assert results["kill"][0] == -signal.SIGKILL
    run = only_run(roots["kill"])
    assert run.status_info["status"] == "running" and run.error is None
    epochs = run.epoch_metrics()
    assert len(epochs) >= 2 and list(epochs["epoch"]) == list(range(len(epochs)))
    batches = run.batch_metrics()
    # Everything up to the last flush: whole records, contiguous steps, reaching at least the last epoch written.
    assert list(batches["step"]) == list(range(1, len(batches) + 1))
    assert batches["step"].iloc[-1] >= epochs["step"].iloc[-1]
    assert all("torn" in problem or "malformed" in problem for problem in run.problems)
    system = run.system_metrics()  # sampled every 0.5 s by the monitor's background thread
    assert len(system) >= 1 and (system["rss_bytes"] > 10e6).all() and (system["cpu_percent"] >= 0).all()
    # Once the heartbeat is older than the window, readers call it stale (checked on a copy with an old heartbeat).
    copy = tmp_path / "copy" / run.id
    shutil.copytree(run.path, copy)
    status = json.loads((copy / "status.json").read_text())
    status["heartbeat"] = time.time() - 120
    (copy / "status.json").write_text(json.dumps(status))
    stale = open_run(str(copy))
    assert stale.status == "stale" and "heartbeat" in stale.reason


@pytest.mark.parametrize(
    ("mode", "status", "reason"),
    [
        ("raise", "failed", "ValueError: diverged at epoch 1"),
        ("interrupt", "interrupted", "KeyboardInterrupt"),
    ],
)
def test_uncaught_exception_marks_the_run(finished_children, mode, status, reason):
    roots, results = finished_children
    returncode, stderr = results[mode]
    assert returncode != 0 and reason.split(":")[0] in stderr  # the original traceback is still printed
    run = only_run(roots[mode])
    assert run.status == status and run.reason == reason
    assert [e["kind"] for e in records(run.path, "events.jsonl")][-1] == status
    assert len(run.epoch_metrics()) == 2

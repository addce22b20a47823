"""Two models trained in two threads of one process, each with its LiveMonitor: one thread's crash is its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from train_helpers import events, open_run, records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# In a child process: pytest installs its own threading.excepthook around each test, which would hide ours.
CHILD = """
import json, sys, threading
import keras
from train_helpers import BATCH, data, mlp
from kerascope import LiveMonitor

root = sys.argv[1]
b_crashed = threading.Event()


class WaitForB(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:  # A is in the middle of its fit() when B dies
            b_crashed.wait()


class Crash(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise ValueError("thread B diverged")


x, y = data()
live_monitors = {"A": LiveMonitor(root, name="A", flush_interval=0.2),
                 "B": LiveMonitor(root, name="B", flush_interval=0.2)}
model_a, model_b = mlp(), mlp()
a = threading.Thread(target=model_a.fit, args=(x, y), kwargs=dict(
    epochs=6, batch_size=BATCH, verbose=0, callbacks=[live_monitors["A"], WaitForB()]))
b = threading.Thread(target=model_b.fit, args=(x, y), kwargs=dict(
    epochs=6, batch_size=BATCH, verbose=0, callbacks=[live_monitors["B"], Crash()]))
a.start()
b.start()
b.join()  # B's uncaught exception went through threading.excepthook
b_crashed.set()
a.join()
print(json.dumps({name: live_monitor.run_dir for name, live_monitor in live_monitors.items()}))
"""


def test_a_crash_in_one_training_thread_ends_only_that_threads_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "runs")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ValueError: thread B diverged" in out.stderr  # Python's own hook still reports it
    run_dirs = json.loads(out.stdout.strip().splitlines()[-1])
    healthy, crashed = open_run(run_dirs["A"]), open_run(run_dirs["B"])
    assert crashed.status == "failed" and crashed.reason == "ValueError: thread B diverged"
    assert healthy.status == "finished" and healthy.reason is None
    assert [r["epoch"] for r in records(run_dirs["A"], "epoch.jsonl")] == list(range(6))
    assert len(records(run_dirs["A"], "batch.jsonl")) == 6 * 4  # recording never stopped
    assert not events(run_dirs["A"], "failed") and len(events(run_dirs["A"], "train_end")) == 1

"""Resume after a crash: a training script killed with SIGKILL and started again with BackupAndRestore continues its
run (LiveMonitor(resume="auto")): one run, each step once, the records of the superseded epoch replaced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from train_helpers import open_run, read_json, records

from kerascope import LiveMonitor, RunStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, STEPS = 6, 4  # 128 samples in batches of 32
KILLED_AT = (3, 2)  # epoch, batch: after BackupAndRestore saved epoch 2, with epoch 3's first batches on disk

SCRIPT = """
import json, os, sys, time
import keras
from train_helpers import BATCH, data, mlp
from kerascope import LiveMonitor

root, backup, crash = sys.argv[1], sys.argv[2], sys.argv[3] == "crash"
KILLED_AT, EPOCHS = tuple(json.loads(sys.argv[4])), int(sys.argv[5])


class KillSelf(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if crash and (self.epoch, batch) == KILLED_AT:
            time.sleep(0.5)  # several flushes: the superseded records are on disk
            os.kill(os.getpid(), 9)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


class Seen(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append({"epoch": epoch, **logs})


x, y = data()
model = mlp()
model.build((None, x.shape[1]))
live = LiveMonitor(root, name="long run", resume="auto", flush_interval=0.1, system_freq=0, weight_freq=0,
                   checkpoint="all", monitor="loss", gradient_data=(x[:32], y[:32]), gradient_freq=1)
seen = Seen()
# LiveMonitor before BackupAndRestore: its on_train_begin runs before the epoch is restored.
callbacks = [live, keras.callbacks.BackupAndRestore(backup), KillSelf(), seen]
model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0, callbacks=callbacks)
print(json.dumps(seen.epochs))
"""


def train(root: str, backup: str, mode: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
    command = [sys.executable, "-c", SCRIPT, root, backup, mode, json.dumps(KILLED_AT), str(EPOCHS)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The killed run as a reader saw it, then the same reader and the run after the restart finished it."""
    root, backup = str(tmp_path_factory.mktemp("runs")), str(tmp_path_factory.mktemp("backup"))
    killed = train(root, backup, "crash")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (run,) = RunStore(root).runs()
    before = run.batch_metrics(), run.gradients()  # a reader following the run live, across the restart
    restarted = train(root, backup, "resume")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    return root, run, before, json.loads(restarted.stdout.strip().splitlines()[-1])


def test_the_killed_run_had_records_past_the_restore_point(resumed):
    _, _, (batches, gradients), _ = resumed
    epoch, batch = KILLED_AT
    assert list(batches["epoch"]).count(epoch) == batch + 1  # the test is about something: these must be replaced
    assert list(batches["step"]) == list(range(1, epoch * STEPS + batch + 2))
    assert list(gradients["epoch"].unique()) == list(range(epoch + 1))  # gradients too, taken before those batches


def test_the_restart_continues_the_same_run_with_each_step_once(resumed):
    root, run, _, seen = resumed
    assert [r.id for r in RunStore(root).runs()] == [run.id]
    assert [e["epoch"] for e in seen] == list(range(KILLED_AT[0], EPOCHS))  # BackupAndRestore restored epoch 3
    for reader in (run, open_run(run.path)):  # the reader that followed the run, and a fresh one
        batches, epochs = reader.batch_metrics(), reader.epoch_metrics()
        assert list(batches["step"]) == list(range(1, EPOCHS * STEPS + 1))
        assert list(batches["epoch"]) == [e for e in range(EPOCHS) for _ in range(STEPS)]
        assert list(epochs["epoch"]) == list(range(EPOCHS))
        assert list(epochs["step"]) == [STEPS * (e + 1) for e in range(EPOCHS)]
        # The resumed epochs hold what the restarted training logged.
        resumed_epochs = epochs[epochs["epoch"] >= KILLED_AT[0]]
        assert list(resumed_epochs["loss"]) == pytest.approx([e["loss"] for e in seen], rel=1e-6)
        # Gradients (taken before an update, at the step count so far): every weight once at each step they were
        # taken, within its epoch's steps, for every epoch; none of the dead process's epoch 3 left beside the new.
        gradients = reader.gradients()
        assert not gradients.duplicated(["step", "layer", "weight"]).any()
        assert gradients.groupby("step").size().nunique() == 1
        assert (gradients["step"] // STEPS == gradients["epoch"]).all()
        assert sorted(gradients["epoch"].unique()) == list(range(EPOCHS))
    assert run.status == "finished" and run.reason is None
    status = read_json(run.path, "status.json")
    assert status["step"] == EPOCHS * STEPS and status["phase"] == 1 and "ended" in status


def test_the_checkpoint_index_lists_each_epoch_once(resumed):
    _, run, _, _ = resumed
    checkpoints = run.checkpoints()
    assert list(checkpoints["epoch"]) == list(range(EPOCHS))
    assert list(checkpoints["step"]) == [STEPS * (e + 1) for e in range(EPOCHS)]
    assert all(os.path.exists(run.file_path(path)) for path in checkpoints["path"])


def test_a_resumed_event_marks_the_restart(resumed):
    _, run, _, _ = resumed
    events = records(run.path, "events.jsonl")
    marks = [e for e in events if e["kind"] == "resumed"]
    assert len(marks) == 1
    mark = marks[0]
    assert (mark["epoch"], mark["step"]) == (KILLED_AT[0], KILLED_AT[0] * STEPS)
    assert mark["data"]["previous_status"] == "running"
    assert mark["data"]["dropped"]["batch"] == KILLED_AT[1] + 1
    # One phase event (the first process's, kept), one train_end (the restart's); of the first process's events
    # only those before the restored epoch remain.
    kinds = [e["kind"] for e in events]
    assert kinds.count("phase") == 1 and kinds.count("train_end") == 1 and kinds.count("train_begin") == 2
    restart = [e for e in events if e["kind"] == "train_begin"][1]
    first_process = [e for e in events if e["time"] < restart["time"]]
    assert first_process and all(e["epoch"] is None or e["epoch"] < KILLED_AT[0] for e in first_process)
    assert run.meta["pid"] != 0 and len(records(run.path, "model/layers.jsonl")) == 1


def test_resume_without_an_unfinished_run_starts_a_new_one(runs_root):
    from train_helpers import BATCH, data, mlp

    x, y = data()
    first = LiveMonitor(str(runs_root), name="again", resume="auto", system_freq=0, weight_freq=0)
    mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[first])
    second = LiveMonitor(str(runs_root), name="again", resume="auto", system_freq=0, weight_freq=0)
    mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[second])
    assert first.run_dir != second.run_dir  # the first one finished: nothing to continue
    with pytest.warns(RuntimeWarning, match="no run 'nope'"):
        third = LiveMonitor(str(runs_root), name="again", resume="nope", system_freq=0, weight_freq=0)
        mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[third])
    assert third.run_dir not in (first.run_dir, second.run_dir)
    with pytest.raises(ValueError, match="resume must be"):
        LiveMonitor(str(runs_root), resume="../elsewhere")


def test_a_failed_run_named_by_its_id_is_continued(runs_root):
    """resume="<run id>": the run a failed fit() left is continued (another name, a newer run beside it), from the
    epoch the restarted fit() begins at: with no backup to restore, epoch 0 and step 0."""
    from test_callback_events import FailAtEpoch, wait_for_status
    from train_helpers import BATCH, data, mlp

    x, y = data()
    failing = LiveMonitor(str(runs_root), name="first try", system_freq=0.2, weight_freq=0)
    with pytest.raises(ValueError, match="data pipeline broke"):
        mlp().fit(x, y, epochs=4, batch_size=BATCH, verbose=0,
                  callbacks=[failing, FailAtEpoch(1, ValueError("data pipeline broke"))])
    assert wait_for_status(failing.run_dir, "failed")["status"] == "failed"
    failed_id = os.path.basename(failing.run_dir)
    newer = LiveMonitor(str(runs_root), name="first try", system_freq=0, weight_freq=0)
    mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[newer])

    again = LiveMonitor(str(runs_root), name="second try", resume=failed_id, system_freq=0, weight_freq=0)
    mlp().fit(x, y, epochs=4, batch_size=BATCH, verbose=0, callbacks=[again])
    assert again.run_dir == failing.run_dir
    run = open_run(failing.run_dir)
    assert run.status == "finished"
    assert list(run.epoch_metrics()["epoch"]) == [0, 1, 2, 3]
    assert list(run.epoch_metrics()["step"]) == [4, 8, 12, 16]
    assert list(run.batch_metrics()["step"]) == list(range(1, 4 * STEPS + 1))
    (mark,) = [e for e in records(run.path, "events.jsonl") if e["kind"] == "resumed"]
    assert (mark["epoch"], mark["step"], mark["data"]["previous_status"]) == (0, 0, "failed")
    with pytest.warns(RuntimeWarning, match="cannot be resumed"):  # finished now: nothing left to continue
        refused = LiveMonitor(str(runs_root), resume=failed_id, system_freq=0, weight_freq=0)
        mlp().fit(x, y, epochs=1, batch_size=BATCH, verbose=0, callbacks=[refused])
    assert refused.run_dir not in (failing.run_dir, newer.run_dir)

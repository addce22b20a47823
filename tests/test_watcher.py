"""RunWatcher with the real watchdog observer on real files, and the incremental reads the dashboard does after it.

Each test waits on the watcher's events (RunWatcher.wait) with a generous timeout: nothing here asserts how fast.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from kerascope import RunStore, RunWatcher, RunWriter
from kerascope.monitor import format as fmt
from kerascope.monitor.watcher import ROOT_KEY

PATIENCE_S = 20.0


def wait_until(watcher: RunWatcher, condition) -> None:
    """Block on watcher events until `condition()` holds (or PATIENCE_S passed, then fail with the condition)."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition() and time.monotonic() < deadline:
        watcher.wait(watcher.total, timeout=0.5)
    assert condition()


def line(record: dict) -> bytes:
    return fmt.dumps_line(record).encode()


@pytest.fixture(params=["inotify", "polling"])
def watcher(request, runs_root):
    watcher = RunWatcher(runs_root, poll=request.param == "polling", poll_interval=0.2)
    yield watcher
    watcher.stop()


def test_appended_lines_bump_the_run_and_are_read_incrementally(watcher, runs_root):
    writer = RunWriter(runs_root, name="append", flush_interval=60)
    run = RunStore(runs_root).run(writer.run_id)
    assert len(run.epoch_metrics()) == 0
    before = watcher.version(writer.run_id)
    for epoch in range(3):
        writer.log("epoch", {"epoch": epoch, "step": 10 * (epoch + 1), "time": time.time(), "loss": 1.0 / (epoch + 1)})
    writer.flush()
    wait_until(watcher, lambda: watcher.version(writer.run_id) > before)
    assert list(run.epoch_metrics()["epoch"]) == [0, 1, 2]
    seen = watcher.version(writer.run_id)
    writer.log("epoch", {"epoch": 3, "step": 40, "time": time.time(), "loss": 0.2})
    writer.flush()
    wait_until(watcher, lambda: watcher.version(writer.run_id) > seen)
    assert run.refresh()
    assert list(run.epoch_metrics()["loss"])[-1] == 0.2
    writer.close()


def test_a_new_run_appears(watcher, runs_root):
    store = RunStore(runs_root)
    assert store.runs() == []
    before = watcher.version(ROOT_KEY)
    writer = RunWriter(runs_root, name="newcomer", flush_interval=60)
    wait_until(watcher, lambda: watcher.version(ROOT_KEY) > before)
    wait_until(watcher, lambda: [run.name for run in store.runs()] == ["newcomer"])
    writer.close()


def test_a_torn_last_line_is_read_once_completed(watcher, runs_root):
    writer = RunWriter(runs_root, name="torn", flush_interval=60)
    run = RunStore(runs_root).run(writer.run_id)
    path = os.path.join(writer.run_dir, fmt.BATCH_FILE)
    whole = line({"step": 1, "epoch": 0, "batch": 0, "time": 1.0, "loss": 0.9})
    torn = line({"step": 2, "epoch": 0, "batch": 1, "time": 2.0, "loss": 0.8})
    with open(path, "ab") as f:
        f.write(whole + torn[:15])
    wait_until(watcher, lambda: watcher.version(writer.run_id) > 0 and run.refresh() is not None
               and len(run.batch_metrics()) == 1)
    assert list(run.batch_metrics()["step"]) == [1]
    seen = watcher.version(writer.run_id)
    with open(path, "ab") as f:
        f.write(torn[15:])
    wait_until(watcher, lambda: watcher.version(writer.run_id) > seen)
    wait_until(watcher, lambda: len(run.batch_metrics()) == 2)
    assert list(run.batch_metrics()["loss"]) == [0.9, 0.8]
    assert run.problems == []
    writer.close()


def test_a_replaced_or_truncated_file_is_read_again(watcher, runs_root):
    writer = RunWriter(runs_root, name="replaced", flush_interval=60)
    run = RunStore(runs_root).run(writer.run_id)
    path = os.path.join(writer.run_dir, fmt.EPOCH_FILE)
    with open(path, "wb") as f:
        f.write(b"".join(line({"epoch": e, "step": e, "time": 1.0, "loss": 1.0}) for e in range(5)))
    wait_until(watcher, lambda: len(run.epoch_metrics()) == 5)
    # Truncated in place and rewritten shorter: read from the start.
    seen = watcher.version(writer.run_id)
    with open(path, "wb") as f:
        f.write(line({"epoch": 0, "step": 0, "time": 2.0, "loss": 0.5}))
    wait_until(watcher, lambda: watcher.version(writer.run_id) > seen)
    wait_until(watcher, lambda: list(run.epoch_metrics()["loss"]) == [0.5])
    # Replaced by a new file (a different inode), even a longer one: the reader starts over on it.
    seen = watcher.version(writer.run_id)
    fmt.write_bytes_atomic(path, b"".join(line({"epoch": e, "step": e, "time": 3.0, "loss": 0.25}) for e in range(2)))
    wait_until(watcher, lambda: watcher.version(writer.run_id) > seen)
    wait_until(watcher, lambda: list(run.epoch_metrics()["loss"]) == [0.25, 0.25])
    writer.close()


def test_status_json_replacement_is_seen(watcher, runs_root):
    writer = RunWriter(runs_root, name="status", flush_interval=60)
    run = RunStore(runs_root).run(writer.run_id)
    assert run.status == fmt.RUNNING
    seen = watcher.version(writer.run_id)
    writer.close(status=fmt.FAILED, reason="ValueError: boom")
    wait_until(watcher, lambda: watcher.version(writer.run_id) > seen)
    wait_until(watcher, lambda: run.status == fmt.FAILED)
    assert run.reason == "ValueError: boom"
    with open(os.path.join(writer.run_dir, fmt.STATUS_FILE), encoding="utf-8") as f:
        assert json.load(f)["status"] == fmt.FAILED


# -- what changed since a reader last looked --------------------------------------------------------------------------


def test_changed_since_names_the_runs_changed_after_a_total_and_gives_up_past_its_log(runs_root, monkeypatch):
    from kerascope.monitor import changes

    monkeypatch.setattr(changes, "CHANGE_LOG_SIZE", 4)
    watcher = RunWatcher(runs_root, start=False)  # nothing from the filesystem: only what the test notes
    assert not watcher.started and watcher.changed_since(0) == set()
    watcher.note_changed(["a"])
    seen = watcher.total
    watcher.note_changed(["b", "c"])
    watcher.note_changed(["b"])
    assert watcher.changed_since(seen) == {"b", "c"}
    assert watcher.changed_since(0) == {"a", "b", "c"}
    assert watcher.changed_since(watcher.total) == set()
    assert [watcher.version(run_id) for run_id in "abc"] == [1, 2, 1]
    watcher.note_changed(["d", "e"])  # 6 entries logged, 4 kept: what came after total 1 is no longer known
    assert watcher.changed_since(0) is None and watcher.changed_since(1) is None
    assert watcher.changed_since(seen + 1) == {"b", "d", "e"}


def test_file_events_reach_changed_since_and_reads_send_none(watcher, runs_root):
    writer = RunWriter(runs_root, name="logged", flush_interval=60)
    wait_until(watcher, lambda: watcher.version(writer.run_id) > 0)
    seen = watcher.total
    with open(os.path.join(writer.run_dir, fmt.EPOCH_FILE), "ab") as f:
        f.write(line({"epoch": 0, "step": 1, "time": 1.0, "loss": 0.5}))
    wait_until(watcher, lambda: writer.run_id in (watcher.changed_since(seen) or ()))
    writer.close()
    wait_until(watcher, lambda: watcher.version(writer.run_id) > 2)
    time.sleep(0.5)  # the close's events have arrived: whatever comes later would be the reads below
    quiet = watcher.total
    for _ in range(3):  # reading every file of the run is not a change
        for name in os.listdir(writer.run_dir):
            path = os.path.join(writer.run_dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    f.read()
    time.sleep(1.0)  # give reads' events (were there any) time to arrive
    assert watcher.total == quiet and watcher.changed_since(quiet) == set()

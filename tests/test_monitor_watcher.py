"""RunWatcher (monitor/watcher.py): which run each file event counts for, versions, totals, waiting, starting and
stopping, and the filesystem check that picks polling. Events are real watchdog events, fed as the observer does, or
made by writing files under a started watcher."""

from __future__ import annotations

import os
import threading
import time

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
)
from watchdog.observers.polling import PollingObserver

from kerascope.monitor import watcher as watcher_module
from kerascope.monitor.watcher import ROOT_KEY, RunWatcher, filesystem_type, needs_polling


@pytest.fixture
def idle(runs_root):
    """A watcher whose observer is not started: only the events handed to it count."""
    return RunWatcher(runs_root, start=False)


def test_a_file_event_counts_for_its_run_only(idle, runs_root):
    assert (idle.total, idle.version("a"), idle.version()) == (0, 0, 0)
    idle.on_any_event(FileModifiedEvent(str(runs_root / "a" / "epoch.jsonl")))
    idle.on_any_event(FileClosedEvent(str(runs_root / "a" / "model" / "summary.txt")))
    assert (idle.total, idle.version("a"), idle.version("b"), idle.version(ROOT_KEY)) == (2, 2, 0, 0)
    assert idle.changed_since(0) == {"a"} and idle.changed_since(2) == set()


def test_directories_created_or_removed_under_the_root_change_the_list_of_runs(idle, runs_root):
    idle.on_any_event(DirCreatedEvent(str(runs_root / "new-run")))
    idle.on_any_event(DirDeletedEvent(str(runs_root / "old-run")))
    idle.on_any_event(DirModifiedEvent(str(runs_root)))
    assert idle.version(ROOT_KEY) == 3 and idle.version("new-run") == 0
    assert idle.changed_since(0) == {ROOT_KEY}
    (runs_root / "notes.txt").write_text("a file beside the runs")
    idle.on_any_event(FileModifiedEvent(str(runs_root / "notes.txt")))
    assert idle.version("notes.txt") == 1 and idle.version(ROOT_KEY) == 3


def test_a_move_counts_for_both_runs_and_events_outside_the_root_for_none(idle, runs_root, tmp_path):
    idle.on_any_event(FileMovedEvent(str(runs_root / "a" / "x.tmp"), str(runs_root / "b" / "status.json")))
    assert (idle.total, idle.version("a"), idle.version("b")) == (1, 1, 1)
    idle.on_any_event(FileModifiedEvent(str(tmp_path / "elsewhere.txt")))
    assert idle.total == 2 and idle.changed_since(1) == set()
    idle.on_any_event(FileModifiedEvent(os.fsencode(str(runs_root / "c" / "batch.jsonl"))))
    assert idle.version("c") == 1


def test_reads_are_not_changes(idle, runs_root):
    idle.on_any_event(FileOpenedEvent(str(runs_root / "a" / "run.json")))
    idle.on_any_event(FileClosedNoWriteEvent(str(runs_root / "a" / "run.json")))
    assert (idle.total, idle.version("a")) == (0, 0)


def test_note_changed_counts_runs_as_if_their_files_had_changed(idle):
    idle.note_changed(["a", "b"])
    assert (idle.total, idle.version("a"), idle.version("b")) == (1, 1, 1)
    idle.note_changed([])
    assert idle.total == 1 and idle.changed_since(0) == {"a", "b"}


def waited(watcher: RunWatcher, since_total: int, timeout: float) -> list[int]:
    """`watcher.wait(since_total, timeout)` in a thread; what it returned once it did (or [] if it still blocks
    after LIVENESS_S: a wait that never returns hangs a dashboard's refresh loop)."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(watcher.wait(since_total, timeout)), daemon=True)
    thread.start()
    thread.join(LIVENESS_S)
    return result


LIVENESS_S = 10.0


def test_wait_returns_after_its_timeout_when_nothing_changed(idle):
    assert waited(idle, 0, timeout=0.01) == [0]


def test_wait_returns_at_once_when_the_total_is_already_past(idle):
    idle.note_changed(["a"])
    assert waited(idle, 0, timeout=3600) == [1]
    assert waited(idle, 1, timeout=0.01) == [1]


def test_wait_wakes_up_on_a_change(idle):
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(idle.wait(0, timeout=3600)), daemon=True)
    thread.start()
    idle.note_changed(["a"])
    thread.join(LIVENESS_S)
    assert result == [1]


def test_a_started_watcher_sees_files_written_under_the_root(runs_root):
    watcher = RunWatcher(runs_root)
    try:
        assert watcher.started and watcher.polling is False and not isinstance(watcher._observer, PollingObserver)
        (runs_root / "run-a").mkdir()
        total = watcher.wait(0, timeout=30)
        assert total >= 1 and watcher.version(ROOT_KEY) >= 1
        (runs_root / "run-a" / "epoch.jsonl").write_text("{}\n")
        watcher.wait(total, timeout=30)
        assert watcher.version("run-a") >= 1 and watcher.changed_since(total) >= {"run-a"}
    finally:
        watcher.stop()


def test_start_is_done_once_and_polling_when_asked(tmp_path):
    logdir = tmp_path / "created" / "runs"
    watcher = RunWatcher(logdir, poll=True, poll_interval=0.05, start=False)
    assert os.path.isdir(logdir) and watcher.logdir == str(logdir) and not watcher.started
    watcher.start()
    observer = watcher._observer
    watcher.start()
    try:
        assert watcher._observer is observer and isinstance(observer, PollingObserver) and watcher.polling
        assert observer.timeout == 0.05
        (logdir / "r").mkdir()
        assert watcher.wait(0, timeout=30) >= 1
    finally:
        watcher.stop()
    assert not observer.is_alive()


def test_polling_is_picked_on_network_filesystems(tmp_path, monkeypatch):
    assert RunWatcher(tmp_path, start=False).polling is needs_polling(str(tmp_path)) is False
    monkeypatch.setattr(watcher_module, "filesystem_type", lambda path: "nfs4")
    assert needs_polling(str(tmp_path)) is True
    assert RunWatcher(tmp_path, start=False).polling is True
    assert RunWatcher(tmp_path, poll=False, start=False).polling is False


def mount_types() -> dict[str, str]:
    with open("/proc/mounts", encoding="utf-8") as f:
        return {fields[1]: fields[2] for fields in (line.split() for line in f)}


def test_filesystem_type_is_the_longest_mount_point_holding_the_path():
    mounts = mount_types()
    if mounts.get("/dev/shm") != "tmpfs" or mounts.get("/proc") != "proc" or "/dev" not in mounts:
        pytest.skip("needs /dev, /dev/shm (tmpfs) and /proc mounted")
    assert filesystem_type("/proc/self/status") == "proc"
    assert filesystem_type("/dev/shm") == "tmpfs" and filesystem_type("/dev/shm/x/y") == "tmpfs"
    assert filesystem_type("/dev") == mounts["/dev"]
    assert filesystem_type("/devices-not-a-mount") == filesystem_type("/") == mounts["/"]
    assert needs_polling("/dev/shm") is False


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
not-a-mount-line
server:/export /data ext4 rw 0 0
server:/export /data nfs4 rw,vers=4.2 0 0
server:/share /srv/my\\040runs cifs rw 0 0
/dev/sdb1 /database xfs rw 0 0
tmpfs /three tmpfs
/dev/sdc1 /mntX ext3 rw 0 0
"""


@pytest.mark.parametrize(("path", "expected"), [
    ("/data/runs", "nfs4"),  # mounted over the ext4 mount on /data: the later line holds the files
    ("/data", "nfs4"),
    ("/srv/my runs/run-1", "cifs"),  # the table writes a space as \040
    ("/database/runs", "xfs"),
    ("/datax", "ext4"),  # shares /data's prefix, not its folder
    ("/srv/my", "ext4"),
    ("/three/runs", "tmpfs"),  # a line of just the three fields read
    ("/mntX/runs", "ext3"),
])
def test_filesystem_type_reads_the_mount_table(tmp_path, path, expected):
    (tmp_path / "mounts").write_text(MOUNTS)
    assert filesystem_type(path, str(tmp_path / "mounts")) == expected


def test_filesystem_type_is_unknown_without_a_mount_table(tmp_path):
    assert filesystem_type("/data", str(tmp_path / "missing")) is None


def test_polling_is_tried_when_inotify_cannot_watch_and_kept_once_it_started(tmp_path):
    logdir = tmp_path / "runs"
    watcher = RunWatcher(logdir, start=False)
    assert watcher.polling is False
    logdir.rmdir()  # inotify cannot watch a folder that is gone, nor can polling: the error is raised
    with pytest.raises(FileNotFoundError):
        watcher.start()
    assert watcher.polling is True and not watcher.started
    logdir.mkdir()
    watcher.start()
    try:
        assert isinstance(watcher._observer, PollingObserver) and watcher._observer.timeout == 0.5
    finally:
        watcher.stop()


def test_a_watcher_told_not_to_poll_raises_instead_of_polling(tmp_path):
    logdir = tmp_path / "runs"
    watcher = RunWatcher(logdir, poll=False, start=False)
    logdir.rmdir()
    with pytest.raises(FileNotFoundError):
        watcher.start()
    assert watcher.polling is False


def test_attribute_changes_are_not_changes(runs_root):
    (runs_root / "a").mkdir()
    (runs_root / "a" / "run.json").write_text("{}")
    watcher = RunWatcher(runs_root)
    try:
        os.chmod(runs_root / "a" / "run.json", 0o600)
        os.utime(runs_root / "a" / "run.json", (1, 1))
        (runs_root / "b").mkdir()
        (runs_root / "b" / "run.json").write_text("{}")  # events arrive in order: a's would come first
        deadline = time.monotonic() + 30
        while watcher.version("b") == 0 and time.monotonic() < deadline:
            watcher.wait(watcher.total, timeout=0.1)
        assert watcher.version("b") >= 1 and watcher.version("a") == 0
    finally:
        watcher.stop()

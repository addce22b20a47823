"""Resume after a crash, without training: which run a restarted script continues (`find_resumable`), where it picks
up (`restore_step`), which of the dead process's records and checkpoints stay (`superseded`, `kept_checkpoints`), and
`RunOpener`, over run directories written by a real RunWriter and read by RunStore (the fit() tests are
test_callback_resume.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from kerascope.callbacks import _resume
from kerascope.callbacks._resume import (
    Resumed,
    RunOpener,
    check_resume,
    find_resumable,
    kept_checkpoints,
    restore_step,
    superseded,
)
from kerascope.monitor import Run, RunStore, RunWriter, remote_writer
from kerascope.monitor import format as fmt

NOBODY = 65534  # the unprivileged user a root test process turns into to meet a process it may not signal


def write_run(root: str, name: str, *, status: str = fmt.RUNNING, created: float = 100.0,
              meta: dict[str, Any] | None = None, streams: dict[str, list[dict[str, Any]]] | None = None,
              checkpoints: list[dict[str, Any]] | None = None, **status_fields: Any) -> str:
    """A run directory as a process left it: its records, its checkpoint index, and status.json saying `status`."""
    writer = RunWriter(root, name, meta={"created": created, **(meta or {})}, flush_interval=3600)
    for stream, records in (streams or {}).items():
        for record in records:
            writer.log(stream, record)
    if checkpoints is not None:
        writer.write_json(fmt.CHECKPOINT_INDEX_FILE, checkpoints)
    writer.update_status(**status_fields)
    writer.close(status)
    return writer.run_dir


def run_at(run_dir: str) -> Run:
    return RunStore(os.path.dirname(run_dir)).run(os.path.basename(run_dir))


def epochs(*steps: int) -> list[dict[str, Any]]:
    """epoch.jsonl records: epoch i ended at steps[i]."""
    return [{"epoch": epoch, "step": step, "time": 1.0 + epoch} for epoch, step in enumerate(steps)]


def batches(*epoch_steps: tuple[int, int]) -> list[dict[str, Any]]:
    """batch.jsonl records, one per (epoch, step)."""
    return [{"step": step, "epoch": epoch, "batch": 0, "time": 1.0} for epoch, step in epoch_steps]


def stream_records(run_dir: str, relpath: str) -> list[dict[str, Any]]:
    with open(os.path.join(run_dir, relpath), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def root(tmp_path) -> str:
    return str(tmp_path / "runs")


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen]:
    """A live process of this host (another script that is still training); it exits once its stdin is closed."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield process
    process.kill()
    process.wait()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (a script killed with -9)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def writers() -> Iterator[list[RunWriter]]:
    """Writers a test opened, closed afterwards (their threads stop)."""
    opened: list[RunWriter] = []
    yield opened
    for writer in opened:
        writer.close()


# -- check_resume ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resume", [None, "auto", "20260101-120000-mlp-1a2b", "a"])
def test_none_auto_and_run_ids_are_accepted(resume):
    assert check_resume(resume) is None


@pytest.mark.parametrize("resume", ["", ".hidden", "..", f"runs{os.sep}mlp", True, 3])
def test_anything_that_cannot_be_a_run_id_is_refused(resume):
    with pytest.raises(ValueError) as raised:
        check_resume(resume)
    assert str(raised.value) == f'resume must be None, "auto" or the id of a run in logdir, got {resume!r}'


# -- _alive_elsewhere --------------------------------------------------------------------------------------------------


def test_a_run_whose_process_still_runs_here_is_alive_while_it_says_running(root, other_process):
    running = run_at(write_run(root, "a", meta={"pid": other_process.pid}))
    failed = run_at(write_run(root, "b", status=fmt.FAILED, meta={"pid": other_process.pid}))
    assert _resume._alive_elsewhere(running) is True
    # A script that caught its failed fit() and goes on: its process lives, the run is done with.
    assert _resume._alive_elsewhere(failed) is False
    # Looking sent it no signal: it ends on its own, as told.
    other_process.stdin.close()
    assert other_process.wait() == 0


def test_a_run_whose_process_is_gone_is_not_alive(root, dead_pid):
    assert _resume._alive_elsewhere(run_at(write_run(root, "a", meta={"pid": dead_pid}))) is False


def test_this_process_another_host_or_no_integer_pid_is_not_alive_elsewhere(root, other_process):
    own = run_at(write_run(root, "own"))  # RunWriter records this process
    elsewhere = run_at(write_run(root, "elsewhere", meta={"pid": other_process.pid,
                                                           "host": socket.gethostname() + "-x"}))
    text_pid = run_at(write_run(root, "text", meta={"pid": str(other_process.pid)}))
    assert own.meta["pid"] == os.getpid()
    assert [_resume._alive_elsewhere(run) for run in (own, elsewhere, text_pid)] == [False, False, False]


def test_a_process_that_may_not_be_signalled_exists_and_counts_as_alive(root):
    # pid 1 belongs to root: an unprivileged process is refused (EPERM), which says that it exists.
    run = run_at(write_run(root, "a", meta={"pid": 1}))
    if os.geteuid() != 0:
        assert _resume._alive_elsewhere(run) is True
        return
    child = os.fork()
    if child == 0:
        code = 2
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = 1 if _resume._alive_elsewhere(run) else 0
        finally:
            os._exit(code)
    _, wait_status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 1


# -- find_resumable ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [fmt.RUNNING, fmt.FAILED, fmt.INTERRUPTED])
def test_a_run_id_of_an_unfinished_run_is_resumed_where_its_records_end(root, status):
    run_dir = write_run(root, "mlp", status=status, phase=2, streams={"epoch": epochs(4, 8, 12)})
    resumed, why_not = find_resumable(root, "another name", os.path.basename(run_dir))
    assert why_not is None
    assert (resumed.run.path, resumed.phase, resumed.status, resumed.epoch, resumed.step) == (
        run_dir, 2, status, 3, 12)
    assert (resumed.rewound, resumed.kept_phase_event, resumed.dropped, resumed.checkpoints) == (False, False, {}, [])


def test_a_run_without_epochs_resumes_at_epoch_0_step_0_of_fit_1(root):
    run_dir = write_run(root, "mlp", streams={"batch": batches((0, 1), (0, 2))})
    resumed, _ = find_resumable(root, "mlp", os.path.basename(run_dir))
    assert (resumed.phase, resumed.epoch, resumed.step) == (1, 0, 0)


@pytest.mark.parametrize("phase", [0, -1, "2", None])
def test_a_phase_that_is_not_a_positive_integer_reads_as_the_first_fit(root, phase):
    run_dir = write_run(root, "mlp", phase=phase)
    resumed, _ = find_resumable(root, "mlp", os.path.basename(run_dir))
    assert resumed.phase == 1


def test_a_run_id_that_is_not_there_cannot_be_resumed(root):
    write_run(root, "mlp")
    assert find_resumable(root, "mlp", "nope") == (None, f"no run 'nope' under {root!r} to resume")


def test_a_finished_or_broken_run_cannot_be_resumed(root):
    finished = os.path.basename(write_run(root, "mlp", status=fmt.FINISHED))
    assert find_resumable(root, "mlp", finished) == (
        None, f"run {finished!r} cannot be resumed (its status is finished)")
    # status.json without run.json: a run whose creation was cut short (its status reads running)
    os.makedirs(os.path.join(root, "halfway"))
    with open(os.path.join(root, "halfway", fmt.STATUS_FILE), "w", encoding="utf-8") as f:
        json.dump({"status": fmt.RUNNING}, f)
    assert find_resumable(root, "mlp", "halfway") == (
        None, "run 'halfway' cannot be resumed (run.json is missing: not a run directory, or its creation was "
              "interrupted)")


def test_a_run_id_whose_process_still_writes_it_cannot_be_resumed(root, other_process):
    run_id = os.path.basename(write_run(root, "mlp", meta={"pid": other_process.pid}))
    assert find_resumable(root, "mlp", run_id) == (
        None, f"run {run_id!r} is being written by another process (pid {other_process.pid})")


def test_auto_takes_the_newest_unfinished_run_of_that_name(root, other_process):
    write_run(root, "mlp", status=fmt.FAILED, created=100.0)
    newest = write_run(root, "mlp", status=fmt.INTERRUPTED, created=300.0, streams={"epoch": epochs(5)})
    write_run(root, "mlp", status=fmt.RUNNING, created=200.0)
    write_run(root, "mlp", status=fmt.FINISHED, created=400.0)  # complete: nothing to continue
    write_run(root, "other", status=fmt.FAILED, created=500.0)
    write_run(root, "mlp", status=fmt.RUNNING, created=600.0, meta={"pid": other_process.pid})  # still training
    # status.json without run.json, named like the run (its id), the newest of all: not a run to go on with
    os.makedirs(os.path.join(root, "mlp"))
    with open(os.path.join(root, "mlp", fmt.STATUS_FILE), "w", encoding="utf-8") as f:
        json.dump({"status": fmt.RUNNING}, f)
    resumed, why_not = find_resumable(root, "mlp", "auto")
    assert why_not is None
    assert (resumed.run.path, resumed.status, resumed.epoch, resumed.step) == (newest, fmt.INTERRUPTED, 1, 5)


def test_auto_breaks_a_tie_of_creation_times_by_the_larger_id(root):
    first, second = write_run(root, "mlp", created=100.0), write_run(root, "mlp", created=100.0)
    resumed, _ = find_resumable(root, "mlp", "auto")
    assert resumed.run.path == max(first, second)


def test_auto_without_an_unfinished_run_of_that_name_starts_a_new_run_silently(root):
    write_run(root, "mlp", status=fmt.FINISHED)
    write_run(root, "other", status=fmt.FAILED)
    assert find_resumable(root, "mlp", "auto") == (None, None)
    assert find_resumable(str(os.path.join(root, "missing")), "mlp", "auto") == (None, None)


# -- restore_step ------------------------------------------------------------------------------------------------------


def test_the_restore_step_is_the_last_step_recorded_before_the_restored_epoch(root):
    # Epochs 0 and 1 ended at steps 4 and 8; epoch 2 was cut short after its batch at step 10.
    run = run_at(write_run(root, "mlp", streams={
        "epoch": epochs(4, 8),
        "batch": batches((0, 2), (0, 4), (1, 6), (1, 8), (2, 9), (2, 10)),
    }))
    assert [restore_step(run, epoch) for epoch in range(5)] == [0, 4, 8, 10, 10]


def test_the_restore_step_comes_from_the_epochs_when_batches_are_sparse_or_missing(root):
    # Batches logged every third step: the epoch record knows the last step of the epoch.
    sparse = run_at(write_run(root, "sparse", streams={"epoch": epochs(4, 8), "batch": batches((0, 3), (1, 6))}))
    epochs_only = run_at(write_run(root, "epochs", streams={"epoch": epochs(4, 8)}))
    nothing = run_at(write_run(root, "empty"))
    assert [restore_step(sparse, epoch) for epoch in range(4)] == [0, 4, 8, 8]
    assert [restore_step(epochs_only, epoch) for epoch in range(4)] == [0, 4, 8, 8]
    assert [restore_step(nothing, epoch) for epoch in range(3)] == [0, 0, 0]


# -- superseded --------------------------------------------------------------------------------------------------------


def resumed_at_phase(root: str, phase: int) -> Resumed:
    return Resumed(run=run_at(write_run(root, "mlp", phase=phase)), phase=phase, status=fmt.RUNNING, epoch=0, step=0)


@pytest.mark.parametrize("stream", ["batch", "epoch", "activations", "weights", "gradients", "events"])
def test_records_of_the_restored_epoch_and_later_are_dropped(root, stream):
    keep = superseded(resumed_at_phase(root, 1), 3)
    assert [keep(stream, {"epoch": epoch}) for epoch in (0, 2, 3, 4)] == [True, True, False, False]
    # Records that belong to no epoch (or name it oddly) stay.
    assert [keep(stream, record) for record in ({}, {"epoch": None}, {"epoch": 3.0}, {"epoch": "3"})] == [
        True, True, True, True]


def test_system_records_and_streams_of_its_own_stay_whatever_their_epoch(root):
    keep = superseded(resumed_at_phase(root, 1), 3)
    assert [keep("system", {"epoch": 5}), keep("custom", {"epoch": 5})] == [True, True]


def test_layer_tables_of_the_cut_short_fit_and_later_ones_are_dropped(root):
    keep = superseded(resumed_at_phase(root, 2), 0)
    assert [keep("layers", {"phase": phase, "epoch": 9}) for phase in (1, 2, 3)] == [True, False, False]
    assert [keep("layers", {}), keep("layers", {"phase": "2"})] == [True, True]


def test_a_kept_phase_event_of_the_cut_short_fit_is_noted(root):
    resumed = resumed_at_phase(root, 2)
    keep = superseded(resumed, 3)
    phase_event = {"kind": fmt.EVENT_PHASE, "data": {"phase": 2}}
    # Dropped, of another fit(), not a phase event, or without data: nothing to note.
    assert keep("events", {**phase_event, "epoch": 3}) is False
    assert keep("events", {"kind": fmt.EVENT_PHASE, "epoch": 1, "data": {"phase": 1}}) is True
    assert keep("events", {"kind": fmt.EVENT_CHECKPOINT, "epoch": 1, "data": {"phase": 2}}) is True
    assert keep("events", {"kind": fmt.EVENT_PHASE, "epoch": 1, "data": [2]}) is True
    assert keep("events", {"kind": fmt.EVENT_PHASE, "epoch": 1}) is True
    assert resumed.kept_phase_event is False
    assert keep("events", {**phase_event, "epoch": 2}) is True
    assert resumed.kept_phase_event is True


# -- kept_checkpoints --------------------------------------------------------------------------------------------------


def checkpoint(epoch: Any, step: int, value: float, is_best: bool) -> dict[str, Any]:
    return {"epoch": epoch, "step": step, "path": f"checkpoints/epoch-{epoch}.keras", "monitor": "loss",
            "value": value, "is_best": is_best, "bytes": 100, "time": 10.5}


def test_checkpoints_saved_before_the_restored_epoch_are_kept_as_plain_json(root):
    run = run_at(write_run(root, "mlp", checkpoints=[
        checkpoint(0, 4, 0.5, True), checkpoint(1.0, 8, 0.25, True), checkpoint(2, 12, 0.75, False),
    ]))
    kept = kept_checkpoints(run, 2)
    assert kept == [checkpoint(0, 4, 0.5, True), checkpoint(1, 8, 0.25, True) | {"path": "checkpoints/epoch-1.0.keras"}]
    assert [type(entry["epoch"]) for entry in kept] == [int, int]
    json.dumps(kept, allow_nan=False)  # numpy values became Python ones
    assert [len(kept_checkpoints(run, epoch)) for epoch in (0, 1, 3)] == [0, 1, 3]


def test_checkpoint_entries_without_a_numeric_epoch_are_left_out(root):
    run = run_at(write_run(root, "mlp", checkpoints=[checkpoint("first", 4, 0.5, True), checkpoint(0, 4, 0.5, True)]))
    assert [entry["step"] for entry in kept_checkpoints(run, 5)] == [4]
    assert kept_checkpoints(run_at(write_run(root, "none")), 5) == []


# -- RunOpener ---------------------------------------------------------------------------------------------------------


def on_error(message: str) -> None:
    raise AssertionError(message)


def test_create_makes_a_local_run_with_the_callbacks_settings(root, writers):
    opener = RunOpener("file://" + root, 0.25, strict=False, on_error=on_error)
    writer = opener.create("mlp", {"hparams": {"lr": 0.1}})
    writers.append(writer)
    assert (os.path.dirname(writer.run_dir), writer.name, writer.flush_interval) == (root, "mlp", 0.25)
    assert writer.on_error is on_error
    assert (opener.run_dir, opener.spool_dir, opener.resumed) == (writer.run_dir, None, None)
    with open(os.path.join(writer.run_dir, fmt.RUN_FILE), encoding="utf-8") as f:
        assert json.load(f)["hparams"] == {"lr": 0.1}


@pytest.fixture
def object_store(tmp_path, monkeypatch) -> Iterator[str]:
    """A runs root on fsspec's in-memory filesystem, spools in tmp_path; its uploaders stopped afterwards."""
    fsspec = pytest.importorskip("fsspec")
    monkeypatch.setenv(remote_writer.SPOOL_ENV, str(tmp_path / "spools"))
    uploaders: dict[str, Any] = {}
    monkeypatch.setattr(remote_writer, "_UPLOADERS", uploaders)
    bucket = f"kerascope-resume-{os.getpid()}-{id(uploaders):x}"
    yield f"memory://{bucket}/runs"
    for uploader in list(uploaders.values()):
        uploader.stop()
    fs = fsspec.filesystem("memory")
    for key in [key for key in fs.store if key.startswith(f"/{bucket}/")]:
        fs.store.pop(key, None)


def test_create_and_reopen_on_an_object_store_go_through_a_local_spool(object_store, writers):
    opener = RunOpener(object_store, 7.0, strict=False, on_error=on_error)
    writer = opener.create("mlp", {"hparams": {"lr": 0.1}})
    writers.append(writer)
    assert (opener.run_dir, opener.spool_dir) == (writer.url, writer.run_dir)
    assert writer.url == f"{object_store}/{writer.run_id}"
    assert (writer.uploader.interval, writer.on_error, writer.meta["hparams"]) == (7.0, on_error, {"lr": 0.1})
    assert writer.meta["name"] == "mlp"
    writer.close()
    again = RunOpener(object_store, 9.0, strict=False, on_error=on_error)
    again.run_dir, again.spool_dir = opener.run_dir, opener.spool_dir
    reopened = again.reopen({"fit_params": {"epochs": 2}})
    writers.append(reopened)
    assert (type(reopened), reopened.run_dir, reopened.url) == (type(writer), writer.run_dir, writer.url)
    assert (reopened.uploader.interval, reopened.on_error) == (9.0, on_error)
    assert (reopened.meta["fit_params"], reopened.meta["hparams"]) == ({"epochs": 2}, {"lr": 0.1})


def test_reopen_appends_to_the_same_local_run_with_its_fit_meta(root, writers):
    opener = RunOpener(root, 0.25, strict=False, on_error=on_error)
    first = opener.create("mlp", {"fit_params": {"epochs": 1}, "tags": ["a"]})
    first.close()
    opener.flush_interval = 0.75
    writer = opener.reopen({"fit_params": {"epochs": 2}})
    writers.append(writer)
    assert (type(writer), writer.run_dir, writer.flush_interval, writer.on_error) == (
        RunWriter, first.run_dir, 0.75, on_error)
    with open(os.path.join(first.run_dir, fmt.RUN_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    assert (meta["fit_params"], meta["tags"]) == ({"epochs": 2}, ["a"])
    assert writer.status["status"] == fmt.RUNNING


def test_resume_reopens_the_run_for_this_process(root, writers, dead_pid):
    run_dir = write_run(root, "mlp", status=fmt.FAILED, phase=2, meta={"pid": dead_pid, "host": "old-host"},
                        streams={"epoch": epochs(4, 8)})
    opener = RunOpener("file://" + root, 0.25, strict=True, on_error=on_error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        writer = opener.resume("mlp", "auto", {"fit_params": {"epochs": 5}})
    writers.append(writer)
    assert (writer.run_dir, writer.flush_interval, writer.on_error) == (run_dir, 0.25, on_error)
    assert (opener.run_dir, opener.resumed.run.path, opener.resumed.phase, opener.resumed.epoch) == (
        run_dir, run_dir, 2, 2)
    with open(os.path.join(run_dir, fmt.RUN_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    assert (meta["fit_params"], meta["host"], meta["pid"]) == ({"epochs": 5}, socket.gethostname(), os.getpid())
    assert writer.status["status"] == fmt.RUNNING


def test_resume_without_a_run_to_continue_returns_none_silently(root):
    write_run(root, "mlp", status=fmt.FINISHED)
    opener = RunOpener(root, 0.25, strict=True, on_error=on_error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert opener.resume("mlp", "auto", {}) is None
    assert (opener.run_dir, opener.resumed) == (None, None)


def on_train_begin(opener: RunOpener) -> RunWriter | None:
    """LiveMonitor's path to `resume`: Keras calls on_train_begin, which opens the writer."""
    return open_writer(opener)


def open_writer(opener: RunOpener) -> RunWriter | None:
    return opener.resume("mlp", "nope", {})


def test_a_run_id_that_cannot_be_resumed_warns_and_starts_a_new_run_unless_strict(root):
    lenient = RunOpener(root, 0.25, strict=False, on_error=on_error)
    with pytest.warns(RuntimeWarning) as caught:
        assert on_train_begin(lenient) is None
    assert [str(warning.message) for warning in caught] == [
        f"LiveMonitor: no run 'nope' under {root!r} to resume; a new run is started"]
    assert caught[0].filename == __file__  # what called the callback, not Kerascope's own code
    assert (lenient.run_dir, lenient.resumed) == (None, None)
    strict = RunOpener(root, 0.25, strict=True, on_error=on_error)
    with pytest.raises(ValueError) as raised:
        strict.resume("mlp", "nope", {})
    assert str(raised.value) == f"no run 'nope' under {root!r} to resume"


def test_resume_is_not_available_on_an_object_store(object_store):
    lenient = RunOpener(object_store, 0.25, strict=False, on_error=on_error)
    with pytest.warns(RuntimeWarning) as caught:
        assert lenient.resume("mlp", "auto", {}) is None
    assert [str(warning.message) for warning in caught] == [
        "LiveMonitor: resume is not available for an object-storage logdir; a new run is started"]
    with pytest.raises(ValueError) as raised:
        RunOpener(object_store, 0.25, strict=True, on_error=on_error).resume("mlp", "auto", {})
    assert str(raised.value) == "resume is not available for an object-storage logdir"


def dead_run(root: str, dead_pid: int, checkpoints: list[dict[str, Any]]) -> str:
    """The second fit() of a run, killed in epoch 3 after its batch at step 14 (4 steps an epoch); epochs 0-2 ended
    (the first fit() was epoch 0)."""
    return write_run(root, "mlp", phase=2, meta={"pid": dead_pid}, checkpoints=checkpoints, streams={
        "epoch": epochs(4, 8, 12),
        "batch": batches((0, 4), (1, 8), (2, 10), (2, 12), (3, 14)),
        "weights": [{"step": 8, "epoch": 1, "layer": "d"}, {"step": 12, "epoch": 2, "layer": "d"}],
        "system": [{"time": 1.0, "epoch": 2}],
        "layers": [{"phase": 1, "layers": []}, {"phase": 2, "layers": []}],
        "events": [
            {"kind": fmt.EVENT_PHASE, "epoch": 0, "step": 0, "data": {"phase": 1}},
            {"kind": fmt.EVENT_PHASE, "epoch": 1, "step": 4, "data": {"phase": 2}},
            {"kind": fmt.EVENT_CHECKPOINT, "epoch": 2, "step": 12, "message": "saved"},
        ],
    })


def test_rewind_drops_what_the_dead_process_recorded_from_the_restored_epoch_on(root, writers, dead_pid):
    run_dir = dead_run(root, dead_pid, [checkpoint(epoch, 4 * epoch + 4, 0.5, False) for epoch in range(3)])
    opener = RunOpener(root, 3600, strict=True, on_error=on_error)
    writer = opener.resume("mlp", "auto", {})
    writers.append(writer)
    assert opener.rewind(writer, 2) == 8  # BackupAndRestore restored epoch 2
    resumed = opener.resumed
    assert (resumed.rewound, resumed.kept_phase_event) == (True, True)
    assert resumed.dropped == {"batch": 3, "epoch": 1, "weights": 1, "layers": 1, "events": 1}
    assert [entry["epoch"] for entry in resumed.checkpoints] == [0, 1]
    assert stream_records(run_dir, fmt.BATCH_FILE) == batches((0, 4), (1, 8))
    with open(os.path.join(run_dir, fmt.CHECKPOINT_INDEX_FILE), encoding="utf-8") as f:
        assert json.load(f) == resumed.checkpoints
    assert [record["phase"] for record in stream_records(run_dir, fmt.LAYERS_FILE)] == [1]
    assert stream_records(run_dir, fmt.SYSTEM_FILE) == [{"time": 1.0, "epoch": 2}]


def test_rewind_to_the_epoch_after_the_last_one_keeps_everything_but_the_cut_short_epoch(root, writers, dead_pid):
    # The checkpoint index keeps all its entries: it is not written again.
    run_dir = dead_run(root, dead_pid, [checkpoint(epoch, 4 * epoch + 4, 0.5, False) for epoch in range(3)])
    index = os.path.join(run_dir, fmt.CHECKPOINT_INDEX_FILE)
    before = os.stat(index).st_ino
    opener = RunOpener(root, 3600, strict=True, on_error=on_error)
    writer = opener.resume("mlp", "auto", {})
    writers.append(writer)
    assert opener.rewind(writer, 3) == 12
    assert opener.resumed.dropped == {"batch": 1, "layers": 1}
    assert opener.resumed.kept_phase_event is True
    assert [entry["epoch"] for entry in opener.resumed.checkpoints] == [0, 1, 2]
    assert os.stat(index).st_ino == before


def test_rewind_to_the_first_epoch_drops_the_cut_short_fits_phase_event(root, writers, dead_pid):
    dead_run(root, dead_pid, [])
    opener = RunOpener(root, 3600, strict=True, on_error=on_error)
    writer = opener.resume("mlp", "auto", {})
    writers.append(writer)
    assert opener.rewind(writer, 1) == 4
    assert opener.resumed.kept_phase_event is False
    assert opener.resumed.checkpoints == []

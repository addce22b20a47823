"""RunWriter: directory layout, buffering, flushing, atomic JSON files, error reporting and torn-write recovery."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from kerascope import RunStore, RunWriter
from kerascope.monitor import format as fmt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lines(path: str) -> list[bytes]:
    with open(path, "rb") as f:
        return f.read().split(b"\n")


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll until `condition()` holds (a liveness wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


def test_creates_a_run_directory_with_identity_and_running_status(runs_root):
    writer = RunWriter(runs_root, name="lr=1e-3 / bn", meta={"hparams": {"lr": 1e-3}}, flush_interval=60)
    try:
        assert re.fullmatch(r"\d{8}-\d{6}-lr_1e-3_bn-[0-9a-f]{4}", writer.run_id)
        assert os.path.dirname(writer.run_dir) == os.fspath(runs_root)
        meta = json.loads((runs_root / writer.run_id / "run.json").read_text())
        assert meta["format_version"] == fmt.LOCAL_FORMAT_VERSION and meta["id"] == writer.run_id
        assert meta["name"] == "lr=1e-3 / bn" and meta["hparams"] == {"lr": 1e-3} and meta["pid"] == os.getpid()
        status = json.loads((runs_root / writer.run_id / "status.json").read_text())
        assert status["status"] == "running" and status["heartbeat_interval"] == fmt.HEARTBEAT_INTERVAL_S
        assert abs(status["heartbeat"] - time.time()) < 60
        assert (runs_root / writer.run_id / "model").is_dir()
    finally:
        writer.close()


def test_same_name_in_the_same_second_gets_distinct_directories(runs_root):
    writers = [RunWriter(runs_root, name="twin", flush_interval=60) for _ in range(5)]
    for writer in writers:
        writer.close()
    assert len({w.run_id for w in writers}) == 5
    assert len(RunStore(runs_root).runs()) == 5


def test_records_stay_in_memory_until_flush_then_append_in_order(runs_root):
    writer = RunWriter(runs_root, flush_interval=60)
    batch = os.path.join(writer.run_dir, "batch.jsonl")
    for step in range(1, 6):
        writer.log("batch", {"step": step, "loss": 1.0 / step})
    assert not os.path.exists(batch)  # buffered: the training thread did no I/O
    writer.flush()
    assert [json.loads(line)["step"] for line in lines(batch) if line] == [1, 2, 3, 4, 5]
    writer.log("batch", {"step": 6, "loss": math.nan, "acc": math.inf})
    writer.flush()
    raw = lines(batch)
    assert raw[-1] == b"" and raw[-2] == b'{"step":6,"loss":NaN,"acc":Infinity}'
    writer.close()


def test_background_thread_flushes_without_being_asked(runs_root):
    writer = RunWriter(runs_root, flush_interval=0.05)
    writer.log("epoch", {"epoch": 0, "loss": 0.5})
    path = os.path.join(writer.run_dir, "epoch.jsonl")
    wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0)
    assert json.loads(lines(path)[0]) == {"epoch": 0, "loss": 0.5}
    writer.close()


def test_close_writes_final_status_and_is_idempotent(runs_root):
    writer = RunWriter(runs_root, flush_interval=60)
    writer.log("batch", {"step": 1})
    writer.close(status=fmt.FAILED, reason="ValueError: boom")
    writer.close()  # second call changes nothing
    status = json.loads(open(os.path.join(writer.run_dir, "status.json")).read())
    assert status["status"] == "failed" and status["reason"] == "ValueError: boom"
    assert status["ended"] >= status["started"]
    assert os.path.getsize(os.path.join(writer.run_dir, "batch.jsonl")) > 0
    assert not [n for n in os.listdir(writer.run_dir) if n.startswith(".tmp-")]


def test_values_that_are_not_json_are_converted_not_lost(runs_root):
    hparams = {"arr": np.arange(3), "obj": object(), "t": (1, 2)}
    writer = RunWriter(runs_root, meta={"hparams": hparams}, flush_interval=60)
    writer.log("batch", {"step": np.int64(3), "loss": np.float32(0.5), "vec": np.array([1.0, 2.0]), "o": object()})
    writer.event("warning", "hello <b>", step=3, epoch=0, detail={"x": np.float64(1.5)})
    writer.close()
    record = json.loads(lines(os.path.join(writer.run_dir, "batch.jsonl"))[0])
    assert record["step"] == 3 and record["loss"] == 0.5 and record["vec"] == [1.0, 2.0]
    assert record["o"].startswith("<object object")
    event = json.loads(lines(os.path.join(writer.run_dir, "events.jsonl"))[0])
    assert event["kind"] == "warning" and event["message"] == "hello <b>" and event["data"] == {"detail": {"x": 1.5}}
    hparams = json.loads(open(os.path.join(writer.run_dir, "run.json")).read())["hparams"]
    assert hparams["arr"] == [0, 1, 2] and hparams["t"] == [1, 2] and hparams["obj"].startswith("<object")


def test_status_json_is_always_whole_while_rewritten(runs_root):
    """A reader thread never sees half a status.json, although the writer replaces it hundreds of times."""
    writer = RunWriter(runs_root, flush_interval=60)
    path = os.path.join(writer.run_dir, "status.json")
    stop, seen, bad = threading.Event(), [], []

    def read_loop() -> None:
        while not stop.is_set():
            with open(path, "rb") as f:
                data = f.read()
            try:
                seen.append(json.loads(data)["step"])
            except (ValueError, KeyError):
                bad.append(data)

    writer.update_status(step=0, padding="x" * 20000)  # a large file makes a torn read likely if writes were in place
    writer.flush()
    reader = threading.Thread(target=read_loop)
    reader.start()
    for step in range(1, 301):
        writer.update_status(step=step)
        writer.flush()
    stop.set()
    reader.join()
    writer.close()
    assert not bad and len(seen) > 0 and seen == sorted(seen)
    assert not [n for n in os.listdir(writer.run_dir) if n.startswith(".tmp-")]


def test_write_file_and_json_are_atomic_replacements_in_subdirectories(runs_root):
    writer = RunWriter(runs_root, flush_interval=60)
    writer.write_file("model/summary.txt", "first")
    inode = os.stat(os.path.join(writer.run_dir, "model/summary.txt")).st_ino
    writer.write_file("model/summary.txt", "second ┃")
    path = os.path.join(writer.run_dir, "model/summary.txt")
    assert open(path, encoding="utf-8").read() == "second ┃" and os.stat(path).st_ino != inode
    writer.write_json("checkpoints/index.json", [{"epoch": 0, "value": math.nan}])
    assert json.loads(open(os.path.join(writer.run_dir, "checkpoints/index.json")).read())[0]["epoch"] == 0
    writer.update_meta(notes="later")
    assert json.loads(open(os.path.join(writer.run_dir, "run.json")).read())["notes"] == "later"
    writer.close()


def test_io_errors_go_to_on_error_and_never_raise(runs_root):
    messages = []
    writer = RunWriter(runs_root, flush_interval=60, on_error=messages.append)
    writer.log("batch", {"step": 1})
    writer.flush()
    # The run directory disappears under the writer (a user cleans up): every write fails, nothing raises.
    for name in os.listdir(writer.run_dir):
        path = os.path.join(writer.run_dir, name)
        os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
    os.rmdir(writer.run_dir)
    writer.log("epoch", {"epoch": 0})
    writer.write_file("model/summary.txt", "x")
    writer.update_meta(notes="x")
    writer.close()
    assert messages and len(writer.errors) == len(messages)
    assert any("epoch.jsonl" in m for m in messages) and any("status.json" in m for m in messages)
    assert any("run.json" in m for m in messages)


def test_an_on_error_callback_that_raises_is_contained(runs_root):
    def explode(message: str) -> None:
        raise RuntimeError(message)

    writer = RunWriter(runs_root, flush_interval=60, on_error=explode)
    os.rename(writer.run_dir, writer.run_dir + "-moved")
    writer.log("epoch", {"epoch": 0})
    writer.close()
    assert writer.errors


def test_unwritable_root_raises_at_creation(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    with pytest.raises(OSError):
        RunWriter(afile / "runs")


def test_resume_after_a_torn_line_starts_with_a_line_break(runs_root):
    first = RunWriter(runs_root, name="resumed", flush_interval=60)
    first.log("batch", {"step": 1})
    first.close()
    with open(os.path.join(first.run_dir, "batch.jsonl"), "ab") as f:
        f.write(b'{"step": 2, "lo')  # the process died mid-line
    writer = RunWriter.resume(first.run_dir, flush_interval=60)
    assert json.loads(open(os.path.join(first.run_dir, "status.json")).read())["status"] == "running"
    writer.log("batch", {"step": 3})
    writer.close()
    assert lines(os.path.join(first.run_dir, "batch.jsonl")) == [b'{"step":1}', b'{"step": 2, "lo', b'{"step":3}', b""]
    run = RunStore(runs_root).run(writer.run_id)
    assert list(run.batch_metrics()["step"]) == [1, 3]
    assert run.problems == ["batch.jsonl: 1 malformed line(s) skipped"]
    assert run.status == "finished" and run.reason is None


def test_rewind_drops_superseded_old_records_and_a_following_reader_stays_right(runs_root):
    """The old part of a stream is filtered, what the resumed writer appended stays; a reader that followed the file
    before (its offset past the cut) reads the rewritten file from the start: no record twice, none lost."""
    first = RunWriter(runs_root, name="rewound", flush_interval=60)
    for step in range(1, 9):
        first.log("batch", {"step": step, "epoch": (step - 1) // 4})
    first.log("epoch", {"epoch": 0, "step": 4, "loss": 0.5})
    first.log("epoch", {"epoch": 1, "step": 8, "loss": 0.1})  # superseded: the restart will log epoch 1 again
    first.log("system", {"time": 1.0})
    first.close()
    with open(os.path.join(first.run_dir, "batch.jsonl"), "ab") as f:
        f.write(b'{"step": 9, "ep')  # torn by the crash
    follower = RunStore(runs_root).run(first.run_id)
    assert list(follower.batch_metrics()["step"]) == list(range(1, 9))
    writer = RunWriter.resume(first.run_dir, flush_interval=60)
    writer.log("batch", {"step": 5, "epoch": 1, "new": 1})  # the restarted training, before the rewind
    writer.flush()
    dropped = writer.rewind(lambda stream, record: record.get("epoch", 0) < 1)
    # Steps 5-8 and the record of epoch 1; the torn fragment is not a record.
    assert dropped == {"batch": 4, "epoch": 1}
    for step in range(6, 9):
        writer.log("batch", {"step": step, "epoch": 1, "new": 1})
    writer.log("epoch", {"epoch": 1, "step": 8, "loss": 0.3})
    writer.close()
    summary = read_summary(first.run_dir)  # what the runs list shows: not the dropped epoch's loss
    assert summary["epochs_logged"] == 2 and summary["metrics"]["loss"]["best"] == 0.3
    for reader in (follower, RunStore(runs_root).run(first.run_id)):
        batches = reader.batch_metrics()
        assert list(batches["step"]) == list(range(1, 9))
        assert list(batches["new"].fillna(0)) == [0] * 4 + [1] * 4
        assert len(reader.system_metrics()) == 1
    assert lines(os.path.join(first.run_dir, "batch.jsonl"))[-1] == b""  # whole lines only


def read_summary(run_dir: str) -> dict:
    with open(os.path.join(run_dir, fmt.RUN_SUMMARY_FILE), encoding="utf-8") as f:
        return json.load(f)


PARTIAL_WRITE = r"""
import json, os, resource, signal, sys
from kerascope import RunWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write returns EFBIG instead of killing the process
writer = RunWriter(sys.argv[1], name="fsize", flush_interval=3600)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, hard))
writer.log("batch", {"step": 1, "pad": "a" * 40})
writer.log("batch", {"step": 2, "pad": "b" * 40})  # crosses byte 100: a partial write, then EFBIG
writer.flush(heartbeat=False)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
writer.log("batch", {"step": 3})
writer.close()
print(json.dumps(writer.errors))
"""


def test_a_partial_write_is_cut_off_by_a_line_break_at_the_next_write(runs_root):
    """A real short write (RLIMIT_FSIZE in a child process): the fragment stays one malformed line."""
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(
        [sys.executable, "-c", PARTIAL_WRITE, str(runs_root)], env=env, capture_output=True, text=True, check=True
    )
    errors = json.loads(out.stdout)
    assert len(errors) == 1 and "batch.jsonl" in errors[0] and "File too large" in errors[0]
    (run,) = RunStore(runs_root).runs()
    raw = lines(os.path.join(run.path, "batch.jsonl"))
    assert len(raw[0]) + 1 + len(raw[1]) == 100  # the file stopped exactly at the limit, mid-record
    assert list(run.batch_metrics()["step"]) == [1, 3]
    assert run.problems == ["batch.jsonl: 1 malformed line(s) skipped"]

"""RunWriter (monitor/writer.py): the exact records and files it writes, what `resume` keeps and drops, `rewind`,
summary.json kept up to date with status and run.json changes, and the errors it reports instead of raising."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import threading
import time

import pytest

from kerascope import RunWriter
from kerascope.monitor import format as fmt


def read_json(run_dir: str, relpath: str):
    with open(os.path.join(run_dir, relpath), encoding="utf-8") as f:
        return json.load(f)


def raw(run_dir: str, relpath: str) -> bytes:
    with open(os.path.join(run_dir, relpath), "rb") as f:
        return f.read()


@pytest.fixture
def finished(runs_root):
    """A closed run: two epochs, an early_stop event, failed with a reason."""
    writer = RunWriter(runs_root, name="first", meta={"created": 1000.0}, flush_interval=3600)
    writer.log("epoch", {"epoch": 0, "step": 10, "loss": 0.5})
    writer.log("epoch", {"epoch": 1, "step": 20, "loss": 0.25})
    writer.event("early_stop", "stopped", step=20, epoch=1)
    writer.close(fmt.FAILED, reason="OOM")
    return writer.run_dir


def test_event_records_have_their_documented_fields_and_data(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.event("note", "plain")
    writer.event("early_stop", "stopped at epoch 3", step=30, epoch=2, data={"epoch": 3}, patience=2)
    writer.close()
    first, second = (json.loads(line) for line in raw(writer.run_dir, "events.jsonl").splitlines())
    assert list(first) == ["time", "step", "epoch", "kind", "message"]
    assert (first["step"], first["epoch"], first["kind"], first["message"]) == (None, None, "note", "plain")
    assert isinstance(first["time"], float)
    assert {key: second[key] for key in ("step", "epoch", "kind", "message", "data")} == {
        "step": 30, "epoch": 2, "kind": "early_stop", "message": "stopped at epoch 3",
        "data": {"epoch": 3, "patience": 2}}


def test_a_stream_of_another_name_goes_to_a_file_named_after_it(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("my metrics/v2", {"x": 1})
    writer.log("epoch", {"epoch": 0})
    writer.close()
    assert raw(writer.run_dir, "my_metrics_v2.jsonl") == b'{"x":1}\n'
    assert raw(writer.run_dir, "epoch.jsonl") == b'{"epoch":0}\n'


def test_streams_are_created_readable_by_others_with_the_process_umask(runs_root):
    umask = os.umask(0o022)
    os.umask(umask)
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("batch", {"step": 1})
    writer.close()
    assert os.stat(os.path.join(writer.run_dir, "batch.jsonl")).st_mode & 0o777 == 0o644 & ~umask


def test_each_stream_keeps_one_open_file_across_flushes(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("batch", {"step": 0})
    writer.flush()
    before = len(os.listdir("/proc/self/fd"))
    for step in range(1, 30):
        writer.log("batch", {"step": step})
        writer.flush(heartbeat=False)
    assert len(os.listdir("/proc/self/fd")) == before
    writer.close()
    assert raw(writer.run_dir, "batch.jsonl") == b"".join(b'{"step":%d}\n' % step for step in range(30))


def test_status_and_run_json_changes_reach_summary_json_at_the_next_flush(runs_root):
    writer = RunWriter(runs_root, name="run", flush_interval=3600)
    writer.update_status(epoch=3, epochs=10)
    writer.flush(heartbeat=False)
    summary = read_json(writer.run_dir, "summary.json")
    assert summary["progress"]["epoch"] == 3 and summary["progress"]["epochs"] == 10
    writer.update_meta(name="renamed", hparams={"lr": 0.1})
    assert read_json(writer.run_dir, "run.json")["name"] == "renamed"  # run.json now, summary.json at the flush
    writer.flush(heartbeat=False)
    summary = read_json(writer.run_dir, "summary.json")
    assert (summary["name"], summary["hparams"]) == ("renamed", {"lr": 0.1})
    writer.close()


# -- resume --------------------------------------------------------------------------------------------------------


def test_resume_keeps_run_json_and_status_fields_and_says_running_again(finished):
    run_json = os.stat(os.path.join(finished, "run.json"))
    before = read_json(finished, "status.json")
    errors = []
    writer = RunWriter.resume(finished, flush_interval=7.5, on_error=errors.append)
    assert (writer.name, writer.run_id, writer.run_dir, writer.flush_interval) == (
        "first", os.path.basename(finished), finished, 7.5)
    after = os.stat(os.path.join(finished, "run.json"))
    assert (after.st_ino, after.st_mtime_ns) == (run_json.st_ino, run_json.st_mtime_ns)  # not rewritten
    status = read_json(finished, "status.json")
    assert status["status"] == "running" and "ended" not in status and "reason" not in status
    assert status["started"] == before["started"] and status["heartbeat_interval"] == fmt.HEARTBEAT_INTERVAL_S
    summary = read_json(finished, "summary.json")
    assert (summary["status"], summary["epochs_logged"]) == ("running", 2)  # rewritten at once, from the files
    shutil.rmtree(finished)
    writer.close()
    assert errors and errors == writer.errors


@pytest.mark.parametrize("status_json", [None, "[1, 2]", "{broken"])
def test_resume_without_a_readable_status_starts_from_run_json(finished, status_json):
    path = os.path.join(finished, "status.json")
    os.unlink(path)
    if status_json is not None:
        with open(path, "w") as f:
            f.write(status_json)
    meta = read_json(finished, "run.json")
    del meta["name"]
    fmt.write_json_atomic(os.path.join(finished, "run.json"), meta)
    writer = RunWriter.resume(finished, flush_interval=3600)
    status = read_json(finished, "status.json")
    assert sorted(status) == ["heartbeat", "heartbeat_interval", "started", "status"]
    assert (status["started"], status["status"], writer.name) == (1000.0, "running", "run")
    writer.close()


def test_resume_of_a_directory_without_run_json_raises(runs_root):
    (runs_root / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        RunWriter.resume(runs_root / "empty")


@pytest.mark.parametrize(("existing", "expected"), [
    (None, b'{"step":1}\n'),  # a stream that does not exist yet
    (b"", b'{"step":1}\n'),
    (b'{"step":0}\n', b'{"step":0}\n{"step":1}\n'),
    (b"x", b'x\n{"step":1}\n'),  # one torn byte
    (b'{"step":0}\n{"st', b'{"step":0}\n{"st\n{"step":1}\n'),
])
def test_resume_ends_a_torn_last_line_and_only_then(finished, existing, expected):
    path = os.path.join(finished, "batch.jsonl")
    if existing is not None:
        with open(path, "wb") as f:
            f.write(existing)
    writer = RunWriter.resume(finished, flush_interval=3600)
    writer.log("batch", {"step": 1})
    writer.flush()
    writer.log("batch", {"step": 2})
    writer.close()
    assert raw(finished, "batch.jsonl") == expected + b'{"step":2}\n'


# -- rewind --------------------------------------------------------------------------------------------------------


def test_rewind_asks_keep_with_the_stream_and_keeps_records_around_torn_and_blank_lines(finished):
    with open(os.path.join(finished, "epoch.jsonl"), "ab") as f:
        f.write(b'{"epoch": 2, "st\n\n{"epoch":2,"step":30,"note":"a b"}\n')
    with open(os.path.join(finished, "batch.jsonl"), "wb") as f:
        f.write(b'{"epoch":0}\n{"epoch":1}\n')
    writer = RunWriter.resume(finished, flush_interval=3600)
    asked = []

    def keep(stream, record):
        asked.append(stream)
        return stream != "epoch" or record["epoch"] != 1

    assert writer.rewind(keep) == {"epoch": 1}
    assert sorted(set(asked)) == ["batch", "epoch", "events"]
    assert raw(finished, "epoch.jsonl") == (b'{"epoch":0,"step":10,"loss":0.5}\n'
                                            b'{"epoch":2,"step":30,"note":"a b"}\n')
    assert raw(finished, "batch.jsonl") == b'{"epoch":0}\n{"epoch":1}\n'
    assert writer.errors == []
    writer.close()


def test_rewind_that_drops_an_event_rebuilds_the_summary(finished):
    writer = RunWriter.resume(finished, flush_interval=3600)
    assert read_json(finished, "summary.json")["stop"] == {"epoch": 1, "by_nan_guard": False}
    assert writer.rewind(lambda stream, record: record.get("kind") != "early_stop") == {"events": 1}
    writer.flush(heartbeat=False)
    assert read_json(finished, "summary.json")["stop"] is None
    writer.close()


def test_rewind_of_a_torn_stream_before_any_write_leaves_whole_lines(finished):
    with open(os.path.join(finished, "epoch.jsonl"), "ab") as f:
        f.write(b'{"epoch": 2, "st')
    writer = RunWriter.resume(finished, flush_interval=3600)
    assert writer.rewind(lambda stream, record: stream != "epoch" or record["epoch"] != 1) == {"epoch": 1}
    writer.log("epoch", {"epoch": 1, "step": 20, "loss": 0.3})
    writer.close()
    assert raw(finished, "epoch.jsonl") == b'{"epoch":0,"step":10,"loss":0.5}\n{"epoch":1,"step":20,"loss":0.3}\n'


def test_rewind_reports_a_stream_it_cannot_rewrite_and_goes_on_with_the_others(finished):
    with open(os.path.join(finished, "batch.jsonl"), "wb") as f:
        f.write(b'{"epoch":1}\n')
    writer = RunWriter.resume(finished, flush_interval=3600)
    os.unlink(os.path.join(finished, "batch.jsonl"))
    os.mkdir(os.path.join(finished, "batch.jsonl"))
    assert writer.rewind(lambda stream, record: stream != "epoch" or record["epoch"] != 1) == {"epoch": 1}
    assert writer.errors == [f"could not rewind batch.jsonl: [Errno 21] Is a directory: "
                             f"'{os.path.join(finished, 'batch.jsonl')}'"]
    assert writer.rewind(lambda stream, record: False) == {}  # once: the old part is forgotten
    writer.close()


def test_rewind_of_streams_that_did_not_exist_finds_nothing_to_drop(finished):
    writer = RunWriter.resume(finished, flush_interval=3600)
    assert writer.rewind(lambda stream, record: False) == {"epoch": 2, "events": 1}
    assert writer.errors == []
    writer.close()


# -- errors ----------------------------------------------------------------------------------------------------------


def test_writes_into_a_removed_run_directory_report_what_failed(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    shutil.rmtree(writer.run_dir)
    writer.write_file("model/summary.txt", "text")
    writer.write_json("checkpoints/index.json", [])
    writer.update_meta(notes="x")
    removed = f"the run directory {writer.run_dir} was removed"
    assert writer.errors[:2] == [f"could not write model/summary.txt: {removed}",
                                 f"could not write checkpoints/index.json: {removed}"]
    assert writer.errors[2].startswith("could not write run.json: [Errno 2] No such file or directory")
    assert not os.path.exists(writer.run_dir)  # never recreated
    writer.close()


def test_errors_are_kept_up_to_a_hundred_and_all_reported(runs_root):
    reported = []
    writer = RunWriter(runs_root, flush_interval=3600, on_error=reported.append)
    shutil.rmtree(writer.run_dir)
    for i in range(150):
        writer.write_file(f"file{i}.txt", "x")
    assert len(reported) == 150 and len(writer.errors) == 100
    assert writer.errors == reported[:100] and writer.errors[99].startswith("could not write file99.txt: ")
    writer.close()


def test_write_file_accepts_text_and_bytes(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.write_file("model/summary.txt", "é\n")
    writer.write_file("model/graph.png", b"\x89PNG")
    writer.close()
    assert raw(writer.run_dir, "model/summary.txt") == "é\n".encode()
    assert raw(writer.run_dir, "model/graph.png") == b"\x89PNG"


def test_a_run_directory_that_cannot_be_made_unique_is_an_error_not_an_overwrite(runs_root, monkeypatch):
    monkeypatch.setattr(RunWriter, "ID_HEX_BYTES", 0)  # ids differ only by their time: taken for the next seconds
    now = time.time()
    for ahead in range(4):
        (runs_root / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + ahead))}-twin-").mkdir()
    with pytest.raises(FileExistsError, match="^could not create a unique run directory under "):
        RunWriter(runs_root, name="twin")
    assert len(os.listdir(runs_root)) == 4  # nothing created, nothing taken over


def test_the_layer_table_goes_to_the_model_folder(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("layers", {"phase": 1, "layers": []})
    writer.close()
    assert raw(writer.run_dir, "model/layers.jsonl") == b'{"phase":1,"layers":[]}\n'
    assert not os.path.exists(os.path.join(writer.run_dir, "layers.jsonl"))


def test_resume_flushes_as_often_as_a_new_writer_by_default(finished, runs_root):
    writer = RunWriter.resume(finished)
    fresh = RunWriter(runs_root)
    assert writer.flush_interval == fresh.flush_interval == 0.5
    writer.close()
    fresh.close()


def test_resume_of_a_run_json_without_creation_time_starts_now(finished):
    meta = read_json(finished, "run.json")
    del meta["created"]
    fmt.write_json_atomic(os.path.join(finished, "run.json"), meta)
    os.unlink(os.path.join(finished, "status.json"))
    before = time.time()
    writer = RunWriter.resume(finished, flush_interval=3600)
    started = read_json(finished, "status.json")["started"]
    assert isinstance(started, float) and before <= started <= time.time()
    writer.close()


def test_a_write_cut_short_by_the_file_size_limit_stays_one_malformed_line(runs_root):
    """A real short write (RLIMIT_FSIZE): the fragment is ended by the next write's line break."""
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.log("batch", {"step": 1, "pad": "a" * 40})
    writer.flush(heartbeat=False)
    path = os.path.join(writer.run_dir, "batch.jsonl")
    size = os.path.getsize(path)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of killing the process
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, hard))
        writer.log("batch", {"step": 2, "pad": "b" * 40})
        writer.flush(heartbeat=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert len(writer.errors) == 1 and writer.errors[0].startswith("could not append to batch.jsonl: [Errno 27] ")
    writer.log("batch", {"step": 3})
    writer.close()
    first, fragment, last, end = raw(writer.run_dir, "batch.jsonl").split(b"\n")
    assert (len(fragment), last, end) == (20, b'{"step":3}', b"")
    assert fragment == b'{"step":2,"pad":"bbb'


def test_a_new_run_has_its_identity_status_and_summary_at_once(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    assert writer.name == "run" and "-run-" in writer.run_id
    meta = read_json(writer.run_dir, "run.json")
    assert sorted(meta) == ["created", "format_version", "host", "id", "name", "pid"]
    assert (meta["name"], meta["host"], meta["pid"]) == ("run", socket.gethostname(), os.getpid())
    status = read_json(writer.run_dir, "status.json")
    assert sorted(status) == ["heartbeat", "heartbeat_interval", "started", "status"]
    assert status["started"] == meta["created"] <= status["heartbeat"]
    summary = read_json(writer.run_dir, "summary.json")  # before any flush
    assert (summary["name"], summary["status"], summary["epochs_logged"]) == ("run", "running", 0)
    named = RunWriter(runs_root, name="named", flush_interval=3600)
    assert named.name == "named" and read_json(named.run_dir, "run.json")["name"] == "named"
    for w in (writer, named):
        w.close()


def test_the_flusher_is_a_daemon_thread_named_after_the_run(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    threads = [t for t in threading.enumerate() if t.name == f"kerascope-writer-{writer.run_id}"]
    assert len(threads) == 1 and threads[0].daemon  # never keeps a script alive that forgot close()
    writer.close()
    assert not threads[0].is_alive()


def test_the_background_flusher_beats_the_heartbeat(runs_root, monkeypatch):
    monkeypatch.setattr(fmt, "HEARTBEAT_INTERVAL_S", 0.05)
    writer = RunWriter(runs_root, flush_interval=0.01)
    first = read_json(writer.run_dir, "status.json")["heartbeat"]
    deadline = time.monotonic() + 10
    while read_json(writer.run_dir, "status.json")["heartbeat"] == first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read_json(writer.run_dir, "status.json")["heartbeat"] > first and writer.errors == []
    writer.close()


def test_events_alone_update_the_summary_at_the_next_flush(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.event("early_stop", "stopped", step=5, epoch=2)
    writer.flush(heartbeat=False)
    assert read_json(writer.run_dir, "summary.json")["stop"] == {"epoch": 2, "by_nan_guard": False}
    writer.close()


def test_closing_a_run_with_nothing_pending_still_says_so_in_the_summary(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    writer.flush()
    writer.close(fmt.INTERRUPTED, reason="Ctrl-C")
    assert read_json(writer.run_dir, "summary.json")["status"] == "interrupted"
    status = read_json(writer.run_dir, "status.json")
    assert (status["status"], status["reason"]) == ("interrupted", "Ctrl-C") and status["ended"] >= status["started"]


def test_status_and_summary_write_failures_name_their_file(runs_root):
    writer = RunWriter(runs_root, flush_interval=3600)
    shutil.rmtree(writer.run_dir)
    writer.update_status(epoch=1)
    writer.flush()
    assert [error.split(":")[0] for error in writer.errors] == ["could not write status.json",
                                                                "could not write summary.json"]
    writer.close()


def test_a_run_id_taken_meanwhile_is_drawn_again(runs_root, monkeypatch):
    from kerascope.monitor import writer as writer_module

    now = time.time()
    for ahead in range(4):  # taken, whatever second the writer starts in
        (runs_root / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now + ahead))}-twin-aaaa").mkdir()
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(writer_module.secrets, "token_hex", lambda nbytes: next(tokens))
    writer = RunWriter(runs_root, name="twin", flush_interval=3600)
    assert writer.run_id.endswith("-twin-bbbb") and len(os.listdir(runs_root)) == 5
    writer.close()

"""Runs on object storage without a server: the uploader (monitor/remote_writer.py) and the readers
(monitor/remote_reader.py) on fsspec's real in-memory filesystem (`memory://`), with spools in tmp_path.

A failed upload is a real one: an object stored where a run's folder must be makes every PUT under it fail
(FileExistsError from the filesystem, a StorageError from ObjectStore) until the test removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import fsspec
import pytest

from kerascope.monitor import format as fmt
from kerascope.monitor import remote_reader, remote_writer
from kerascope.monitor.remote_reader import RemoteRoot, RemoteRunFiles, RemoteWatcher, SegmentTail, etag
from kerascope.monitor.remote_writer import RemoteRunWriter, Uploader, lock_spool, recover_spools
from kerascope.monitor.run_files import PNG_SIGNATURE, RunFormatError
from kerascope.monitor.storage import ObjectStore, StorageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ID = "20260101-120000-unit-0a1b2c3d"
PATIENCE_S = 60.0  # how long a background upload may take before the test gives up (never reached when it works)


class RecordingStore(ObjectStore):
    """A real ObjectStore on memory:// that also notes every request it is asked for, in order."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[str, str]] = []

    def put(self, relpath: str, data: bytes) -> None:
        self.calls.append(("put", relpath))
        super().put(relpath, data)

    def get(self, relpath: str, start: int | None = None, end: int | None = None) -> bytes:
        self.calls.append(("get", relpath if start is None and end is None else f"{relpath}[{start}:{end}]"))
        return super().get(relpath, start, end)

    def delete(self, relpaths: list[str]) -> None:
        self.calls.append(("delete", ",".join(relpaths)))
        super().delete(relpaths)

    def check(self) -> None:
        self.calls.append(("check", ""))
        super().check()


class OutageStore(ObjectStore):
    """A real ObjectStore on memory:// whose LIST and GET fail, as those of a store that went away do, while `down`
    is set."""

    down = False

    def listing(self, prefix: str) -> dict:
        if self.down:
            raise StorageError("the bucket does not exist (FileNotFoundError)")
        return super().listing(prefix)

    def get(self, relpath: str, start: int | None = None, end: int | None = None) -> bytes:
        if self.down:
            raise StorageError("access denied: check the credentials in the backend's environment or config "
                               "(PermissionError)")
        return super().get(relpath, start, end)


class NoPrefixStore(ObjectStore):
    """A real ObjectStore on memory:// whose LIST of a prefix without objects raises FileNotFoundError, as some
    fsspec backends do (memory:// answers with nothing)."""

    def listing(self, prefix: str) -> dict:
        found = super().listing(prefix)
        if not found:
            raise FileNotFoundError(self.key(prefix))
        return found


@pytest.fixture
def url():
    """A runs root of its own on the in-memory filesystem (shared by the whole process), removed afterwards."""
    bucket = f"kerascope-remote-{uuid.uuid4().hex[:12]}"
    yield f"memory://{bucket}/runs"
    fs = fsspec.filesystem("memory")
    for key in [key for key in fs.store if key.startswith(f"/{bucket}/")]:
        fs.store.pop(key, None)


@pytest.fixture(autouse=True)
def uploaders(monkeypatch):
    """Each test's uploaders in a registry of their own (none is finished by another test); stopped afterwards."""
    registry: dict[str, Uploader] = {}
    monkeypatch.setattr(remote_writer, "_UPLOADERS", registry)
    yield registry
    for uploader in list(registry.values()):
        uploader.stop()


def objects(url: str, prefix: str = RUN_ID) -> dict[str, bytes]:
    """{path under the run: content} of every object of a run."""
    fs = fsspec.filesystem("memory")
    root = "/" + url.removeprefix("memory://") + "/" + prefix + "/"
    return {key[len(root):]: bytes(fs.store[key].getvalue()) for key in sorted(fs.store) if key.startswith(root)}


def spool_run(spool_root, run_id: str = RUN_ID, **files: bytes) -> str:
    """A spooled run directory as RunWriter leaves it: run.json, status.json and the given files."""
    spool_dir = os.path.join(spool_root, run_id)
    contents = {"run.json": b'{"format_version": 2, "name": "unit"}', "status.json": b'{"status": "running"}', **files}
    for relpath, data in contents.items():
        path = os.path.join(spool_dir, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return spool_dir


def append(spool_dir: str, relpath: str, data: bytes) -> None:
    with open(os.path.join(spool_dir, relpath), "ab") as f:
        f.write(data)


def state_of(spool_dir: str) -> dict:
    with open(os.path.join(spool_dir, remote_writer.UPLOAD_STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def block(url: str, run_id: str = RUN_ID) -> None:
    """An object where the run's folder is: every PUT into the run fails until `unblock`."""
    fsspec.filesystem("memory").pipe("/" + url.removeprefix("memory://") + "/" + run_id, b"in the way")


def unblock(url: str, run_id: str = RUN_ID) -> None:
    fsspec.filesystem("memory").rm("/" + url.removeprefix("memory://") + "/" + run_id)


LINES_1 = b'{"step": 1}\n{"step": 2}\n'
LINES_2 = b'{"step": 3}\n'


# -- the uploader, one pass at a time ------------------------------------------------------------------------------


def test_a_pass_uploads_new_lines_as_numbered_segments_and_whole_files_once(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1 + b'{"st', "model/summary.txt": b"dense"})
    store = RecordingStore(url)
    uploader = Uploader(store, RUN_ID, spool_dir, 5.0, print)
    uploader.sync()
    # One request that fails clearly on a missing bucket first (the first pass only); run.json before the other
    # whole files, status.json last; the torn tail waits for its line break.
    assert store.calls == [("check", ""), ("put", f"{RUN_ID}/segments/batch/00000001.jsonl"),
                           ("put", f"{RUN_ID}/run.json"), ("put", f"{RUN_ID}/model/summary.txt"),
                           ("put", f"{RUN_ID}/status.json")]
    assert uploader.requests == 4
    assert objects(url)["segments/batch/00000001.jsonl"] == LINES_1
    assert objects(url)["model/summary.txt"] == b"dense"
    state = state_of(spool_dir)
    assert state["offsets"] == {"batch": len(LINES_1)} and state["seq"] == {"batch": 1}
    assert state["compacted"] == {}
    assert sorted(state["files"]) == ["model/summary.txt", "run.json", "status.json"]
    size = os.stat(os.path.join(spool_dir, "run.json")).st_size
    assert state["files"]["run.json"] == [os.stat(os.path.join(spool_dir, "run.json")).st_mtime_ns, size]

    store.calls.clear()
    uploader.sync()  # nothing new: no request at all
    assert store.calls == [] and uploader.requests == 4

    append(spool_dir, "batch.jsonl", b'ep": 3}\n')
    append(spool_dir, "epoch.jsonl", b'{"epoch": 0}\n')
    append(spool_dir, "model/summary.txt", b" 10")
    uploader.sync()
    assert store.calls == [("put", f"{RUN_ID}/segments/batch/00000002.jsonl"),
                           ("put", f"{RUN_ID}/segments/epoch/00000001.jsonl"), ("put", f"{RUN_ID}/model/summary.txt")]
    assert objects(url)["segments/batch/00000002.jsonl"] == b'{"step": 3}\n'
    assert objects(url)["model/summary.txt"] == b"dense 10"
    assert state_of(spool_dir)["offsets"] == {"batch": len(LINES_1) + 12, "epoch": 13}


def test_hidden_files_and_folders_and_the_upload_state_stay_in_the_spool(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{".hidden": b"x", ".cache/file": b"x", "checkpoints/.partial": b"x",
                                       "checkpoints/best.keras": b"PK", "a.txt": b"a"})
    store = RecordingStore(url)
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync()
    lock_fd = lock_spool(spool_dir)
    os.close(lock_fd)
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync()  # a second uploader: the state file and the lock exist
    assert sorted(objects(url)) == ["a.txt", "checkpoints/best.keras", "run.json", "status.json"]
    assert [relpath for method, relpath in store.calls if method == "put"] == [
        f"{RUN_ID}/{name}" for name in ("run.json", "a.txt", "checkpoints/best.keras", "status.json")]


def test_a_failed_pass_keeps_its_records_for_the_next_one(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 5.0, print)
    block(url)
    with pytest.raises(StorageError, match="FileExistsError"):
        uploader.sync()
    assert uploader.requests == 0
    assert not os.path.exists(os.path.join(spool_dir, remote_writer.UPLOAD_STATE_FILE))
    unblock(url)
    append(spool_dir, "batch.jsonl", LINES_2)
    uploader.sync()
    assert objects(url)["segments/batch/00000001.jsonl"] == LINES_1 + LINES_2
    assert state_of(spool_dir)["seq"] == {"batch": 1}


def test_a_new_uploader_goes_on_from_the_state_the_last_one_saved(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    Uploader(ObjectStore(url), RUN_ID, spool_dir, 5.0, print).sync()
    append(spool_dir, "batch.jsonl", LINES_2)
    store = RecordingStore(url)
    resumed = Uploader(store, RUN_ID, spool_dir, 5.0, print)
    resumed.sync()
    assert store.calls == [("check", ""), ("put", f"{RUN_ID}/segments/batch/00000002.jsonl")]
    assert objects(url)["segments/batch/00000002.jsonl"] == LINES_2


@pytest.mark.parametrize("saved", [b"{not json", b"[]", b"{}"], ids=["torn", "not-an-object", "empty-object"])
def test_an_unreadable_upload_state_means_starting_over(url, tmp_path, saved):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    with open(os.path.join(spool_dir, remote_writer.UPLOAD_STATE_FILE), "wb") as f:
        f.write(saved)
    store = RecordingStore(url)
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync()
    assert [relpath for _, relpath in store.calls] == [
        "", *(f"{RUN_ID}/{name}" for name in ("segments/batch/00000001.jsonl", "run.json", "status.json"))]


def test_a_spool_whose_state_cannot_be_saved_still_uploads(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    os.mkdir(os.path.join(spool_dir, remote_writer.UPLOAD_STATE_FILE))  # a folder where the file would go
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 5.0, print)
    uploader.sync(final=True)
    assert objects(url)["batch.jsonl"] == LINES_1


# -- compaction ----------------------------------------------------------------------------------------------------


def test_the_final_pass_compacts_each_stream_and_deletes_the_segments_it_replaces(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1, "model/layers.jsonl": b'{"layer": "d"}\n'})
    store = RecordingStore(url)
    uploader = Uploader(store, RUN_ID, spool_dir, 5.0, print)
    uploader.sync()
    append(spool_dir, "batch.jsonl", LINES_2 + b'{"torn')
    store.put(f"{RUN_ID}/segments/batch/notes.txt", b"not a segment")
    store.calls.clear()
    uploader.sync(final=True)
    batch_entry = {"file": "batch.jsonl", "segments": 2, "bytes": len(LINES_1 + LINES_2)}
    layers_entry = {"file": "model/layers.jsonl", "segments": 1, "bytes": 15}
    assert store.calls == [
        ("put", f"{RUN_ID}/segments/batch/00000002.jsonl"), ("put", f"{RUN_ID}/batch.jsonl"),
        ("put", f"{RUN_ID}/model/layers.jsonl"), ("put", f"{RUN_ID}/compacted.json"),
        ("delete", ",".join(f"{RUN_ID}/segments/{name}.jsonl" for name in ("batch/00000001", "batch/00000002",
                                                                           "layers/00000001")))]
    uploaded = objects(url)
    assert uploaded["batch.jsonl"] == LINES_1 + LINES_2  # not the torn tail
    assert uploaded["model/layers.jsonl"] == b'{"layer": "d"}\n'
    assert uploaded["compacted.json"] == json.dumps({"streams": {"batch": batch_entry, "layers": layers_entry}},
                                                    indent=1).encode()
    assert sorted(name for name in uploaded if name.startswith("segments/")) == ["segments/batch/notes.txt"]
    assert uploader.requests == 9
    assert state_of(spool_dir)["compacted"] == {"batch": batch_entry, "layers": layers_entry}

    store.calls.clear()
    uploader.sync(final=True)  # compacted already: nothing is sent again
    assert store.calls == [] and uploader.requests == 9


def test_a_resumed_run_compacts_again_without_resending_streams_that_did_not_grow(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1, "epoch.jsonl": b'{"epoch": 0}\n'})
    Uploader(ObjectStore(url), RUN_ID, spool_dir, 5.0, print).sync(final=True)
    append(spool_dir, "batch.jsonl", LINES_2)
    store = RecordingStore(url)
    resumed = Uploader(store, RUN_ID, spool_dir, 5.0, print)
    resumed.sync(final=True)
    assert store.calls == [
        ("check", ""), ("put", f"{RUN_ID}/segments/batch/00000002.jsonl"), ("put", f"{RUN_ID}/batch.jsonl"),
        ("put", f"{RUN_ID}/compacted.json"), ("delete", f"{RUN_ID}/segments/batch/00000002.jsonl")]
    assert json.loads(objects(url)["compacted.json"]) == {"streams": {
        "batch": {"file": "batch.jsonl", "segments": 2, "bytes": len(LINES_1 + LINES_2)},
        "epoch": {"file": "epoch.jsonl", "segments": 1, "bytes": 13}}}
    assert objects(url)["batch.jsonl"] == LINES_1 + LINES_2


def test_compaction_keeps_a_segment_written_after_it_and_a_stream_it_does_not_cover(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    store = ObjectStore(url)
    store.put(f"{RUN_ID}/segments/batch/00000002.jsonl", LINES_2)  # a later segment (numbered past the compaction)
    store.put(f"{RUN_ID}/segments/epoch/00000001.jsonl", b"{}\n")  # a stream this spool has nothing of
    store.put(f"{RUN_ID}/segments/unknown/00000001.jsonl", b"{}\n")
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync(final=True)
    assert sorted(name for name in objects(url) if name.startswith("segments/")) == [
        "segments/batch/00000002.jsonl", "segments/epoch/00000001.jsonl", "segments/unknown/00000001.jsonl"]


def test_compaction_deletes_only_its_own_runs_segments(url, tmp_path):
    neighbour = "20260101-120000-unit-0a1b2c3e"  # another run of the root, its id as long as this one's
    store = ObjectStore(url)
    store.put(f"{neighbour}/segments/batch/00000001.jsonl", LINES_1)
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync(final=True)
    assert list(objects(url, neighbour)) == ["segments/batch/00000001.jsonl"]
    assert sorted(objects(url)) == ["batch.jsonl", "compacted.json", "run.json", "status.json"]


def test_compaction_goes_on_when_the_store_finds_no_segments_left_to_delete(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    store = NoPrefixStore(url)
    uploader = Uploader(store, RUN_ID, spool_dir, 5.0, print)
    uploader.sync()
    store.delete([f"{RUN_ID}/segments/batch/00000001.jsonl"])  # removed behind the uploader's back
    uploader.sync(final=True)
    assert sorted(objects(url)) == ["batch.jsonl", "compacted.json", "run.json", "status.json"]
    assert state_of(spool_dir)["compacted"] == {"batch": {"file": "batch.jsonl", "segments": 1, "bytes": 24}}


def test_a_run_without_records_is_not_compacted(url, tmp_path):
    spool_dir = spool_run(tmp_path)
    store = RecordingStore(url)
    Uploader(store, RUN_ID, spool_dir, 5.0, print).sync(final=True)
    assert store.calls == [("check", ""), ("put", f"{RUN_ID}/run.json"), ("put", f"{RUN_ID}/status.json")]


# -- the uploader's thread: failures, backoff, recovery ------------------------------------------------------------


def test_uploads_that_fail_are_reported_once_retried_and_reported_again_when_they_recover(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    reports: list[str] = []
    failures_seen: list[int] = []

    def report(message: str) -> None:
        reports.append(message)
        if len(reports) == 1:
            failures_seen.append(uploader.failures)
            unblock(url)
            uploader.finish()  # wakes the thread from its backoff at once

    block(url)
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, report)
    assert uploader.start() is True
    assert uploader.wait(PATIENCE_S) is True and uploader.done is True
    assert failures_seen == [1]
    assert reports == [
        f"uploads to {url}/{RUN_ID} failed (FileExistsError: /{url.removeprefix('memory://')}/{RUN_ID}); records "
        f"are kept in {spool_dir} and retried with backoff",
        f"uploads to {url}/{RUN_ID} resumed after 1 failure(s)"]
    assert (uploader.failures, uploader.last_error) == (0, None)
    assert objects(url)["batch.jsonl"] == LINES_1
    # Done: the spool's lock is released, so another process could take it.
    fd = lock_spool(spool_dir)
    assert fd is not None
    os.close(fd)


def test_a_failure_that_is_not_a_storage_error_is_reported_by_its_repr_and_retried(url, tmp_path):
    spool_dir = spool_run(tmp_path)
    os.mkdir(os.path.join(spool_dir, "batch.jsonl"))  # a folder where the stream's file must be: reading it fails
    reports: list[str] = []

    def report(message: str) -> None:
        reports.append(message)
        if len(reports) == 1:
            os.rmdir(os.path.join(spool_dir, "batch.jsonl"))
            append(spool_dir, "batch.jsonl", LINES_1)
            uploader.finish()

    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, report)
    assert uploader.start() is True and uploader.wait(PATIENCE_S) is True
    error = "IsADirectoryError(21, 'Is a directory')"
    assert reports == [f"uploads to {url}/{RUN_ID} failed ({error}); records are kept in {spool_dir} and retried "
                       "with backoff", f"uploads to {url}/{RUN_ID} resumed after 1 failure(s)"]
    assert objects(url)["batch.jsonl"] == LINES_1


def test_a_started_uploader_sends_what_the_spool_gains_every_interval_until_finished(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, print)
    assert uploader.start() is True
    # A daemon thread: a training script that forgets close() still exits (the exit drain sends the rest).
    assert (uploader._thread.name, uploader._thread.daemon) == (f"kerascope-upload-{RUN_ID}", True)
    wait_until(lambda: "segments/batch/00000001.jsonl" in objects(url), "the first segment")
    append(spool_dir, "batch.jsonl", LINES_2)
    wait_until(lambda: "segments/batch/00000002.jsonl" in objects(url), "the second segment, unasked")
    assert uploader.done is False and "compacted.json" not in objects(url)
    uploader.finish()
    assert uploader.wait(PATIENCE_S) is True and objects(url)["batch.jsonl"] == LINES_1 + LINES_2


def test_starting_a_running_uploader_again_keeps_its_one_thread(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, print)
    assert uploader.start() is True
    thread = uploader._thread
    assert uploader.start() is True  # a resumed run's writer starts its uploader again while it still runs
    assert uploader._thread is thread and thread.is_alive()
    uploader.finish()
    assert uploader.wait(PATIENCE_S) is True and objects(url)["batch.jsonl"] == LINES_1


def wait_until(condition, what: str, patience_s: float = 10.0) -> None:
    """Poll `condition()` until true; fail naming `what` after `patience_s` (a hang, not a timing assertion)."""
    deadline = time.monotonic() + patience_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_a_second_uploader_of_a_spool_held_by_another_sends_nothing(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    held = lock_spool(spool_dir)
    assert held is not None
    assert lock_spool(spool_dir) is None
    try:
        uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, print)
        assert uploader.start() is False
        assert uploader.wait(0) is False and objects(url) == {}
    finally:
        os.close(held)
    assert oct(os.stat(os.path.join(spool_dir, remote_writer.LOCK_FILE)).st_mode & 0o777) == "0o600"


def test_a_stopped_uploader_sends_nothing_more_and_leaves_the_spool(url, tmp_path, uploaders):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    block(url)
    reported = threading.Event()
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 0.01, lambda message: reported.set())
    uploaders[spool_dir] = uploader
    assert uploader.start() is True
    assert reported.wait(PATIENCE_S)
    uploader.stop()
    uploader.stop()  # twice (it is no longer registered): nothing more
    assert spool_dir not in uploaders
    uploader._thread.join(PATIENCE_S)
    assert not uploader._thread.is_alive() and uploader.done is False
    unblock(url)
    assert objects(url) == {} and os.path.isfile(os.path.join(spool_dir, "batch.jsonl"))


def test_after_a_failure_the_uploader_retries_on_its_own_and_counts_every_failure(url, tmp_path, monkeypatch):
    monkeypatch.setattr(remote_writer, "MAX_RETRY_DELAY_S", 0.01)  # the backoff capped at 10 ms
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    reports: list[str] = []
    block(url)
    # An interval of an hour: only the backoff brings the next attempt, nothing here wakes the thread.
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 3600.0, reports.append)
    assert uploader.start() is True
    wait_until(lambda: uploader.failures >= 3, "three failed passes that nobody asked for")
    unblock(url)
    wait_until(lambda: len(reports) == 2, "the report of the recovery")
    prefix = f"uploads to {url}/{RUN_ID} resumed after "
    assert reports[1].startswith(prefix) and reports[1].endswith(" failure(s)")
    assert int(reports[1][len(prefix):-len(" failure(s)")]) >= 3
    assert objects(url)["segments/batch/00000001.jsonl"] == LINES_1


def test_an_uploader_started_again_after_finishing_goes_on_with_the_next_segment(url, tmp_path):
    spool_dir = spool_run(tmp_path, **{"batch.jsonl": LINES_1})
    uploader = Uploader(ObjectStore(url), RUN_ID, spool_dir, 3600.0, print)
    assert uploader.start() is True
    uploader.finish()
    assert uploader.wait(PATIENCE_S) is True
    fd = lock_spool(spool_dir)  # done: the spool's lock is released
    assert fd is not None
    os.close(fd)
    append(spool_dir, "batch.jsonl", LINES_2)
    assert uploader.start() is True and uploader.done is False
    assert lock_spool(spool_dir) is None  # held again while it sends: no other process takes the spool
    uploader.finish()
    assert uploader.wait(PATIENCE_S) is True
    assert objects(url)["batch.jsonl"] == LINES_1 + LINES_2
    assert json.loads(objects(url)["compacted.json"])["streams"]["batch"]["segments"] == 2


# -- spools left by earlier processes ------------------------------------------------------------------------------


def test_spools_left_behind_are_sent_and_compacted_by_the_next_writer(url, tmp_path, uploaders):
    spool_root = tmp_path / "spool"
    left = spool_run(spool_root, "20260101-000000-left-00000001", **{"batch.jsonl": LINES_1})
    spool_run(spool_root, "20260101-000000-held-00000002", **{"batch.jsonl": LINES_1})
    (spool_root / "20260101-000000-creating-00000003").mkdir()  # no run.json yet: being created
    (spool_root / "stray.txt").write_text("not a run")
    held = lock_spool(str(spool_root / "20260101-000000-held-00000002"))
    try:
        writer = RemoteRunWriter(url, name="next", flush_interval=3600, spool_dir=str(spool_root))
        writer.close()
        assert writer.recovered == ["20260101-000000-left-00000001"]
        assert uploaders[left].wait(PATIENCE_S) and writer.wait_uploaded(PATIENCE_S)
    finally:
        os.close(held)
    sent = objects(url, "20260101-000000-left-00000001")
    assert sent["batch.jsonl"] == LINES_1 and sent["status.json"] == b'{"status": "running"}'
    assert objects(url, "20260101-000000-held-00000002") == {}
    released = str(spool_root / "20260101-000000-held-00000002")
    assert recover_spools(ObjectStore(url), str(spool_root), 1.0, print) == ["20260101-000000-held-00000002"]
    assert uploaders[released].wait(PATIENCE_S)
    assert objects(url, "20260101-000000-held-00000002")["batch.jsonl"] == LINES_1
    assert recover_spools(ObjectStore(url), str(spool_root), 1.0, print) == []  # each is in this process's registry
    assert recover_spools(ObjectStore(url), str(tmp_path / "missing"), 1.0, print) == []


# -- RemoteRunWriter -----------------------------------------------------------------------------------------------


def test_a_remote_writer_spools_locally_and_uploads_a_compacted_version_2_run(url, tmp_path, monkeypatch):
    monkeypatch.setenv(remote_writer.SPOOL_ENV, str(tmp_path / "spools"))
    reports: list[str] = []
    writer = RemoteRunWriter(url, name="unit", meta={"lr": 0.1}, flush_interval=3600, on_error=reports.append)
    spool_root = os.path.join(tmp_path, "spools", hashlib.sha256(url.encode()).hexdigest()[:16])
    assert writer.run_dir == os.path.join(spool_root, writer.run_id)
    assert writer.url == f"{url}/{writer.run_id}" and writer.recovered == []
    assert len(writer.run_id.rsplit("-", 1)[1]) == 2 * RemoteRunWriter.ID_HEX_BYTES == 8
    # Records reach the spool every 0.5 s as for a local run; the uploader sends them every flush_interval.
    assert (writer.flush_interval, writer.uploader.interval) == (remote_writer.SPOOL_FLUSH_INTERVAL_S, 3600)
    writer.log("batch", {"step": 1, "loss": 0.5})
    assert writer.wait_uploaded(0) is False  # not closed: not done, and no waiting
    writer.close()
    writer.close()  # twice: nothing more
    assert writer.wait_uploaded(PATIENCE_S) is True
    sent = objects(url, writer.run_id)
    meta = json.loads(sent["run.json"])
    assert (meta["format_version"], meta["lr"], meta["name"]) == (fmt.OBJECT_FORMAT_VERSION, 0.1, "unit")
    assert json.loads(sent["status.json"])["status"] == fmt.FINISHED
    assert [json.loads(line) for line in sent["batch.jsonl"].splitlines()] == [{"step": 1, "loss": 0.5}]
    assert not [name for name in sent if name.startswith("segments/")] and reports == []


def test_resume_remote_goes_on_with_the_same_uploader_or_a_new_one(url, tmp_path, uploaders):
    writer = RemoteRunWriter(url, name="phases", flush_interval=3600, spool_dir=str(tmp_path))
    writer.log("batch", {"step": 1})
    writer.close()
    assert writer.wait_uploaded(PATIENCE_S)
    first_uploader = writer.uploader
    resumed = RemoteRunWriter.resume_remote(url, writer.run_dir, flush_interval=3600)
    assert resumed.uploader is first_uploader and resumed.store is writer.store
    assert resumed.url == f"{url}/{writer.run_id}" and first_uploader.interval == 3600
    resumed.log("batch", {"step": 2})
    resumed.close()
    assert resumed.wait_uploaded(PATIENCE_S)
    assert [json.loads(line)["step"] for line in objects(url, writer.run_id)["batch.jsonl"].splitlines()] == [1, 2]

    uploaders.clear()  # as in a new process: no uploader of this spool yet
    again = RemoteRunWriter.resume_remote(url, writer.run_dir, flush_interval=3600)
    assert again.uploader is not first_uploader and again.store is not writer.store
    assert again.store.url == url
    again.log("batch", {"step": 3})
    again.close()
    assert again.wait_uploaded(PATIENCE_S)
    assert [json.loads(line)["step"] for line in objects(url, writer.run_id)["batch.jsonl"].splitlines()] == [1, 2, 3]


def test_a_remote_writer_named_by_default_and_closed_with_a_reason(url, tmp_path):
    writer = RemoteRunWriter(url, flush_interval=3600, spool_dir=str(tmp_path))
    writer.close(fmt.FAILED, reason="loss is NaN")
    assert writer.wait_uploaded(PATIENCE_S)
    sent = objects(url, writer.run_id)
    assert json.loads(sent["run.json"])["name"] == "run"
    status = json.loads(sent["status.json"])
    assert (status["status"], status["reason"]) == (fmt.FAILED, "loss is NaN")


def test_a_spool_is_locked_from_its_creation_before_its_run_json_exists(tmp_path):
    _run_id, path = RemoteRunWriter._create_dir(str(tmp_path), "creating")
    try:
        assert lock_spool(path) is None  # so recover_spools in another process never takes it
    finally:
        os.close(remote_writer._CREATION_LOCKS.pop(path))


def failure_report(url: str, run_id: str, spool_dir: str) -> str:
    return (f"uploads to {url}/{run_id} failed (FileExistsError: /{url.removeprefix('memory://')}/{run_id}); records "
            f"are kept in {spool_dir} and retried with backoff")


def test_a_left_spool_that_cannot_be_sent_yet_is_reported_through_the_writers_on_error(url, tmp_path, uploaders):
    left_id = "20260101-000000-left-00000001"
    left = spool_run(tmp_path / "spool", left_id, **{"batch.jsonl": LINES_1})
    block(url, left_id)
    reports: list[str] = []
    reported = threading.Event()

    def on_error(message: str) -> None:
        reports.append(message)
        if len(reports) == 1:  # in the uploader's thread, before its next attempt: exactly one failure
            unblock(url, left_id)
        reported.set()

    writer = RemoteRunWriter(url, name="next", flush_interval=3600, on_error=on_error,
                             spool_dir=str(tmp_path / "spool"))
    assert writer.recovered == [left_id]
    assert reported.wait(PATIENCE_S)
    uploaders[left].finish()  # wakes it from its backoff
    assert uploaders[left].wait(PATIENCE_S)
    writer.close()
    assert writer.wait_uploaded(PATIENCE_S)
    assert reports == [failure_report(url, left_id, left), f"uploads to {url}/{left_id} resumed after 1 failure(s)"]
    assert objects(url, left_id)["batch.jsonl"] == LINES_1


def test_a_resumed_remote_writer_reports_through_its_own_on_error(url, tmp_path, uploaders):
    writer = RemoteRunWriter(url, name="phases", flush_interval=3600, spool_dir=str(tmp_path))
    writer.close()
    assert writer.wait_uploaded(PATIENCE_S)
    block(url, writer.run_id)
    reports: list[str] = []
    reported = threading.Event()

    def on_error(message: str) -> None:
        reports.append(message)
        if len(reports) == 1:  # in the uploader's thread, before its next attempt: exactly one failure
            unblock(url, writer.run_id)
        reported.set()

    resumed = RemoteRunWriter.resume_remote(url, writer.run_dir, flush_interval=3600, on_error=on_error)
    assert resumed.flush_interval == remote_writer.SPOOL_FLUSH_INTERVAL_S
    assert reported.wait(PATIENCE_S)  # its first pass (status.json says running again) fails
    resumed.close()  # wakes the uploader from its backoff
    assert resumed.wait_uploaded(PATIENCE_S)
    assert reports == [failure_report(url, writer.run_id, writer.run_dir),
                       f"uploads to {url}/{writer.run_id} resumed after 1 failure(s)"]


def test_default_spool_root_is_one_folder_per_runs_root(monkeypatch, tmp_path):
    digest = "0863ef5cf26dd1c4"  # sha256("s3://bucket/runs")[:16]
    assert hashlib.sha256(b"s3://bucket/runs").hexdigest()[:16] == digest
    monkeypatch.setenv(remote_writer.SPOOL_ENV, str(tmp_path))
    assert remote_writer.default_spool_root("s3://bucket/runs") == os.path.join(str(tmp_path), digest)
    monkeypatch.delenv(remote_writer.SPOOL_ENV)
    monkeypatch.setenv("HOME", "/home/someone")
    assert remote_writer.default_spool_root("s3://bucket/runs") == f"/home/someone/.cache/kerascope/spool/{digest}"


EXITING_SCRIPT = """
import atexit, json, sys, time
import fsspec
from kerascope.monitor import remote_writer
from kerascope.monitor.remote_writer import RemoteRunWriter
remote_writer.EXIT_WAIT_S = float(sys.argv[4])
if sys.argv[3] == "blocked":  # an object where the runs root's folder is: every upload fails
    fsspec.filesystem("memory").pipe("/exiting/runs", b"in the way")
writer = RemoteRunWriter("memory://exiting/runs", name="exiting", flush_interval=3600, spool_dir=sys.argv[1])
writer.log("batch", {"step": 1})
while sys.argv[3] == "blocked" and writer.uploader.last_error is None:
    time.sleep(0.01)  # the first upload has failed
writer.close()
root = "/exiting/runs/" + writer.run_id + "/"
# atexit runs after the threading-exit hook that drains the uploads: what the store holds once they are done.
atexit.register(lambda: print(json.dumps(sorted(key[len(root):] for key in fsspec.filesystem("memory").store
                                                if key.startswith(root))), flush=True))
"""


@pytest.mark.parametrize("case", ["reachable", "blocked"])
def test_at_exit_the_last_upload_is_waited_for_and_the_sent_spool_removed(tmp_path, case):
    wait_s = PATIENCE_S if case == "reachable" else 0.5
    done = subprocess.run([sys.executable, "-c", EXITING_SCRIPT, str(tmp_path), "", case, str(wait_s)],
                          env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if case == "reachable":
        assert json.loads(done.stdout) == ["batch.jsonl", "compacted.json", "run.json", "status.json", "summary.json"]
        assert os.listdir(tmp_path) == [] and done.stderr == ""
    else:
        (run_id,) = os.listdir(tmp_path)
        assert json.loads(done.stdout) == []
        assert done.stderr == (f"kerascope: the run memory://exiting/runs/{run_id} is not fully uploaded "
                               f"(FileExistsError: /exiting/runs); its records are kept in {tmp_path / run_id}\n")


# -- the readers: the root's listing -------------------------------------------------------------------------------


def test_the_root_is_listed_once_per_second_and_keeps_its_last_listing_through_an_outage(url):
    store = OutageStore(url)
    store.put(f"{RUN_ID}/run.json", b"{}")
    store.put(f"{RUN_ID}/segments/batch/00000001.jsonl", LINES_1)
    store.put("20260101-000000-status-only/status.json", b"{}")
    store.put("20260101-000000-no-run/summary.json", b"{}")
    store.put(".hidden/run.json", b"{}")
    store.put("loose.json", b"{}")
    root = RemoteRoot(url, store=store)
    assert (root.url, root.error, root.listings) == (url, None, 0)
    assert root.run_ids() == ["20260101-000000-status-only", RUN_ID]
    assert sorted(root.files(RUN_ID)) == ["run.json", "segments/batch/00000001.jsonl"]
    assert root.files(RUN_ID)["run.json"]["size"] == 2
    assert root.files("missing") == {}
    assert root.listings == 1  # three questions, one listing
    store.put("20260101-000001-later/run.json", b"{}")
    assert root.run_ids() == ["20260101-000000-status-only", RUN_ID]
    snapshot = root.snapshot(max_age=0)
    assert root.listings == 2 and "20260101-000001-later" in snapshot
    store.down = True
    assert root.snapshot(max_age=0) is snapshot
    assert root.error == "the bucket does not exist (FileNotFoundError)" and root.listings == 2
    store.down = False
    assert root.snapshot() is snapshot  # the failed listing counts as a fresh one: not tried again at once
    assert root.snapshot(max_age=0) == snapshot and root.error is None and root.listings == 3


def test_a_root_whose_store_is_down_from_the_start_has_no_runs_and_says_why(url):
    store = OutageStore(url)
    store.down = True
    root = RemoteRoot(url, store=store)
    assert (root.snapshot(), root.run_ids(), root.files(RUN_ID)) == ({}, [], {})
    assert (root.error, root.listings) == ("the bucket does not exist (FileNotFoundError)", 0)


def test_a_root_whose_store_finds_no_prefix_is_an_empty_root(url):
    root = RemoteRoot(url, store=NoPrefixStore(url))
    assert (root.snapshot(), root.run_ids(), root.error, root.listings) == ({}, [], None, 1)


def test_a_root_opened_by_url_and_its_cache_folder(url, monkeypatch, tmp_path):
    monkeypatch.setenv(remote_reader.CACHE_ENV, str(tmp_path))
    root = RemoteRoot(url)
    assert root.url == url and root.store.url == url and root.snapshot() == {}
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    assert root.cache_dir == os.path.join(str(tmp_path), digest)
    monkeypatch.delenv(remote_reader.CACHE_ENV)
    monkeypatch.setenv("HOME", "/home/someone")
    expected = "/home/someone/.cache/kerascope/objects/0863ef5cf26dd1c4"
    assert remote_reader.default_cache_dir("s3://bucket/runs") == expected


@pytest.mark.parametrize(("info", "expected"), [
    ({"ETag": '"abc"', "etag": "e", "md5": "m", "size": 1}, "abc"),
    ({"etag": '"e"', "md5": "m"}, "e"),
    ({"md5": "m", "size": 3}, "m"),
    ({"etag": '"XJjA6q7B2uQCEAE="'}, "XJjA6q7B2uQCEAE="),  # base64, as GCS's: only the quotes go
    ({"ETag": "", "size": 3, "LastModified": "2026", "mtime": 1.5}, "3-2026"),
    ({"size": 3, "mtime": 1.5, "last_modified": "x"}, "3-1.5"),
    ({"size": 3, "last_modified": "x"}, "3-x"),
    ({}, "None-None"),
])
def test_an_objects_version_is_its_etag_else_its_size_and_time(info, expected):
    assert etag(info) == expected


# -- the readers: whole files ----------------------------------------------------------------------------------------


@pytest.fixture
def run_files(url, tmp_path, monkeypatch):
    monkeypatch.setenv(remote_reader.CACHE_ENV, str(tmp_path / "cache"))
    store = RecordingStore(url)
    store.put(f"{RUN_ID}/run.json", b'{"name": "unit"}')
    store.put(f"{RUN_ID}/bad.json", b"{oops")
    store.put(f"{RUN_ID}/model/summary.txt", b"dense \xff")
    store.put(f"{RUN_ID}/model/graph.png", PNG_SIGNATURE + b"rest")
    store.put(f"{RUN_ID}/model/fake.png", b"GIF89a..")
    store.put(f"{RUN_ID}/checkpoints/best.keras", b"PK")
    store.put(f"{RUN_ID}/model/empty.txt", b"")
    store.calls.clear()
    return RemoteRunFiles(RemoteRoot(url, store=store), RUN_ID)


def test_whole_files_are_read_under_the_runs_prefix(run_files, url):
    assert run_files.run_dir == f"{url}/{RUN_ID}" and run_files.path("run.json") == f"{url}/{RUN_ID}/run.json"
    assert run_files.read_json("run.json") == {"name": "unit"}
    assert run_files.read_text("model/summary.txt") == "dense \ufffd"
    assert run_files.read_text("missing.txt") == ""
    assert run_files.stamp("run.json") == ("16-None", 16)
    assert run_files.stamp("model/empty.txt") == ("0-None", 0)
    with pytest.raises(RunFormatError, match=r"^bad.json is not valid JSON \(Expecting property name enclosed in "
                                             r"double quotes: line 1 column 2 \(char 1\)\)$"):
        run_files.read_json("bad.json")
    with pytest.raises(FileNotFoundError, match="^missing.json$"):
        run_files.read_json("missing.json")
    with pytest.raises(FileNotFoundError):
        run_files.stamp("missing.json")


def test_a_file_larger_than_allowed_is_refused_unread(run_files, monkeypatch):
    monkeypatch.setattr(remote_reader, "MAX_JSON_FILE_BYTES", 15)
    monkeypatch.setattr(remote_reader, "MAX_TEXT_FILE_BYTES", 6)
    run_files.root.store.calls.clear()
    with pytest.raises(RunFormatError, match=r"^run.json is 16 bytes, more than the 15 allowed$"):
        run_files.read_json("run.json")
    assert run_files.read_text("model/summary.txt") == ""
    assert run_files.root.store.calls == []
    monkeypatch.setattr(remote_reader, "MAX_JSON_FILE_BYTES", 16)
    assert run_files.read_json("run.json") == {"name": "unit"}


def test_a_file_that_cannot_be_fetched_is_a_format_error_naming_the_reason(url):
    store = OutageStore(url)
    store.put(f"{RUN_ID}/run.json", b"{}")
    store.put(f"{RUN_ID}/model/summary.txt", b"dense")
    files = RemoteRunFiles(RemoteRoot(url, store=store), RUN_ID)
    assert files.read_json("run.json") == {}
    store.down = True
    with pytest.raises(RunFormatError, match=r"^access denied: check the credentials in the backend's environment "
                                             r"or config \(PermissionError\)$"):
        files.read_json("run.json")
    assert files.read_text("model/summary.txt") == ""
    store.down = False
    store.delete([f"{RUN_ID}/run.json"])  # listed, then gone
    with pytest.raises(FileNotFoundError):
        files.read_json("run.json")


def test_pngs_and_served_files_are_copied_once_per_version_into_the_cache(run_files):
    store = run_files.root.store
    path = run_files.png("model/graph.png")
    name = hashlib.sha256(f"{RUN_ID}/model/graph.png\0{etag(run_files.root.files(RUN_ID)['model/graph.png'])}"
                          .encode()).hexdigest()[:32]
    assert path == os.path.join(run_files.root.cache_dir, name + ".png")
    with open(path, "rb") as f:
        assert f.read() == PNG_SIGNATURE + b"rest"
    assert run_files.png("model/graph.png") == path
    assert run_files.png("model/fake.png") is None
    assert run_files.png("model/missing.png") is None
    assert store.calls == [("get", f"{RUN_ID}/model/graph.png"), ("get", f"{RUN_ID}/model/fake.png")]
    served = run_files.served("checkpoints/best.keras")
    assert served.endswith(".keras") and open(served, "rb").read() == b"PK"
    with pytest.raises(FileNotFoundError):
        run_files.served("checkpoints/missing.keras")
    for refused in ("", "/etc/passwd", "../other/run.json", "model/../../x", "model\\..\\..\\x"):
        with pytest.raises(PermissionError, match="only relative paths inside the run are served"):
            run_files.served(refused)
    assert run_files.served("model/graph.png") == path  # the copy the PNG was read from


def test_a_listed_file_the_store_refuses_is_not_served(url, tmp_path, monkeypatch):
    monkeypatch.setenv(remote_reader.CACHE_ENV, str(tmp_path / "cache"))
    store = OutageStore(url)
    store.put(f"{RUN_ID}/checkpoints/best.keras", b"PK")
    store.put(f"{RUN_ID}/model/graph.png", PNG_SIGNATURE)
    files = RemoteRunFiles(RemoteRoot(url, store=store), RUN_ID)
    files.root.snapshot()
    store.down = True
    with pytest.raises(FileNotFoundError, match=r"^'checkpoints/best.keras' could not be read: access denied: "):
        files.served("checkpoints/best.keras")
    assert files.png("model/graph.png") is None
    assert not os.path.exists(files.root.cache_dir)


# -- the readers: a stream's segments and its compacted object -----------------------------------------------------


def segment(store: ObjectStore, seq: int, data: bytes, stream: str = "batch") -> None:
    store.put(f"{RUN_ID}/segments/{stream}/{seq:08d}.jsonl", data)


def tail_of(store: ObjectStore, stream: str = "batch") -> SegmentTail:
    return SegmentTail(RemoteRoot(store.url, store=store), RUN_ID, stream)


def test_new_segments_are_read_once_in_order_and_a_gap_waits(url):
    store = RecordingStore(url)
    segment(store, 1, LINES_1)
    segment(store, 3, b'{"step": 4}\n')
    segment(store, 1, b"{}\n", stream="epoch")
    store.put(f"{RUN_ID}/segments/batch/notes.txt", b"x")
    tail = tail_of(store)
    assert tail.path == f"{url}/{RUN_ID}/batch.jsonl"
    chunk = tail.read()
    assert (chunk.data, chunk.more, chunk.problems, tail.offset, tail.next_seq) == (LINES_1, False, [], 24, 2)
    segment(store, 2, LINES_2)
    assert tail.read().data == b""  # the listing is a second old
    tail.root.snapshot(max_age=0)
    store.calls.clear()
    assert tail.read().data == LINES_2 + b'{"step": 4}\n'
    assert (tail.offset, tail.next_seq) == (48, 4)
    assert store.calls == [("get", f"{RUN_ID}/segments/batch/{name}.jsonl") for name in ("00000002", "00000003")]


def test_a_byte_budget_stops_between_segments_and_says_there_is_more(url):
    store = ObjectStore(url)
    for seq in (1, 2, 3):
        segment(store, seq, b'{"s": %d}\n' % seq)
    tail = tail_of(store)
    first = tail.read(max_bytes=9)
    assert (first.data, first.more) == (b'{"s": 1}\n', True)
    second = tail.read(max_bytes=10)
    assert (second.data, second.more) == (b'{"s": 2}\n{"s": 3}\n', False)
    assert tail.read(max_bytes=0).more is False
    fresh = tail_of(store)
    both = fresh.read(max_bytes=10)  # the budget counts every segment read: two of 9 bytes pass 10
    assert (both.data, both.more, fresh.next_seq) == (b'{"s": 1}\n{"s": 2}\n', True, 3)


def test_an_oversized_segment_is_not_read_and_the_stream_stops_there(url, monkeypatch):
    monkeypatch.setattr(remote_reader, "MAX_SEGMENT_BYTES", 12)
    store = RecordingStore(url)
    segment(store, 1, b'{"step": 1}\n')
    segment(store, 2, b'{"step": 20}\n')
    segment(store, 3, b'{"step": 3}\n')
    store.calls.clear()
    tail = tail_of(store)
    chunk = tail.read()
    assert chunk.data == b'{"step": 1}\n'
    assert chunk.problems == ["segments/batch/00000002.jsonl: 13 bytes, more than the 12 a segment may hold: not read"]
    assert store.calls == [("get", f"{RUN_ID}/segments/batch/00000001.jsonl")] and tail.next_seq == 2


def test_a_segment_deleted_after_the_listing_ends_the_read_until_the_next_listing(url):
    store = ObjectStore(url)
    segment(store, 1, LINES_1)
    segment(store, 2, LINES_2)
    tail = tail_of(store)
    tail.root.snapshot()
    store.delete([f"{RUN_ID}/segments/batch/00000002.jsonl"])
    assert tail.read().data == LINES_1 and tail.next_seq == 2


def compact(store: ObjectStore, streams: dict) -> None:
    store.put(f"{RUN_ID}/compacted.json", json.dumps({"streams": streams}).encode())


def test_a_compacted_stream_goes_on_from_its_byte_offset_with_one_ranged_get_then_its_later_segments(url):
    store = RecordingStore(url)
    segment(store, 1, LINES_1)
    tail = tail_of(store)
    assert tail.read().data == LINES_1
    store.put(f"{RUN_ID}/batch.jsonl", LINES_1 + LINES_2)
    compact(store, {"batch": {"file": "batch.jsonl", "segments": 2, "bytes": 36}})
    store.delete([f"{RUN_ID}/segments/batch/00000001.jsonl"])
    segment(store, 3, b'{"step": 4}\n')  # a resumed phase's first segment
    tail.root.snapshot(max_age=0)
    store.calls.clear()
    chunk = tail.read()
    assert (chunk.data, chunk.more, tail.offset, tail.next_seq) == (LINES_2, False, 36, 3)
    assert store.calls == [("get", f"{RUN_ID}/compacted.json"), ("get", f"{RUN_ID}/batch.jsonl[24:36]")]
    store.calls.clear()
    assert tail.read().data == b'{"step": 4}\n' and (tail.offset, tail.next_seq) == (48, 4)
    assert store.calls == [("get", f"{RUN_ID}/segments/batch/00000003.jsonl")]  # the manifest is not read again
    assert tail.read().data == b""


def test_a_compacted_stream_read_in_slices_ends_each_at_a_line(url):
    store = RecordingStore(url)
    store.put(f"{RUN_ID}/batch.jsonl", LINES_1 + LINES_2)
    compact(store, {"batch": {"file": "batch.jsonl", "segments": 2, "bytes": 36}})
    tail = tail_of(store)
    first = tail.read(max_bytes=20)
    assert (first.data, first.more, tail.offset, tail.next_seq) == (b'{"step": 1}\n', True, 12, 1)
    second = tail.read(max_bytes=24)
    assert (second.data, second.more, tail.offset, tail.next_seq) == (b'{"step": 2}\n{"step": 3}\n', False, 36, 3)
    assert ("get", f"{RUN_ID}/batch.jsonl[12:36]") in store.calls
    assert tail.read(max_bytes=24).data == b""
    wide = tail_of(store)
    assert wide.read(max_bytes=30).data == LINES_1 and wide.offset == 24  # up to the last line break in the slice


@pytest.mark.parametrize("manifest", [
    b"{not json", b"[1]", b'{"streams": [1]}', b'{"streams": {"batch": 1}}',
    b'{"streams": {"batch": {"file": "batch.jsonl", "segments": "2", "bytes": 36}}}',
    b'{"streams": {"batch": {"file": "batch.jsonl", "segments": 2, "bytes": 36.0}}}',
    b'{"streams": {"batch": {"file": "../other/batch.jsonl", "segments": 2, "bytes": 36}}}',
    b'{"streams": {"epoch": {"file": "epoch.jsonl", "segments": 2, "bytes": 36}}}',
    b'{"streams": {"batch": {"file": "batch.jsonl", "segments": 1, "bytes": 0}}}',  # nothing compacted
])
def test_a_malformed_compaction_manifest_is_ignored_and_the_segments_are_read(url, manifest):
    store = ObjectStore(url)
    store.put(f"{RUN_ID}/batch.jsonl", b'{"other": 1}\n' * 3)
    store.put(f"{RUN_ID}/compacted.json", manifest)
    segment(store, 1, LINES_1)
    tail = tail_of(store)
    assert tail.read().data == LINES_1


def test_a_manifest_deleted_after_the_listing_is_ignored(url):
    store = ObjectStore(url)
    compact(store, {"batch": {"file": "batch.jsonl", "segments": 1, "bytes": 24}})
    segment(store, 1, LINES_1)
    tail = tail_of(store)
    tail.root.snapshot()
    store.delete([f"{RUN_ID}/compacted.json"])
    assert tail.read().data == LINES_1


def test_a_changed_manifest_is_read_again(url):
    store = RecordingStore(url)
    compact(store, {})
    segment(store, 1, LINES_1)
    tail = tail_of(store)
    assert tail.read().data == LINES_1
    store.put(f"{RUN_ID}/batch.jsonl", LINES_1 + LINES_2)
    compact(store, {"batch": {"file": "batch.jsonl", "segments": 2, "bytes": 36}})  # another size: another version
    tail.root.snapshot(max_age=0)
    assert tail.read().data == LINES_2


def test_a_stream_in_a_folder_is_compacted_under_its_own_name(url):
    store = ObjectStore(url)
    store.put(f"{RUN_ID}/model/layers.jsonl", b'{"layer": "d"}\n')
    compact(store, {"layers": {"file": "model/layers.jsonl", "segments": 1, "bytes": 15}})
    assert tail_of(store, "layers").read().data == b'{"layer": "d"}\n'


# -- the readers: the watcher ----------------------------------------------------------------------------------------


def test_the_watcher_counts_changes_per_run_and_to_the_list_of_runs(url):
    store = ObjectStore(url)
    root = RemoteRoot(url, store=store)
    watcher = RemoteWatcher(root, poll_interval=3600)
    watcher.stop()  # polled by hand from here on
    assert watcher.polling is True and watcher.poll_interval == 3600
    assert (watcher.total, watcher.version(), watcher.version(RUN_ID)) == (0, 0, 0)
    store.put(f"{RUN_ID}/run.json", b"{}")
    root.snapshot(max_age=0)
    watcher.poll()
    assert (watcher.total, watcher.version(), watcher.version(RUN_ID)) == (1, 1, 1)
    assert watcher.changed_since(0) == {RUN_ID, ""} and watcher.wait(0, timeout=0) == 1
    watcher.poll()  # nothing new
    assert watcher.total == 1
    assert watcher.wait(1, timeout=0) == 1  # nothing after total 1: returns at its timeout with the same total
    segment(store, 1, LINES_1)
    root.snapshot(max_age=0)
    watcher.poll()
    assert (watcher.total, watcher.version(), watcher.version(RUN_ID)) == (2, 1, 2)
    assert watcher.changed_since(1) == {RUN_ID}
    store.put(f"{RUN_ID}/run.json", b'{"name": "x"}')  # replaced: another version of one object
    store.put("20260101-000000-second/run.json", b"{}")
    root.snapshot(max_age=0)
    watcher.poll()
    assert (watcher.total, watcher.version(), watcher.version(RUN_ID)) == (3, 2, 3)
    assert watcher.changed_since(2) == {RUN_ID, "20260101-000000-second", ""}
    store.delete([f"{RUN_ID}/run.json", f"{RUN_ID}/segments/batch/00000001.jsonl"])
    root.snapshot(max_age=0)
    watcher.poll()
    assert (watcher.total, watcher.version(), watcher.version(RUN_ID)) == (4, 3, 4)
    assert watcher.changed_since(3) == {RUN_ID, ""} and watcher.version("20260101-000000-second") == 1


def test_a_watcher_polls_every_second_by_default_from_a_daemon_thread(url):
    watcher = RemoteWatcher(RemoteRoot(url, store=ObjectStore(url)))
    try:
        assert watcher.poll_interval == 1.0
        # A daemon: a dashboard that forgets stop() still exits.
        assert (watcher._thread.name, watcher._thread.daemon) == ("kerascope-remote-watcher", True)
    finally:
        watcher.stop()


def test_a_poll_lists_again_only_when_the_listing_is_older_than_half_its_interval(url):
    root = RemoteRoot(url, store=ObjectStore(url))
    watcher = RemoteWatcher(root, poll_interval=100)
    watcher.stop()  # polled by hand from here on
    root.snapshot(max_age=0)
    listings = root.listings
    # The listing's age set directly (tens of seconds either side of the 50 s limit), not waited for.
    root._listed = time.monotonic() - 40
    watcher.poll()  # younger than 50 s: the dashboard's listing is shared, not repeated
    assert root.listings == listings
    root._listed = time.monotonic() - 60
    watcher.poll()
    assert root.listings == listings + 1


def test_the_watchers_thread_polls_until_stopped(url):
    store = ObjectStore(url)
    store.put(f"{RUN_ID}/run.json", b"{}")
    watcher = RemoteWatcher(RemoteRoot(url, store=store), poll_interval=0.01)
    try:
        assert watcher.wait(0, timeout=PATIENCE_S) == 1
        store.put(f"{RUN_ID}/status.json", b"{}")
        assert watcher.wait(1, timeout=PATIENCE_S) == 2
    finally:
        watcher.stop()
    assert not watcher._thread.is_alive()


def test_the_exit_drain_is_registered_once_with_threadings_exit_hooks(monkeypatch):
    monkeypatch.setattr(remote_writer, "_drain_registered", False)  # as in a process that has not sent anything yet
    hooks = threading._threading_atexits
    before = list(hooks)
    try:
        remote_writer._register_exit_drain()
        remote_writer._register_exit_drain()
        added = [getattr(hook, "func", hook) for hook in hooks if not any(hook is old for old in before)]
    finally:
        hooks[:] = before  # this process keeps the hooks it had
    # threading's hooks, not atexit's: they run before concurrent.futures shuts the pools the backends resolve in.
    assert added == [remote_writer._drain_at_exit]


def test_the_exit_drain_goes_on_past_a_spool_removed_meanwhile_and_names_a_pass_still_under_way(
        url, tmp_path, uploaders, monkeypatch, capsys):
    monkeypatch.setattr(remote_writer, "EXIT_WAIT_S", 0.0)
    removed_dir = spool_run(tmp_path / "a")
    removed = uploaders[removed_dir] = Uploader(ObjectStore(url), RUN_ID, removed_dir, 3600.0, print)
    assert removed.start() is True
    removed.finish()
    assert removed.wait(PATIENCE_S)
    shutil.rmtree(removed_dir)  # by hand, before the exit
    pending_id = "20260101-000000-pending-00000002"
    pending_dir = spool_run(tmp_path / "b", pending_id)
    # Never started: its last pass is as far from done as one still under way at exit.
    uploaders[pending_dir] = Uploader(ObjectStore(url), pending_id, pending_dir, 3600.0, print)
    remote_writer._drain_at_exit()
    assert capsys.readouterr().err == (f"kerascope: the run {url}/{pending_id} is not fully uploaded (still sending); "
                                       f"its records are kept in {pending_dir}\n")


def test_the_exit_drain_finishes_every_uploader_and_removes_only_the_spools_fully_sent(url, tmp_path, uploaders,
                                                                                       monkeypatch, capsys):
    monkeypatch.setattr(remote_writer, "EXIT_WAIT_S", 0.5)  # the blocked run is given up on after this
    sent_dir = spool_run(tmp_path / "a", **{"batch.jsonl": LINES_1})
    kept_dir = spool_run(tmp_path / "b", "20260101-000000-blocked-00000002", **{"batch.jsonl": LINES_1})
    block(url, "20260101-000000-blocked-00000002")
    failed = threading.Event()
    for spool_dir, run_id in ((sent_dir, RUN_ID), (kept_dir, "20260101-000000-blocked-00000002")):
        uploaders[spool_dir] = Uploader(ObjectStore(url), run_id, spool_dir, 3600.0,
                                        lambda message: failed.set())
        assert uploaders[spool_dir].start()
    assert failed.wait(PATIENCE_S)
    remote_writer._drain_at_exit()
    assert not os.path.exists(sent_dir) and objects(url)["batch.jsonl"] == LINES_1
    assert os.path.isfile(os.path.join(kept_dir, "batch.jsonl"))
    assert capsys.readouterr().err == (
        f"kerascope: the run {url}/20260101-000000-blocked-00000002 is not fully uploaded (FileExistsError: "
        f"/{url.removeprefix('memory://')}/20260101-000000-blocked-00000002); its records are kept in {kept_dir}\n")

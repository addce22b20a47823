"""RemoteRunWriter: a run written to an object store (`s3://...`, `gs://...`, `az://...`) in format version 2.

The training side is the local RunWriter, unchanged, writing into a spool directory on local disk (the in-memory
buffers reach it every 0.5 s, as for a local run). An `Uploader` thread ships what the spool gained every
`flush_interval` seconds (default 5 s): the new complete lines of each stream as one new immutable segment object,
and the whole files (run.json, status.json, model/, checkpoints/) that changed. No network call ever runs on the
training thread. When the store is unreachable, throttles or refuses, the uploader says so once (the writer's
`on_error`), retries with exponential backoff, and sends everything from the spool when the store is back: nothing
is lost while the local disk has room. Closing the writer compacts each stream into one object, so a finished run
opens with one read per stream.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from kerascope.monitor import format as fmt
from kerascope.monitor.storage import ObjectStore, StorageError, backoff, parse_segment, segment_name
from kerascope.monitor.writer import RunWriter

SPOOL_ENV = "KERASCOPE_SPOOL_DIR"
UPLOAD_STATE_FILE = ".upload-state.json"  # in the spool run directory: what was uploaded (survives a resume)
LOCK_FILE = ".upload.lock"  # flock-ed by the process whose uploader sends that spool
SPOOL_FLUSH_INTERVAL_S = 0.5  # buffers -> local spool, as for a local run
EXIT_WAIT_S = 60.0  # at interpreter exit, how long to wait for the last upload before leaving the spool on disk
MAX_RETRY_DELAY_S = 30.0  # the longest pause between two upload attempts while the store is unreachable


def default_spool_root(url: str) -> str:
    """`$KERASCOPE_SPOOL_DIR` or ~/.cache/kerascope/spool, one folder per runs root (named by a hash of its URL)."""
    base = os.environ.get(SPOOL_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "kerascope", "spool")
    return os.path.join(base, hashlib.sha256(url.encode("utf-8")).hexdigest()[:16])


class Uploader:
    """Ship one spooled run directory to its object-store prefix as format-version-2 objects, from its own thread.

    Args:
        store: the runs root.
        run_id: the run's id (its prefix under the root).
        spool_dir: the local run directory that RunWriter writes.
        interval: seconds between uploads.
        report: called with a message when uploads start failing and when they recover.

    Example:
    ```python
    uploader = Uploader(ObjectStore("s3://bucket/runs"), writer.run_id, writer.run_dir, 5.0, print)
    uploader.start()
    ...
    uploader.finish()      # after writer.close(): the last upload and the compaction, in the background
    uploader.wait(60)
    ```
    """

    def __init__(
        self, store: ObjectStore, run_id: str, spool_dir: str, interval: float, report: Callable[[str], None]
    ) -> None:
        self.store, self.run_id, self.spool_dir = store, run_id, spool_dir
        self.interval = interval
        self.report = report
        self.requests = 0  # objects written or deleted (PUT / DELETE): the cost of the run
        self.failures = 0
        self._checked = False
        self.last_error: str | None = None
        self._offsets: dict[str, int] = {}  # bytes of each spooled stream uploaded as segments
        self._seq: dict[str, int] = {}  # segments written per stream
        self._files: dict[str, list[int]] = {}  # whole file -> [mtime_ns, size] when uploaded
        self._compacted: dict[str, dict[str, int]] = {}
        self._load_state()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()  # the thread's exit against a reopen
        self._stopped = False
        self._lock_fd: int | None = None  # flock on the spool's LOCK_FILE while sending
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start sending (again, for a resumed run: one uploader per spool, so segment numbers never clash).

        Returns False, sending nothing, when another live process holds the spool (its uploader is running).
        """
        _register_exit_drain()
        with self._lock:
            if self._lock_fd is None:
                self._lock_fd = _CREATION_LOCKS.pop(self.spool_dir, None) or lock_spool(self.spool_dir)
                if self._lock_fd is None:
                    return False
            self._closing.clear()
            self._done.clear()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=f"kerascope-upload-{self.run_id}",
                                                daemon=True)
                self._thread.start()
            self._wake.set()
        return True

    def finish(self) -> None:
        """Ask for the last upload and the compaction; returns at once (the thread goes on until they succeed)."""
        self._closing.set()
        self._wake.set()

    def stop(self) -> None:
        """Give up: stop sending now and leave what was not sent in the spool (it is not removed at exit)."""
        with self._lock:
            _UPLOADERS.pop(self.spool_dir, None)
            self._closing.set()
            self._stopped = True
        self._wake.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the last upload after `finish()` succeeded; True when it did within `timeout`."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _loop(self) -> None:
        delay = 0.0  # the first upload (run.json, status.json) goes out at once
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopped:
                return
            closing = self._closing.is_set()
            try:
                self.sync(final=closing)
            except Exception as exc:  # StorageError, or anything else: the thread must not die
                self.failures += 1
                message = exc.args[0] if isinstance(exc, StorageError) and exc.args else repr(exc)
                if self.last_error is None:
                    self.report(
                        f"uploads to {self.store.run_url(self.run_id)} failed ({message}); records are kept in "
                        f"{self.spool_dir} and retried with backoff"
                    )
                self.last_error = message
                delay = backoff(self.failures, base=max(self.interval, 1.0), cap=MAX_RETRY_DELAY_S)
                continue
            if self.last_error is not None:
                self.report(f"uploads to {self.store.run_url(self.run_id)} resumed after {self.failures} failure(s)")
            self.failures, self.last_error = 0, None
            with self._lock:
                if closing and self._closing.is_set():  # not reopened by a later fit() meanwhile
                    os.close(self._lock_fd)  # before `done`: once wait() returns, another process may take the spool
                    self._lock_fd = None
                    # This thread stays alive a moment after the lock is released: a start() then must not take it
                    # for a running uploader (the reopened run would never be sent).
                    self._thread = None
                    self._done.set()
                    return
            delay = self.interval

    # -- one upload pass -------------------------------------------------------------------------------------------

    def sync(self, final: bool = False) -> None:
        """Upload what the spool gained since the last pass; with `final`, compact each stream too."""
        if not self._checked:
            # One request first: a missing bucket or refused credentials get a clear message (some S3 servers
            # create a bucket on the first PUT, so a mistyped name would otherwise go unnoticed).
            self.store.check()
            self._checked = True
        for stream, relpath in fmt.STREAM_FILES.items():
            self._upload_segment(stream, relpath)
        for relpath in self._whole_files():
            self._upload_file(relpath)
        if final:
            self._compact()
        self._upload_file(fmt.STATUS_FILE)  # last: a reader that sees `finished` finds every record before it
        self._save_state()

    def _upload_segment(self, stream: str, relpath: str) -> None:
        path = os.path.join(self.spool_dir, relpath)
        start = self._offsets.get(stream, 0)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
        except FileNotFoundError:
            return
        data = data[: data.rfind(b"\n") + 1]  # complete lines only: a torn tail goes with the next segment
        if not data:
            return
        seq = self._seq.get(stream, 0) + 1
        self._put(segment_name(stream, seq), data)
        self._seq[stream], self._offsets[stream] = seq, start + len(data)
        self._save_state()

    def _whole_files(self) -> list[str]:
        """Files replaced whole (run.json, model/, checkpoints/); streams and status.json are handled apart."""
        skip = {fmt.STATUS_FILE, UPLOAD_STATE_FILE, *fmt.STREAM_FILES.values()}
        found = []
        for folder, dirs, names in os.walk(self.spool_dir):
            dirs[:] = [name for name in dirs if not name.startswith(".")]
            for name in names:
                relpath = os.path.relpath(os.path.join(folder, name), self.spool_dir).replace(os.sep, "/")
                if not name.startswith(".") and relpath not in skip:
                    found.append(relpath)
        # run.json first: a run whose other files arrive before it would be listed as broken meanwhile.
        return sorted(found, key=lambda relpath: (relpath != fmt.RUN_FILE, relpath))

    def _upload_file(self, relpath: str) -> None:
        path = os.path.join(self.spool_dir, relpath)
        try:
            st = os.stat(path)
            if self._files.get(relpath) == [st.st_mtime_ns, st.st_size]:
                return
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        self._put(relpath, data)
        self._files[relpath] = [st.st_mtime_ns, st.st_size]

    def _compact(self) -> None:
        """Each stream as one object (its version-1 name), then COMPACTED_FILE, then the segments it replaces."""
        compacted = {}
        for stream, relpath in fmt.STREAM_FILES.items():
            size = self._offsets.get(stream, 0)
            if not size:
                continue
            entry = {"file": relpath, "segments": self._seq[stream], "bytes": size}
            if self._compacted.get(stream) != entry:
                with open(os.path.join(self.spool_dir, relpath), "rb") as f:
                    self._put(relpath, f.read(size))
            compacted[stream] = entry
        if compacted == self._compacted:
            return
        self._put(fmt.COMPACTED_FILE, json.dumps({"streams": compacted}, indent=1).encode("utf-8"))
        self._compacted = compacted
        self._save_state()
        try:
            listed = self.store.listing(f"{self.run_id}/{fmt.SEGMENTS_DIR}")
        except FileNotFoundError:
            listed = {}
        replaced = []
        for key in listed:
            parsed = parse_segment(key[len(self.run_id) + 1 :])
            if parsed is not None and parsed[1] <= compacted.get(parsed[0], {}).get("segments", 0):
                replaced.append(key)
        if replaced:
            self.requests += 1
            self.store.delete(replaced)

    def _put(self, relpath: str, data: bytes) -> None:
        self.store.put(f"{self.run_id}/{relpath}", data)
        self.requests += 1

    # -- state kept in the spool, so that a resumed writer continues the segment numbers ---------------------------

    def _load_state(self) -> None:
        try:
            with open(os.path.join(self.spool_dir, UPLOAD_STATE_FILE), encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        if not isinstance(state, dict):  # not ours: start over (a re-upload), rather than fail the writer's start
            return
        self._offsets = dict(state.get("offsets", {}))
        self._seq = dict(state.get("seq", {}))
        self._files = dict(state.get("files", {}))
        self._compacted = dict(state.get("compacted", {}))

    def _save_state(self) -> None:
        state = {"offsets": self._offsets, "seq": self._seq, "files": self._files, "compacted": self._compacted}
        try:
            fmt.write_json_atomic(os.path.join(self.spool_dir, UPLOAD_STATE_FILE), state)
        except OSError:
            pass  # losing it costs a re-upload of whole files on resume, never data


def lock_spool(spool_dir: str) -> int | None:
    """An exclusive flock on the spool's LOCK_FILE (a descriptor to close), or None when another process holds it.

    The lock dies with its process, so a spool left by a crash (or by an exit while the store was down) is free.
    """
    fd = os.open(os.path.join(spool_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def recover_spools(store: ObjectStore, spool_root: str, interval: float, report: Callable[[str], None]) -> list[str]:
    """Send what earlier processes left in the spools of this root (killed, or exited while the store was down).

    Each such run gets its own uploader, which finishes it (the last upload and the compaction; its status stays as
    its process left it, so a killed run reads as stale). Returns the run ids taken over.
    """
    taken = []
    try:
        names = sorted(os.listdir(spool_root))
    except OSError:
        return taken
    for run_id in names:
        spool_dir = os.path.join(spool_root, run_id)
        if spool_dir in _UPLOADERS or not os.path.isfile(os.path.join(spool_dir, fmt.RUN_FILE)):
            continue
        uploader = Uploader(store, run_id, spool_dir, interval, report)
        if uploader.start():
            _UPLOADERS[spool_dir] = uploader
            uploader.finish()
            taken.append(run_id)
    return taken


class RemoteRunWriter(RunWriter):
    """A RunWriter whose run lives on an object store: local spool, background uploads, compaction at close.

    Same API as RunWriter. `run_dir` is the local spool directory (what the training side writes into, checkpoints
    included); `url` is where the run is read from (`s3://bucket/runs/<run id>`).

    Args:
        url: the runs root on the object store (`s3://bucket/prefix`).
        name: the run's display name.
        meta: initial content of run.json.
        flush_interval: seconds between uploads (default 5 s: about 2,200 requests per hour for a run that logs
            every batch; docs/run-format.md).
        on_error: called with a message when uploads fail (once until they recover) and for local I/O errors.
        store: an already-open ObjectStore for `url`.
        spool_dir: the local folder for the spool (default `$KERASCOPE_SPOOL_DIR` or ~/.cache/kerascope/spool/...).
            Runs that earlier processes left unsent in it (killed, or exited while the store was down) are sent
            too (`recovered` lists their ids).

    Example:
    ```python
    writer = RemoteRunWriter("s3://bucket/runs", name="by hand")
    writer.log("epoch", {"epoch": 0, "step": 10, "time": time.time(), "loss": 0.5})
    writer.close()
    writer.wait_uploaded(30)
    ```
    """

    ID_HEX_BYTES = 4  # several machines write into one prefix: 2**32 suffixes per second and name

    def __init__(
        self,
        url: str,
        name: str = "run",
        *,
        meta: dict[str, Any] | None = None,
        flush_interval: float = fmt.REMOTE_FLUSH_INTERVAL_S,
        on_error: Callable[[str], None] | None = None,
        store: ObjectStore | None = None,
        spool_dir: str | None = None,
    ) -> None:
        self.store = store or ObjectStore(url)
        spool_root = spool_dir or default_spool_root(self.store.url)
        meta = {**(meta or {}), "format_version": fmt.OBJECT_FORMAT_VERSION}
        super().__init__(spool_root, name, meta=meta, flush_interval=SPOOL_FLUSH_INTERVAL_S, on_error=on_error)
        self._attach(flush_interval)
        # Runs an earlier process left unsent here (killed, or the store was down when it exited) go out now.
        self.recovered = recover_spools(self.store, spool_root, flush_interval, self._report)

    @classmethod
    def resume_remote(
        cls,
        url: str,
        spool_dir: str,
        *,
        flush_interval: float = fmt.REMOTE_FLUSH_INTERVAL_S,
        on_error: Callable[[str], None] | None = None,
    ) -> RemoteRunWriter:
        """Reopen a run this process wrote to `url` (its runs root) from its spool directory (a later fit())."""
        writer = cls.resume(spool_dir, flush_interval=SPOOL_FLUSH_INTERVAL_S, on_error=on_error)
        uploader = _UPLOADERS.get(writer.run_dir)
        writer.store = uploader.store if uploader is not None else ObjectStore(url)
        writer._attach(flush_interval)
        return writer

    @classmethod
    def _create_dir(cls, logdir: str, name: str) -> tuple[str, str]:
        # Locked before run.json exists: `recover_spools` in another process takes only spools with a run.json
        # whose lock it can get, so it never takes a run that is being created.
        run_id, path = super()._create_dir(logdir, name)
        fd = lock_spool(path)
        if fd is not None:
            _CREATION_LOCKS[path] = fd
        return run_id, path

    def _attach(self, flush_interval: float) -> None:
        self.url = self.store.run_url(self.run_id)
        uploader = _UPLOADERS.get(self.run_dir)
        if uploader is None:
            uploader = _UPLOADERS[self.run_dir] = Uploader(
                self.store, self.run_id, self.run_dir, flush_interval, self._report
            )
        uploader.report, uploader.interval = self._report, flush_interval
        self.uploader = uploader
        uploader.start()

    def close(self, status: str = fmt.FINISHED, reason: str | None = None) -> None:
        """Flush to the spool and start the last upload and the compaction (in the background: never waits on the
        network). Safe to call twice."""
        if self._closed:
            return
        super().close(status, reason)
        self.uploader.finish()

    def wait_uploaded(self, timeout: float | None = None) -> bool:
        """Block until the closed run is fully uploaded and compacted; True when it is."""
        return self.uploader.wait(timeout)


# Every uploader of this process, by spool directory. At interpreter exit the unfinished ones get EXIT_WAIT_S seconds
# in total; the spools of fully uploaded runs are then removed, the others stay on disk (the message says where) for
# the next writer to the same root on this machine to send (`recover_spools`).
_UPLOADERS: dict[str, Uploader] = {}


_CREATION_LOCKS: dict[str, int] = {}  # spool directory -> its lock, from creation until its uploader starts
_drain_registered = False


def _register_exit_drain() -> None:
    """Have the last uploads run at interpreter exit, while the network stack still works.

    asyncio (under s3fs, gcsfs, adlfs) resolves names in a thread pool, and concurrent.futures shuts its pools down
    from a threading-exit hook, before `atexit` handlers run: an upload from an atexit handler fails with "cannot
    schedule new futures after shutdown". Threading-exit hooks run in reverse order of registration, so this one,
    registered after that module's, runs first.
    """
    global _drain_registered
    if _drain_registered:
        return
    _drain_registered = True
    import concurrent.futures.thread  # noqa: F401  (registers its hook now, before ours)

    threading._register_atexit(_drain_at_exit)


def _drain_at_exit() -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    for uploader in list(_UPLOADERS.values()):
        uploader.finish()
    for uploader in list(_UPLOADERS.values()):
        if uploader.wait(max(deadline - time.monotonic(), 0.0)):
            shutil.rmtree(uploader.spool_dir, ignore_errors=True)
        else:
            print(
                f"kerascope: the run {uploader.store.run_url(uploader.run_id)} is not fully uploaded "
                f"({uploader.last_error or 'still sending'}); its records are kept in {uploader.spool_dir}",
                file=sys.stderr,
                flush=True,
            )

"""RunWriter: a small writer API over the plain files of one run directory.

The training thread only appends dicts to in-memory buffers; a daemon thread turns them into JSON lines and appends
them every `flush_interval` seconds, and rewrites status.json (the heartbeat). Every I/O error is caught and handed
to `on_error` so that monitoring can never take training down.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from kerascope.monitor import format as fmt
from kerascope.monitor.summary import SummaryBuilder, encode_summary


class RunWriter:
    """Create `logdir/<run id>/` and write records into it.

    Args:
        logdir: the runs folder; created when missing.
        name: the run's display name (any text); the directory name is a slug of it plus time and a random suffix.
        meta: initial content of run.json (hparams, tags, versions...).
        flush_interval: seconds between background flushes; a crash loses at most this much data.
        on_error: called with a message for each I/O failure (from any thread). Defaults to ignoring it.

    Example:
    ```python
    writer = RunWriter("runs", name="by hand", meta={"hparams": {"lr": 0.1}})
    writer.log("epoch", {"epoch": 0, "step": 10, "time": time.time(), "loss": 0.5})
    writer.event("note", "hello")
    writer.close()
    ```
    """

    ID_HEX_BYTES = 2  # random bytes that end a run id (after its time and name)

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        name: str = "run",
        *,
        meta: dict[str, Any] | None = None,
        flush_interval: float = 0.5,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._init_state(name, flush_interval, on_error)
        os.makedirs(logdir, exist_ok=True)
        self.run_id, self.run_dir = self._create_dir(os.fspath(logdir), name)
        os.makedirs(os.path.join(self.run_dir, fmt.MODEL_DIR), exist_ok=True)
        now = time.time()
        self.meta: dict[str, Any] = {
            "format_version": fmt.LOCAL_FORMAT_VERSION,
            "id": self.run_id,
            "name": name,
            "created": now,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **(meta or {}),
        }
        self.status: dict[str, Any] = {
            "status": fmt.RUNNING,
            "started": now,
            "heartbeat": now,
            "heartbeat_interval": fmt.HEARTBEAT_INTERVAL_S,
        }
        self._start()

    @classmethod
    def resume(
        cls,
        run_dir: str | os.PathLike[str],
        *,
        flush_interval: float = 0.5,
        on_error: Callable[[str], None] | None = None,
    ) -> RunWriter:
        """Reopen an existing run directory to append to it (a later `fit()` call of the same run).

        run.json and status.json are kept (status goes back to `running`, `ended` and `reason` are dropped); streams
        whose last line was torn by a crash get a line break first, so that fragment stays one malformed line.

        Example:
        ```python
        writer = RunWriter.resume(first_writer.run_dir)
        writer.log("epoch", {"epoch": 5, "step": 60, "time": time.time(), "loss": 0.3})
        writer.close()
        ```
        """
        run_dir = os.fspath(run_dir)
        with open(os.path.join(run_dir, fmt.RUN_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        try:
            with open(os.path.join(run_dir, fmt.STATUS_FILE), encoding="utf-8") as f:
                status = json.load(f)
        except (OSError, ValueError):
            status = {}
        writer = cls.__new__(cls)
        writer._init_state(str(meta.get("name", "run")), flush_interval, on_error)
        writer.run_dir, writer.run_id = run_dir, os.path.basename(os.path.normpath(run_dir))
        writer.meta = meta
        status = status if isinstance(status, dict) else {}
        for stale_field in ("ended", "reason"):
            status.pop(stale_field, None)
        writer.status = {"started": meta.get("created", time.time()), **status, "status": fmt.RUNNING}
        writer.status["heartbeat_interval"] = fmt.HEARTBEAT_INTERVAL_S
        for stream, relpath in fmt.STREAM_FILES.items():
            path = os.path.join(run_dir, relpath)
            if not _ends_with_newline(path):
                writer._torn.add(stream)
            writer._resumed_sizes[stream] = _size(path)
        writer._summary_from_disk()  # the summary goes on from what the earlier phases recorded
        writer._start(write_meta=False)  # status says `running` before anything else of the new phase is written
        return writer

    def _init_state(self, name: str, flush_interval: float, on_error: Callable[[str], None] | None) -> None:
        self.name = name
        self.flush_interval = flush_interval
        self.on_error = on_error or (lambda message: None)
        self.errors: list[str] = []
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._buffer_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._torn: set[str] = set()
        self._resumed_sizes: dict[str, int] = {}  # each stream's length when `resume` reopened it (for `rewind`)
        self._stop = threading.Event()
        self._closed = False
        self._last_heartbeat = 0.0
        self._summary = SummaryBuilder()
        self._summary_due = True  # summary.json is rewritten at the next flush

    def _start(self, write_meta: bool = True) -> None:
        # The first files are written synchronously so that a failure here (unwritable logdir) raises to the caller,
        # which decides whether monitoring goes on without a run directory.
        if write_meta:
            fmt.write_json_atomic(os.path.join(self.run_dir, fmt.RUN_FILE), self.meta)
        self._write_status()
        self._update_summary({})
        self._thread = threading.Thread(target=self._flush_loop, name=f"kerascope-writer-{self.run_id}", daemon=True)
        self._thread.start()

    @classmethod
    def _create_dir(cls, logdir: str, name: str) -> tuple[str, str]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = fmt.slugify(name)
        for _ in range(100):
            run_id = f"{stamp}-{slug}-{secrets.token_hex(cls.ID_HEX_BYTES)}"
            path = os.path.join(logdir, run_id)
            try:
                os.mkdir(path)
                return run_id, path
            except FileExistsError:
                continue
        raise FileExistsError(f"could not create a unique run directory under {logdir!r}")

    # -- recording (cheap, any thread) ---------------------------------------------------------------------------

    def log(self, stream: str, record: dict[str, Any]) -> None:
        """Buffer one record for an append-only stream (a key of format.STREAM_FILES)."""
        with self._buffer_lock:
            self._buffers.setdefault(stream, []).append(record)

    def event(
        self,
        kind: str,
        message: str,
        *,
        step: int | None = None,
        epoch: int | None = None,
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Buffer one events.jsonl record: the only place event records are built.

        Args:
            kind: one of the event kinds of monitor.format (EVENT_PHASE, ...) or a kind of your own.
            message: one line for people.
            step: the global step it happened at; epoch: the 0-based epoch.
            data: the event's data; `fields` are added to it (`data` holds names that clash with the arguments, as
                early_stop's `epoch`).
        """
        record: dict[str, Any] = {"time": time.time(), "step": step, "epoch": epoch, "kind": kind, "message": message}
        if data or fields:
            record["data"] = {**(data or {}), **fields}
        self.log("events", record)

    def update_status(self, **fields: Any) -> None:
        """Merge fields into status.json; written with the next heartbeat."""
        self.status.update(fields)
        self._summary_due = True

    def update_meta(self, **fields: Any) -> None:
        """Merge fields into run.json and rewrite it now (atomically)."""
        self.meta.update(fields)
        self._summary_due = True
        self._guard("run.json", fmt.write_json_atomic, os.path.join(self.run_dir, fmt.RUN_FILE), self.meta)

    def write_file(self, relpath: str, data: bytes | str) -> None:
        """Write a whole file inside the run directory atomically (summary, graph, checkpoint index)."""
        path = os.path.join(self.run_dir, relpath)
        payload = data.encode("utf-8") if isinstance(data, str) else data

        def write() -> None:
            self._make_parent(path)
            fmt.write_bytes_atomic(path, payload)

        self._guard(relpath, write)

    def write_json(self, relpath: str, payload: Any) -> None:
        """Write a JSON file inside the run directory atomically (creating its folder, like `write_file`)."""
        path = os.path.join(self.run_dir, relpath)

        def write() -> None:
            self._make_parent(path)
            fmt.write_json_atomic(path, payload)

        self._guard(relpath, write)

    def rewind(self, keep: Callable[[str, dict[str, Any]], bool]) -> dict[str, int]:
        """Drop the records that were on disk when `resume` reopened the run and that `keep(stream, record)` refuses
        (a restarted training supersedes them). Returns the number of records dropped per stream.

        A stream that loses records is copied without them to a temporary file that is renamed over it: readers see
        a new file and read it again from the start (an append-only reader never sees a file shrink in place).
        Records appended since `resume` are kept as they are; torn or malformed lines of the old part are dropped.
        Call it once, before the old part is needed again.

        Example:
        ```python
        writer = RunWriter.resume(run_dir)
        writer.rewind(lambda stream, record: record.get("epoch") is None or record["epoch"] < 3)
        ```
        """
        dropped: dict[str, int] = {}
        with self._io_lock:
            sizes, self._resumed_sizes = self._resumed_sizes, {}
            for stream, size in sizes.items():
                if size:
                    try:
                        count = self._rewrite(stream, size, keep)
                    except OSError as exc:
                        self._report(f"could not rewind {fmt.STREAM_FILES[stream]}: {exc}")
                        continue
                    if count:
                        dropped[stream] = count
            if "epoch" in dropped or "events" in dropped:
                self._summary_from_disk()  # summary.json must not keep what the dropped records said
        return dropped

    def _summary_from_disk(self) -> None:
        """Start the summary over from what epoch.jsonl and events.jsonl hold now; rewritten at the next flush."""
        self._summary = SummaryBuilder()
        for stream in ("epoch", "events"):
            try:
                with open(os.path.join(self.run_dir, fmt.STREAM_FILES[stream]), "rb") as f:
                    self._summary.add_lines(stream, f.read())
            except OSError:
                pass
        self._summary_due = True

    def _rewrite(self, stream: str, size: int, keep: Callable[[str, dict[str, Any]], bool]) -> int:
        """`rewind` of one stream whose first `size` bytes are the old part (caller holds the I/O lock)."""
        path = os.path.join(self.run_dir, fmt.STREAM_FILES[stream])
        kept, refused = [], 0
        with open(path, "rb") as f:
            old = f.read(size)
            for line in old.split(b"\n"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a blank line or a torn fragment: nothing to keep
                if isinstance(record, dict) and not keep(stream, record):
                    refused += 1
                else:
                    kept.append(line + b"\n")
            if not refused:
                return 0
            new = f.read()
        fd = self._fds.pop(stream, None)
        if fd is not None:
            os.close(fd)
        fmt.write_bytes_atomic(path, b"".join(kept) + new)
        if not new:
            self._torn.discard(stream)  # the torn fragment is gone with the old part
        return refused

    def _make_parent(self, path: str) -> None:
        # Only below the run directory: a run directory deleted mid-run (the user cleaned up) must stay deleted,
        # not come back holding half a run.
        if not os.path.isdir(self.run_dir):
            raise FileNotFoundError(f"the run directory {self.run_dir} was removed")
        os.makedirs(os.path.dirname(path), exist_ok=True)

    # -- flushing --------------------------------------------------------------------------------------------------

    def flush(self, *, heartbeat: bool = True) -> None:
        """Write every buffered record now, and the status (heartbeat) unless told not to."""
        with self._buffer_lock:
            pending, self._buffers = self._buffers, {}
        with self._io_lock:
            for stream, records in pending.items():
                if records:
                    self._append(stream, records)
            if heartbeat:
                self._write_status()
            self._update_summary(pending)

    def close(self, status: str = fmt.FINISHED, reason: str | None = None) -> None:
        """Flush everything, set the final status and stop the background thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=5)
        self.status.update(status=status, ended=time.time())
        if reason:
            self.status["reason"] = reason
        self._summary_due = True
        self.flush()
        with self._io_lock:
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds.clear()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                # status.json is rewritten only when the heartbeat is due, to keep file events (and dashboard
                # refreshes) driven by new records rather than by the clock.
                due = time.time() - self._last_heartbeat >= fmt.HEARTBEAT_INTERVAL_S
                self.flush(heartbeat=due)
            except Exception as exc:  # never let the thread die: the heartbeat is what tells "running" from "stale"
                self._report(f"flush failed: {exc!r}")

    def _append(self, stream: str, records: list[dict[str, Any]]) -> None:
        relpath = fmt.STREAM_FILES.get(stream, f"{fmt.slugify(stream)}.jsonl")
        lines = []
        for record in records:
            try:
                lines.append(fmt.dumps_line(record))
            except (TypeError, ValueError):
                lines.append(fmt.dumps_line(fmt.to_jsonable(record)))
        data = "".join(lines).encode("utf-8")
        if stream in self._torn:
            # The previous write stopped mid-line: end that fragment so it stays one malformed line of its own.
            data = b"\n" + data
        try:
            fd = self._fds.get(stream)
            if fd is None:
                fd = os.open(os.path.join(self.run_dir, relpath), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._fds[stream] = fd
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
                if view:
                    self._torn.add(stream)
            self._torn.discard(stream)
        except OSError as exc:
            self._report(f"could not append to {relpath}: {exc}")

    def _update_summary(self, pending: dict[str, list[dict[str, Any]]]) -> None:
        """Fold the flushed epoch and event records into summary.json and replace it when anything it shows moved."""
        for record in pending.get("epoch", ()):
            self._summary.add_epoch(record)
        for record in pending.get("events", ()):
            self._summary.add_event(record)
        if not (self._summary_due or pending.get("epoch") or pending.get("events")):
            return
        self._summary_due = False
        sources = {}
        for relpath in (fmt.EPOCH_FILE, fmt.EVENTS_FILE):
            try:
                sources[relpath] = os.stat(os.path.join(self.run_dir, relpath)).st_size
            except OSError:
                sources[relpath] = 0
        summary = self._summary.summary(self.meta, dict(self.status), sources)
        self._guard(fmt.RUN_SUMMARY_FILE, fmt.write_bytes_atomic, os.path.join(self.run_dir, fmt.RUN_SUMMARY_FILE),
                    encode_summary(summary))

    def _write_status(self) -> None:
        self._last_heartbeat = self.status["heartbeat"] = time.time()
        self._guard("status.json", fmt.write_json_atomic, os.path.join(self.run_dir, fmt.STATUS_FILE), self.status)

    def _guard(self, what: str, func: Callable[..., Any], *args: Any) -> None:
        try:
            func(*args)
        except OSError as exc:
            self._report(f"could not write {what}: {exc}")

    def _report(self, message: str) -> None:
        if len(self.errors) < 100:
            self.errors.append(message)
        try:
            self.on_error(message)
        except Exception:
            pass


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _ends_with_newline(path: str) -> bool:
    """True for a missing or empty file, or one whose last byte is a line break."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True

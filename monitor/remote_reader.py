"""Reading runs from an object store (format version 2, docs/run-format.md "Runs on object storage").

`RemoteRoot` lists the whole runs root with one recursive LIST (paged by the store) at most once per
`LISTING_MAX_AGE_S`, shared by every run, the run list and the watcher. A run's streams are read by `SegmentTail`,
which fetches only segments it has not read, or, once a stream is compacted, the rest of the compacted object with
one ranged GET; the `Run` keeps what it parsed, so no object is fetched twice by one process. Files a user downloads
or the dashboard shows by path (the model graph PNG, checkpoints) are copied into a local cache first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Any

from kerascope.monitor import format as fmt
from kerascope.monitor.changes import ChangeLog
from kerascope.monitor.run_files import MAX_JSON_FILE_BYTES, MAX_TEXT_FILE_BYTES, PNG_SIGNATURE, RunFormatError
from kerascope.monitor.storage import ObjectStore, StorageError, parse_segment
from kerascope.monitor.tail import Chunk

LISTING_MAX_AGE_S = 1.0  # a listing younger than this is reused
CACHE_ENV = "KERASCOPE_CACHE_DIR"
MAX_SEGMENT_BYTES = 64 * 1024 * 1024  # a segment holds one upload interval of records: a few MB at most


def default_cache_dir(url: str) -> str:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "kerascope", "objects")
    return os.path.join(base, hashlib.sha256(url.encode("utf-8")).hexdigest()[:16])


class RemoteRoot:
    """A runs root on an object store, listed as a whole and shared by every run read from it.

    Args:
        url: the runs root (`s3://bucket/runs`).
        store: an already-open ObjectStore for it.

    Example:
    ```python
    root = RemoteRoot("s3://bucket/runs")
    print(root.run_ids())
    ```
    """

    def __init__(self, url: str, store: ObjectStore | None = None) -> None:
        self.store = store or ObjectStore(url)
        self.url = self.store.url
        self.cache_dir = default_cache_dir(self.url)
        self.error: str | None = None  # why the last listing failed, in words
        self._runs: dict[str, dict[str, dict[str, Any]]] = {}
        self._listed = -float("inf")
        self._lock = threading.Lock()
        self.listings = 0  # LIST calls made (each may be several pages)

    def snapshot(self, max_age: float = LISTING_MAX_AGE_S) -> dict[str, dict[str, dict[str, Any]]]:
        """{run id: {path in the run: object info}} of the whole root, re-listed when older than `max_age`."""
        with self._lock:
            if time.monotonic() - self._listed < max_age:
                return self._runs
            try:
                listed = self.store.listing("")
                self.error = None
            except FileNotFoundError:
                listed = {}
            except StorageError as exc:
                # The last good listing stays in use: a dashboard keeps showing its runs through an outage.
                self.error = str(exc)
                self._listed = time.monotonic()
                return self._runs
            self.listings += 1
            runs: dict[str, dict[str, dict[str, Any]]] = {}
            for relpath, info in listed.items():
                run_id, _, inner = relpath.partition("/")
                if inner and not run_id.startswith("."):
                    runs.setdefault(run_id, {})[inner] = info
            self._runs, self._listed = runs, time.monotonic()
            return runs

    def run_ids(self) -> list[str]:
        """Ids of the runs under the root: prefixes holding a run.json or a status.json."""
        runs = self.snapshot()
        return [run_id for run_id, files in runs.items() if fmt.RUN_FILE in files or fmt.STATUS_FILE in files]

    def files(self, run_id: str) -> dict[str, dict[str, Any]]:
        return self.snapshot().get(run_id, {})


def etag(info: dict[str, Any]) -> str:
    """An object's version as the listing says (ETag, else size and time)."""
    tag = info.get("ETag") or info.get("etag") or info.get("md5")
    if tag:
        return str(tag).strip('"')
    return f"{info.get('size')}-{info.get('LastModified') or info.get('mtime') or info.get('last_modified')}"


class RemoteRunFiles:
    """The whole files of one run on an object store, with RunFiles' interface (read_json, read_text, png, served,
    stamp). Keys are built under the run's prefix only: nothing outside the runs root can be named.

    Args:
        root: the runs root.
        run_id: the run.
    """

    def __init__(self, root: RemoteRoot, run_id: str) -> None:
        self.root, self.run_id = root, run_id
        self.run_dir = root.store.run_url(run_id)

    def path(self, relpath: str) -> str:
        return f"{self.run_dir}/{relpath}"

    def _info(self, relpath: str) -> dict[str, Any]:
        info = self.root.files(self.run_id).get(relpath)
        if info is None:
            raise FileNotFoundError(relpath)
        return info

    def _get(self, relpath: str, limit: int) -> bytes:
        info = self._info(relpath)
        size = info.get("size") or 0
        if size > limit:
            raise RunFormatError(f"{os.path.basename(relpath)} is {size:,} bytes, more than the {limit:,} allowed")
        try:
            return self.root.store.get(f"{self.run_id}/{relpath}")
        except StorageError as exc:
            raise RunFormatError(str(exc)) from None

    def stamp(self, relpath: str) -> tuple[str, int]:
        info = self._info(relpath)
        return etag(info), int(info.get("size") or 0)

    def read_json(self, relpath: str) -> Any:
        data = self._get(relpath, MAX_JSON_FILE_BYTES)
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise RunFormatError(f"{os.path.basename(relpath)} is not valid JSON ({str(exc)[:120]})") from None

    def read_text(self, relpath: str) -> str:
        try:
            return self._get(relpath, MAX_TEXT_FILE_BYTES).decode("utf-8", errors="replace")
        except (OSError, RunFormatError):
            return ""

    def png(self, relpath: str) -> str | None:
        try:
            path = self._local_copy(relpath)
        except (OSError, RunFormatError):
            return None
        with open(path, "rb") as f:
            return path if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE else None

    def served(self, relpath: str) -> str:
        """A local copy of a file of the run (a checkpoint to download); refuses `..` and absolute paths."""
        if not relpath or relpath.startswith("/") or ".." in relpath.replace("\\", "/").split("/"):
            raise PermissionError(f"refused path {relpath!r}: only relative paths inside the run are served")
        try:
            return self._local_copy(relpath)
        except RunFormatError as exc:
            raise FileNotFoundError(f"{relpath!r} could not be read: {exc}") from None

    def _local_copy(self, relpath: str) -> str:
        """The object, copied once per version into the local cache (named by its ETag)."""
        info = self._info(relpath)
        name = hashlib.sha256(f"{self.run_id}/{relpath}\0{etag(info)}".encode()).hexdigest()[:32]
        path = os.path.join(self.root.cache_dir, name + os.path.splitext(relpath)[1])
        if os.path.isfile(path):
            return path
        try:
            data = self.root.store.get(f"{self.run_id}/{relpath}")
        except StorageError as exc:
            raise RunFormatError(str(exc)) from None
        os.makedirs(self.root.cache_dir, exist_ok=True)
        fmt.write_bytes_atomic(path, data)
        return path


class SegmentTail:
    """Incremental reader of one stream of a run on an object store (JsonlTail's `read` interface).

    It keeps how many segments and bytes it has read. A compacted stream (COMPACTED_FILE) is the byte-exact
    concatenation of its first N segments, so the reader continues it from its byte offset with one ranged GET.

    Args:
        root: the runs root.
        run_id: the run.
        stream: a key of format.STREAM_FILES.

    Example:
    ```python
    tail = SegmentTail(RemoteRoot("s3://bucket/runs"), "20260101-120000-mlp-1a2b3c4d", "batch")
    lines = tail.read().data  # the complete JSONL lines not read before
    ```
    """

    def __init__(self, root: RemoteRoot, run_id: str, stream: str) -> None:
        self.root, self.run_id, self.stream = root, run_id, stream
        self.path = f"{root.store.run_url(run_id)}/{fmt.STREAM_FILES[stream]}"
        self.offset = 0  # bytes of the stream read
        self.next_seq = 1  # the first segment not read
        self._compacted_tag: str | None = None
        self._compacted: dict[str, Any] = {}

    def read(self, max_bytes: int | None = None) -> Chunk:
        chunk = Chunk()
        files = self.root.files(self.run_id)
        pieces: list[bytes] = []
        budget = max_bytes if max_bytes is not None else float("inf")
        entry = self._compacted_entry(files)
        store = self.root.store
        if entry is not None and entry["segments"] >= self.next_seq and entry["bytes"] > self.offset:
            end = min(entry["bytes"], self.offset + int(budget)) if max_bytes is not None else entry["bytes"]
            data = store.get(f"{self.run_id}/{entry['file']}", start=self.offset, end=end)
            if end < entry["bytes"]:
                data = data[: data.rfind(b"\n") + 1]
                chunk.more = True
            else:
                self.next_seq = entry["segments"] + 1
            self.offset += len(data)
            chunk.data = data
            return chunk
        segments = {}
        for relpath in files:
            parsed = parse_segment(relpath)
            if parsed is not None and parsed[0] == self.stream and parsed[1] >= self.next_seq:
                segments[parsed[1]] = relpath
        read = 0
        while self.next_seq in segments:
            if read >= budget:
                chunk.more = True
                break
            size = files[segments[self.next_seq]].get("size") or 0
            if size > MAX_SEGMENT_BYTES:  # no writer of ours makes one: not read into memory, and the stream stops
                chunk.problems.append(f"{segments[self.next_seq]}: {size:,} bytes, more than the "
                                      f"{MAX_SEGMENT_BYTES:,} a segment may hold: not read")
                break
            try:
                data = store.get(f"{self.run_id}/{segments[self.next_seq]}")
            except FileNotFoundError:
                break  # compacted meanwhile: the next listing shows the compacted object
            pieces.append(data)
            read += len(data)
            self.offset += len(data)
            self.next_seq += 1
        chunk.data = b"".join(pieces)
        return chunk

    def _compacted_entry(self, files: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        info = files.get(fmt.COMPACTED_FILE)
        if info is None:
            return None
        tag = etag(info)
        if tag != self._compacted_tag:
            try:
                manifest = json.loads(self.root.store.get(f"{self.run_id}/{fmt.COMPACTED_FILE}"))
                streams = manifest.get("streams") if isinstance(manifest, dict) else None
                self._compacted = streams if isinstance(streams, dict) else {}
            except (FileNotFoundError, ValueError):
                self._compacted = {}
            self._compacted_tag = tag
        entry = self._compacted.get(self.stream)
        if not isinstance(entry, dict):
            return None
        segments, size = entry.get("segments"), entry.get("bytes")
        if not (isinstance(segments, int) and isinstance(size, int)) or entry.get("file") != fmt.STREAM_FILES[
                self.stream]:
            return None
        return {"file": fmt.STREAM_FILES[self.stream], "segments": segments, "bytes": size}


class RemoteWatcher:
    """RunWatcher's interface over an object-store root: a thread polls the listing (no file events exist there).

    `version(run_id)` grows when any object of that run changes (a new segment, a new status.json), `version()`
    when runs appear or disappear.

    Args:
        root: the runs root.
        poll_interval: seconds between listings.

    Example:
    ```python
    watcher = RemoteWatcher(RunStore("s3://bucket/runs").remote)
    seen = watcher.total
    watcher.wait(seen, timeout=10)  # returns when anything under the root changed
    ```
    """

    polling = True

    def __init__(self, root: RemoteRoot, *, poll_interval: float = 1.0) -> None:
        self.root = root
        self.poll_interval = poll_interval
        self._versions: dict[str, int] = {}
        self._signatures: dict[str, frozenset[tuple[str, str]]] = {}
        self._total = 0
        self._log = ChangeLog()  # for changed_since
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kerascope-remote-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def total(self) -> int:
        return self._total

    def version(self, run_id: str = "") -> int:
        return self._versions.get(run_id, 0)

    def changed_since(self, since_total: int) -> set[str] | None:
        """As `RunWatcher.changed_since`: the runs ("": the list of runs) changed since `total` was `since_total`."""
        with self._changed:
            return self._log.since(self._total, since_total)

    def wait(self, since_total: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._total > since_total, timeout=timeout)
            return self._total

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a failed poll is retried at the next tick; the root keeps its last listing
                pass
            self._stop.wait(self.poll_interval)

    def poll(self) -> None:
        runs = self.root.snapshot(max_age=self.poll_interval / 2)
        signatures = {run_id: frozenset((path, etag(info)) for path, info in files.items())
                      for run_id, files in runs.items()}
        changed = [run_id for run_id, sig in signatures.items() if self._signatures.get(run_id) != sig]
        gone = set(self._signatures) - set(signatures)
        listed_changed = gone or any(run_id not in self._signatures for run_id in signatures)
        self._signatures = signatures
        if not changed and not gone:
            return
        with self._changed:
            self._total += 1
            for run_id in [*changed, *gone, *([""] if listed_changed else [])]:
                self._versions[run_id] = self._versions.get(run_id, 0) + 1
                self._log.add(self._total, run_id)
            self._changed.notify_all()

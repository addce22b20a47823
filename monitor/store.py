"""RunStore: every run directory under one logdir, newest first."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from kerascope.monitor import format as fmt
from kerascope.monitor.catalog import Catalog
from kerascope.monitor.format import inside
from kerascope.monitor.reader import Run, Snapshot, file_stamp
from kerascope.monitor.remote_reader import RemoteRoot
from kerascope.monitor.storage import check_logdir, url_protocol

# The files whose stamps key a run's catalog row: what listing it reads (and what its summary depends on).
CATALOG_FILES = (fmt.RUN_FILE, fmt.STATUS_FILE, fmt.RUN_SUMMARY_FILE, fmt.EPOCH_FILE, fmt.EVENTS_FILE)
CATALOG_SYNC_S = 5.0  # a run that keeps changing (a live one) is written back to the catalog at most this often


class RunStore:
    """The runs under `logdir` (one directory per run, as written by LiveMonitor or RunWriter).

    Args:
        logdir: the runs folder (it may not exist yet), or an fsspec URL of an object-store root (`s3://bucket/runs`;
            the backend must be installed: ImportError naming the pip extra otherwise).
        catalog: a `Catalog` of a local root (ignored for an object-store root): runs whose files did not change
            since it saw them are listed from it without opening any file, and runs read from their files are written
            back to it.
        changes: `RunWatcher.version`: which runs changed since the catalog last stored them (without it, only runs
            that are opened are written back).

    Example:
    ```python
    store = RunStore("runs")
    for run in store.runs():
        print(run.id, run.name, run.status, run.epoch_metrics().tail(1))
    ```
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        *,
        catalog: Catalog | None = None,
        changes: Callable[[str], int] | None = None,
    ) -> None:
        logdir = check_logdir(logdir)
        # An object-store root: runs are listed from one shared listing of the root (monitor/remote_reader.py).
        self.remote = RemoteRoot(logdir) if url_protocol(logdir) else None
        self.logdir = self.remote.url if self.remote else logdir
        self.catalog = catalog if self.remote is None else None
        self._changes = changes
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._cataloged: dict[str, Any] | None = None  # the catalog's rows, until the first scan has used them
        self._synced: dict[str, tuple[int, float]] = {}  # run id -> (watcher version, time) when last cataloged
        self._sorted: tuple[tuple[str, ...], list[Run]] | None = None
        self.scanned = False  # True once a first runs() call has opened every run found

    def runs(self, progress: Callable[[int, int], None] | None = None) -> list[Run]:
        """All runs, newest first. New directories are picked up and deleted ones dropped at each call.

        Args:
            progress: called as `progress(done, total)` while new runs are opened (a first scan of a large root).
        """
        if self.remote is not None:
            paths = {run_id: run_id for run_id in self.remote.run_ids()}
        else:
            try:
                paths = {entry.name: entry.path for entry in os.scandir(self.logdir) if self._is_run_dir(entry)}
            except OSError:
                paths = {}
        found = set(paths)
        with self._lock:
            new = [(name, path) for name, path in paths.items() if name not in self._runs]
        # Opening a run reads its files: done outside the lock, so one slow run never holds up the other sessions.
        opened = self._open(new, progress) if new else {}
        with self._lock:
            for name, run in opened.items():
                self._runs.setdefault(name, run)  # another thread may have opened it meanwhile: keep one
            gone = set(self._runs) - found
            for name in gone:
                del self._runs[name]
                self._synced.pop(name, None)
            ids = tuple(self._runs)
            if self._sorted is None or self._sorted[0] != ids:
                runs = sorted(self._runs.values(), key=lambda run: (run.created, run.id), reverse=True)
                self._sorted = (ids, runs)
            runs = list(self._sorted[1])
            self.scanned = True
        if self.catalog is not None:
            if gone:
                self.catalog.delete(gone)
            if self._changes is not None:
                self._sync(runs)
        return runs

    def _open(self, entries: list[tuple[str, str]], progress: Callable[[int, int], None] | None) -> dict[str, Run]:
        """The runs at these (name, path) entries, from the catalog where their files did not change."""
        if self.catalog is None:
            opened = {}
            for done, (name, path) in enumerate(entries):
                opened[name] = Run(path, self.logdir, root=self.remote)
                if progress is not None and done % 200 == 0:
                    progress(done, len(entries))
            return opened
        with self._lock:
            if self._cataloged is None:
                self._cataloged = self.catalog.load()
                first_scan = True
            else:
                first_scan = False
            cataloged = self._cataloged
        opened, rows = {}, []
        for done, (name, path) in enumerate(entries):
            stamps = _stamps(path)
            row = cataloged.pop(name, None)
            snapshot = _snapshot(row[1]) if row is not None and row[0] == stamps else None
            if snapshot is not None:
                opened[name] = Run(path, self.logdir, snapshot=snapshot)
            else:
                run = opened[name] = Run(path, self.logdir)
                rows.extend(self._row(run, stamps))
            if progress is not None and done % 200 == 0:
                progress(done, len(entries))
        if first_scan:
            # Rows of runs that are no longer under the root.
            self.catalog.delete([name for name in cataloged if not os.path.isdir(os.path.join(self.logdir, name))])
            cataloged.clear()
        self.catalog.put(rows)
        now = time.monotonic()
        with self._lock:
            for name in opened:
                self._synced[name] = (self._changes(name) if self._changes else 0, now)
        return opened

    def _row(self, run: Run, stamps: tuple[Any, ...]) -> list[tuple[str, Any, dict[str, Any]]]:
        """The catalog row of a run just read, or none when the run changed while it was read (a later sync
        catalogs it)."""
        snapshot = run.snapshot()
        if _stamps(run.path) != stamps:
            return []
        return [(run.id, stamps, dataclasses.asdict(snapshot))]

    def _sync(self, runs: list[Run]) -> None:
        """Write back the runs the watcher saw change since they were cataloged (at most every CATALOG_SYNC_S)."""
        now = time.monotonic()
        rows, synced = [], {}
        for run in runs:
            version = self._changes(run.id)
            seen, when = self._synced.get(run.id, (-1, 0.0))
            if version != seen and now - when >= CATALOG_SYNC_S:
                rows.extend(self._row(run, _stamps(run.path)))
                synced[run.id] = (version, now)
        if synced:
            self.catalog.put(rows)
            with self._lock:
                self._synced.update(synced)

    def run(self, run_id: str) -> Run:
        """The run with this id (its directory name). Raises KeyError when there is none."""
        with self._lock:
            cached = self._runs.get(run_id)
        if cached is not None and (self.remote is not None or os.path.isdir(cached.path)):
            return cached
        for run in self.runs():
            if run.id == run_id:
                return run
        raise KeyError(f"no run {run_id!r} under {self.logdir}")

    def _is_run_dir(self, entry: os.DirEntry[str]) -> bool:
        if entry.name.startswith("."):
            return False
        try:
            if not entry.is_dir():
                return False
        except OSError:
            return False
        # A symlinked run directory is served only when it stays inside the logdir.
        if entry.is_symlink() and not inside(self.logdir, entry.path):
            return False
        return any(os.path.exists(os.path.join(entry.path, name)) for name in (fmt.RUN_FILE, fmt.STATUS_FILE))


def _stamps(run_dir: str) -> tuple[Any, ...]:
    return tuple(file_stamp(os.path.join(run_dir, name)) for name in CATALOG_FILES)


def _snapshot(value: Any) -> Snapshot | None:
    """A catalog row's snapshot, or None when it is not one (a row written by another version)."""
    if not isinstance(value, dict):
        return None
    try:
        snapshot = Snapshot(**value)
    except TypeError:
        return None
    if not isinstance(snapshot.meta, dict) or not isinstance(snapshot.status, dict):
        return None
    status_stamp = tuple(snapshot.status_stamp) if isinstance(snapshot.status_stamp, list) else None
    summary_key = snapshot.summary_key
    summary_key = tuple(tuple(k) if isinstance(k, list) else k for k in summary_key) if isinstance(
        summary_key, list) else None
    return dataclasses.replace(snapshot, status_stamp=status_stamp, summary_key=summary_key)

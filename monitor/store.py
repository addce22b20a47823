"""RunStore: every run directory under one logdir, newest first."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from kerascope.monitor import format as fmt
from kerascope.monitor.catalog import Catalog
from kerascope.monitor.format import inside
from kerascope.monitor.reader import Run, Snapshot, file_stamp
from kerascope.monitor.remote_reader import RemoteRoot
from kerascope.monitor.storage import check_logdir, url_protocol

# The files whose stamps key a run's catalog row: what listing it reads (and what its summary depends on).
CATALOG_FILES = (fmt.RUN_FILE, fmt.STATUS_FILE, fmt.RUN_SUMMARY_FILE, fmt.EPOCH_FILE, fmt.EVENTS_FILE)
CATALOG_SYNC_S = 5.0  # a run that keeps changing (a live one) is written back to the catalog at most this often
# A root directory modified less than this long ago may change again within the same mtime tick (coarse timestamps):
# its entries are listed again at the next call rather than trusted from its mtime.
SETTLED_AFTER_S = 2.0


class Changes(Protocol):
    """What the store needs of a watcher (RunWatcher): a count of events, each run's version, and which runs changed
    since a count."""

    @property
    def total(self) -> int: ...

    @property
    def started(self) -> bool: ...

    def version(self, run_id: str = "") -> int: ...

    def changed_since(self, since_total: int) -> set[str] | None: ...


class RunStore:
    """The runs under `logdir` (one directory per run, as written by LiveMonitor or RunWriter).

    Args:
        logdir: the runs folder (it may not exist yet), or an fsspec URL of an object-store root (`s3://bucket/runs`;
            the backend must be installed: ImportError naming the pip extra otherwise).
        catalog: a `Catalog` of a local root (ignored for an object-store root): runs whose files did not change
            since it saw them are listed from it without opening any file, and runs read from their files are written
            back to it.
        watcher: a `RunWatcher` over a local root (ignored for an object-store root). With it a listing costs what
            changed, not the number of runs: the root's entries are read again only when the root changed, only the
            runs the watcher saw change are checked again, and those are written back to the catalog. Without it every
            call looks at every entry of the root. While the watcher is not started yet (`RunWatcher(start=False)`),
            runs are listed from the catalog without checking their files: start it, then call `recheck()`.

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
        watcher: Changes | None = None,
    ) -> None:
        logdir = check_logdir(logdir)
        # An object-store root: runs are listed from one shared listing of the root (monitor/remote_reader.py).
        self.remote = RemoteRoot(logdir) if url_protocol(logdir) else None
        self.logdir = self.remote.url if self.remote else logdir
        self.catalog = catalog if self.remote is None else None
        self.watcher = watcher if self.remote is None else None
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._opening = threading.Lock()  # one thread opens new runs; the others wait for it and use what it opened
        self.opened = (0, 0)  # (runs opened, runs to open) of the opening in progress, for progress bars
        self._cataloged: dict[str, Any] | None = None  # the catalog's rows, until the first scan has used them
        self._synced: dict[str, tuple[int, float]] = {}  # run id -> (watcher version, time) when last cataloged
        self._read_stamps: dict[str, tuple[Any, ...]] = {}  # run id -> its files' stamps when it was read (catalog)
        self._sync_lock = threading.Lock()
        self._synced_total = 0  # the watcher's total when the catalog was last brought up to date
        self._unsynced: set[str] = set()  # runs that changed but were cataloged too recently to be written again
        self._listing = threading.Lock()
        self._root_key: tuple[int, int] | None = None  # the root's (mtime, inode) when its entries were read
        self._listed: dict[str, str] = {}  # run id -> path, as the root's entries were last read
        self._pending: dict[str, str] = {}  # directories without run.json and status.json (yet)
        self._listed_total = 0  # the watcher's total when `_listed` was last brought up to date
        self._sorted: tuple[tuple[str, ...], list[Run]] | None = None
        self.listing_version = 0  # grows whenever the list of runs (or its order) changes (see `listing`)
        self.scanned = False  # True once a first runs() call has opened every run found

    def runs(self, progress: Callable[[int, int], None] | None = None) -> list[Run]:
        """All runs, newest first. New directories are picked up and deleted ones dropped at each call.

        Args:
            progress: called as `progress(done, total)` while new runs are opened (a first scan of a large root),
                also while waiting for another thread that opens them.
        """
        return self.listing(progress)[1]

    def listing(self, progress: Callable[[int, int], None] | None = None) -> tuple[int, list[Run]]:
        """`runs()` and the version of that list: the same version means the same runs in the same order."""
        if self.remote is not None:
            paths = {run_id: run_id for run_id in self.remote.run_ids()}
        else:
            paths = self._run_paths()
        with self._lock:
            new = [(name, path) for name, path in paths.items() if name not in self._runs]
        if new:
            self._open_new(new, progress)
        with self._lock:
            gone = [name for name in self._runs if name not in paths] if len(self._runs) != len(paths) or new else []
            for name in gone:
                del self._runs[name]
                self._synced.pop(name, None)
                self._read_stamps.pop(name, None)
            ids = tuple(self._runs)
            if self._sorted is None or self._sorted[0] != ids:
                runs = sorted(self._runs.values(), key=lambda run: (run.created, run.id), reverse=True)
                self._sorted = (ids, runs)
                self.listing_version += 1
            runs = list(self._sorted[1])
            version = self.listing_version
            self.scanned = True
        if self.catalog is not None:
            if gone:
                self.catalog.delete(gone)
            if self.watcher is not None:
                self._sync()
        return version, runs

    # -- the root's entries ----------------------------------------------------------------------------------------

    def _run_paths(self) -> dict[str, str]:
        """{run id: path} of the run directories under the root. With a watcher, the root's entries are read again
        only when the root's mtime moved (or is too recent to be trusted); otherwise only directories that were not
        runs yet and runs the watcher saw change are looked at again."""
        if self.watcher is None:
            return self._read_root()[0]
        with self._listing:
            total = self.watcher.total  # before looking: a change made while we look is seen again next time
            try:
                st = os.stat(self.logdir)
            except OSError:
                self._root_key, self._listed, self._pending = None, {}, {}
                return {}
            key = (st.st_mtime_ns, st.st_ino)
            if key != self._root_key:
                self._listed, self._pending = self._read_root()
                self._root_key = key if time.time() - st.st_mtime > SETTLED_AFTER_S else None
            else:
                changed = self.watcher.changed_since(self._listed_total)
                recheck = list(self._listed) if changed is None else [name for name in changed if name in self._listed]
                for name in recheck:  # run.json and status.json both removed: no longer a run
                    if not _has_run_files(self._listed[name]):
                        self._pending[name] = self._listed.pop(name)
                for name, path in list(self._pending.items()):  # a run being created: its files appear after it
                    if _has_run_files(path):
                        self._listed[name] = self._pending.pop(name)
            self._listed_total = total
            return dict(self._listed)

    def _read_root(self) -> tuple[dict[str, str], dict[str, str]]:
        """The root's run directories and its other directories (that may become runs), by name."""
        runs, others = {}, {}
        try:
            entries = list(os.scandir(self.logdir))
        except OSError:
            return runs, others
        for entry in entries:
            if self._is_candidate(entry):
                (runs if _has_run_files(entry.path) else others)[entry.name] = entry.path
        return runs, others

    def _is_candidate(self, entry: os.DirEntry[str]) -> bool:
        """A directory (or a link to one inside the logdir) that is or may become a run."""
        if entry.name.startswith("."):
            return False
        try:
            if not entry.is_dir():
                return False
        except OSError:
            return False
        # A symlinked run directory is served only when it stays inside the logdir.
        return not (entry.is_symlink() and not inside(self.logdir, entry.path))

    # -- opening runs ----------------------------------------------------------------------------------------------

    def _open_new(self, entries: list[tuple[str, str]], progress: Callable[[int, int], None] | None) -> None:
        """Open the runs at these (name, path) entries and add them, unless another thread already did: one thread
        opens at a time (a first scan of a large root is done once, whoever asks during it waits for it)."""
        if progress is None:
            self._opening.acquire()
        else:
            while not self._opening.acquire(timeout=0.25):
                progress(*self.opened)
        try:
            with self._lock:
                entries = [(name, path) for name, path in entries if name not in self._runs]
            if not entries:
                return
            opened = self._open(entries, progress)
            with self._lock:
                for name, run in opened.items():
                    self._runs.setdefault(name, run)
        finally:
            self.opened = (0, 0)
            self._opening.release()

    def _open(self, entries: list[tuple[str, str]], progress: Callable[[int, int], None] | None) -> dict[str, Run]:
        """The runs at these (name, path) entries, from the catalog where their files did not change."""
        def report(done: int) -> None:
            self.opened = (done, len(entries))
            if progress is not None and done % 200 == 0:
                progress(done, len(entries))

        if self.catalog is None:
            opened = {}
            with collection_paused(len(entries)):
                for done, (name, path) in enumerate(entries):
                    opened[name] = Run(path, self.logdir, root=self.remote)
                    report(done)
            return opened
        with self._lock:
            if self._cataloged is None:
                with collection_paused(len(entries)):
                    self._cataloged = self.catalog.load()
                first_scan = True
            else:
                first_scan = False
            cataloged = self._cataloged
        # Before its watcher starts, the catalog is taken at its word: whoever starts the watcher then calls
        # `recheck()`, which compares the stamps (the first listing of a large root is not held up by them).
        trusted = self.watcher is not None and not self.watcher.started
        opened, rows, stamped = {}, [], {}
        with collection_paused(len(entries)):
            for done, (name, path) in enumerate(entries):
                row = cataloged.pop(name, None)
                stamps = stamped[name] = row[0] if trusted and row is not None else _stamps(path)
                snapshot = _snapshot(row[1]) if row is not None and row[0] == stamps else None
                if snapshot is not None:
                    opened[name] = Run(path, self.logdir, snapshot=snapshot)
                else:
                    run = opened[name] = Run(path, self.logdir)
                    rows.extend(self._row(run, stamps))
                report(done)
        if first_scan:
            # Rows of runs that are no longer under the root.
            self.catalog.delete([name for name in cataloged if not os.path.isdir(os.path.join(self.logdir, name))])
            cataloged.clear()
        self.catalog.put(rows)
        now = time.monotonic()
        with self._lock:
            for name in opened:
                self._synced[name] = (self.watcher.version(name) if self.watcher else 0, now)
            self._read_stamps.update(stamped)
        return opened

    def recheck(self) -> list[str]:
        """Read again the runs whose files changed since the store read them (their stamps differ; stores with a
        catalog), and return their ids. For a watcher started after the first listing: what changed before its
        watches were in place, which it is then told (`RunWatcher.note_changed`)."""
        if self.catalog is None:
            return []
        with self._lock:
            runs, read = dict(self._runs), dict(self._read_stamps)
        fresh, rows = {}, []
        for name, run in runs.items():
            stamps = _stamps(run.path)
            if stamps != read.get(name):
                fresh[name] = (Run(run.path, self.logdir), stamps)
                rows.extend(self._row(fresh[name][0], stamps))
        if fresh:
            with self._lock:
                for name, (run, stamps) in fresh.items():
                    if name in self._runs:
                        self._runs[name], self._read_stamps[name] = run, stamps
                self._sorted = None  # new Run objects (their run.json may have changed): a new listing
            self.catalog.put(rows)
        return list(fresh)

    # -- the catalog -----------------------------------------------------------------------------------------------

    def _row(self, run: Run, stamps: tuple[Any, ...]) -> list[tuple[str, Any, dict[str, Any]]]:
        """The catalog row of a run just read, or none when the run changed while it was read (a later sync
        catalogs it)."""
        snapshot = run.snapshot()
        if _stamps(run.path) != stamps:
            return []
        return [(run.id, stamps, dataclasses.asdict(snapshot))]

    def _sync(self) -> None:
        """Write back the runs the watcher saw change since they were cataloged (each at most every CATALOG_SYNC_S).
        Looks only at the runs that changed; a sync already under way in another thread is not waited for."""
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            total = self.watcher.total
            changed = self.watcher.changed_since(self._synced_total)
            self._synced_total = total
            with self._lock:
                candidates = self._unsynced | (set(self._runs) if changed is None else changed)
                runs = {run_id: self._runs[run_id] for run_id in candidates if run_id in self._runs}
            self._unsynced = set()
            now = time.monotonic()
            rows, synced = [], {}
            for run_id, run in runs.items():
                version = self.watcher.version(run_id)
                seen, when = self._synced.get(run_id, (-1, 0.0))
                if version == seen:
                    continue
                if now - when < CATALOG_SYNC_S:
                    self._unsynced.add(run_id)  # written back at a later call, even without another event
                    continue
                rows.extend(self._row(run, _stamps(run.path)))
                synced[run_id] = (version, now)
            if synced:
                self.catalog.put(rows)
                with self._lock:
                    self._synced.update(synced)
        finally:
            self._sync_lock.release()

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


def _has_run_files(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, name)) for name in (fmt.RUN_FILE, fmt.STATUS_FILE))


@contextlib.contextmanager
def collection_paused(runs: int) -> Iterator[None]:
    """Python's cyclic garbage collector off while `runs` runs are read (from 500 on): building their many small
    objects otherwise triggers full collections over the whole process's heap again and again (about half the time
    of a first listing of 10,000 runs). Nothing read here forms cycles that need it; the collector runs again
    afterwards as usual."""
    if runs < 500 or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
    meta_stamp = tuple(snapshot.meta_stamp) if isinstance(snapshot.meta_stamp, list) else None
    summary_key = snapshot.summary_key
    summary_key = tuple(tuple(k) if isinstance(k, list) else k for k in summary_key) if isinstance(
        summary_key, list) else None
    return dataclasses.replace(snapshot, status_stamp=status_stamp, summary_key=summary_key,
                               meta_stamp=meta_stamp)

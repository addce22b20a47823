"""RunWatcher: one watchdog observer over a logdir that tells readers which runs changed.

No public Streamlit API lets a background thread trigger a rerun, so the watcher only bumps version counters; the
dashboard's fragments compare them on each tick and re-read just the runs that moved.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from kerascope.monitor.changes import ChangeLog

# Filesystems on which inotify does not see writes made by other machines (or through some container mounts).
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse.sshfs", "fuse.s3fs", "lustre", "gpfs",
                       "beegfs", "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph", "virtiofs", "afs"}
IGNORED_EVENTS = {"opened", "closed_no_write"}
# The events asked of inotify: writes, creations, deletions and moves. Reads (opened, closed without writing) are not
# even delivered: every directory watchdog walks to add its watches and every file a page reads would otherwise
# come back as events to filter (tens of thousands while the watches of a 10,000-run root are added).
WATCHED_EVENTS = [FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, DirModifiedEvent, FileDeletedEvent,
                  DirDeletedEvent, FileMovedEvent, DirMovedEvent, FileClosedEvent]
ROOT_KEY = ""  # the version key for "the list of runs changed"


def filesystem_type(path: str, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding `path`, from the mount table `mounts` (Linux); None when unknown. Of two
    mounts on one mount point, the later one is mounted over the earlier and is the one that holds the files."""
    try:
        with open(mounts, encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(best):
            best, best_type = mount_point, fields[2]
    return best_type


def needs_polling(path: str) -> bool:
    return filesystem_type(path) in NETWORK_FILESYSTEMS


class RunWatcher(FileSystemEventHandler):
    """Watch `logdir` recursively; `version(run_id)` grows whenever a file of that run changes.

    Args:
        logdir: the runs folder (created when missing).
        poll: use watchdog's PollingObserver. None picks it automatically on network filesystems or when inotify
            cannot start (watch limit reached).
        poll_interval: seconds between polls when polling.
        start: start watching now. With False, `start()` does it later: a root of thousands of runs takes seconds
            to watch (one inotify watch per directory), which the dashboard spends after it has listed the runs;
            what changed before the watches were in place is then told with `note_changed`.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, poll: bool | None = None, poll_interval: float = 0.5,
                 start: bool = True) -> None:
        super().__init__()
        self.logdir = os.path.abspath(os.fspath(logdir))
        os.makedirs(self.logdir, exist_ok=True)
        self._versions: dict[str, int] = {}
        self._total = 0
        self._log = ChangeLog()  # for changed_since
        self._changed = threading.Condition()
        self.polling = needs_polling(self.logdir) if poll is None else poll
        self._poll_interval, self._fallback = poll_interval, poll is None
        self._observer: Observer | PollingObserver | None = None
        self._starting = threading.Lock()
        if start:
            self.start()

    @property
    def started(self) -> bool:
        return self._observer is not None

    def start(self) -> None:
        """Start watching (once; a second call does nothing)."""
        with self._starting:
            if self._observer is None:
                self._observer = self._start(self._poll_interval, fallback=self._fallback)

    def _start(self, poll_interval: float, *, fallback: bool) -> Observer | PollingObserver:
        observer = PollingObserver(timeout=poll_interval) if self.polling else Observer()
        observer.schedule(self, self.logdir, recursive=True, event_filter=WATCHED_EVENTS)
        try:
            observer.start()
        except OSError:
            if self.polling or not fallback:
                raise
            self.polling = True
            return self._start(poll_interval, fallback=False)
        return observer

    def stop(self) -> None:
        with self._starting:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)

    @property
    def total(self) -> int:
        """Grows with every change anywhere under the logdir."""
        return self._total

    def version(self, run_id: str = ROOT_KEY) -> int:
        """Grows with every change inside run `run_id` (ROOT_KEY: runs created, renamed or removed)."""
        return self._versions.get(run_id, 0)

    def changed_since(self, since_total: int) -> set[str] | None:
        """The runs (ROOT_KEY: the list of runs) changed after `total` was `since_total`: what a reader that was up
        to date then must look at again. None when that is no longer known (more than CHANGE_LOG_SIZE events ago):
        then every run may have changed."""
        with self._changed:
            return self._log.since(self._total, since_total)

    def wait(self, since_total: int, timeout: float) -> int:
        """Block until `total` exceeds `since_total` or `timeout` passes; returns the current total."""
        with self._changed:
            self._changed.wait_for(lambda: self._total > since_total, timeout=timeout)
            return self._total

    def note_changed(self, run_ids: Iterable[str]) -> None:
        """Count these runs as changed, as if their files had sent events (changes a reader found by other means,
        such as those made before the watches were in place)."""
        self._bump(set(run_ids))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        keys = {self._key(event.src_path)}
        if getattr(event, "dest_path", ""):
            keys.add(self._key(event.dest_path))
        self._bump(keys)

    def _bump(self, keys: set[str | None]) -> None:
        if not keys:
            return
        with self._changed:
            self._total += 1
            for key in keys:
                if key is not None:
                    self._versions[key] = self._versions.get(key, 0) + 1
                self._log.add(self._total, key)
            self._changed.notify_all()

    def _key(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        rel = os.path.relpath(path, self.logdir)
        if rel.startswith(".."):
            return None
        if rel == ".":
            return ROOT_KEY
        parts = rel.split(os.sep)
        # A directory created or removed directly under the logdir changes the list of runs.
        return ROOT_KEY if len(parts) == 1 and not os.path.isfile(path) else parts[0]


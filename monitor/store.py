"""RunStore: every run directory under one logdir, newest first."""

from __future__ import annotations

import os
import threading

from kerascope.monitor import format as fmt
from kerascope.monitor.format import inside
from kerascope.monitor.reader import Run
from kerascope.monitor.remote_reader import RemoteRoot
from kerascope.monitor.storage import check_logdir, local_path, url_protocol


class RunStore:
    """The runs under `logdir` (one directory per run, as written by LiveMonitor or RunWriter).

    Args:
        logdir: the runs folder (it may not exist yet), or an fsspec URL of an object-store root (`s3://bucket/runs`;
            the backend must be installed: ImportError naming the pip extra otherwise).

    Example:
    ```python
    store = RunStore("runs")
    for run in store.runs():
        print(run.id, run.name, run.status, run.epoch_metrics().tail(1))
    ```
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        logdir = check_logdir(logdir)
        # An object-store root: runs are listed from one shared listing of the root (monitor/remote_reader.py).
        self.remote = RemoteRoot(logdir) if url_protocol(logdir) else None
        self.logdir = self.remote.url if self.remote else os.path.abspath(local_path(logdir))
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[Run]:
        """All runs, newest first. New directories are picked up and deleted ones dropped at each call."""
        if self.remote is not None:
            paths = {run_id: run_id for run_id in self.remote.run_ids()}
        else:
            try:
                paths = {entry.name: entry.path for entry in os.scandir(self.logdir) if self._is_run_dir(entry)}
            except OSError:
                paths = {}
        found = set(paths)
        with self._lock:
            new = [name for name in paths if name not in self._runs]
        # Opening a run reads its files: done outside the lock, so one slow run never holds up the other sessions.
        opened = {name: Run(paths[name], self.logdir, root=self.remote) for name in new}
        with self._lock:
            for name, run in opened.items():
                self._runs.setdefault(name, run)  # another thread may have opened it meanwhile: keep one
            for gone in set(self._runs) - found:
                del self._runs[gone]
            runs = list(self._runs.values())
        return sorted(runs, key=lambda run: (run.created, run.id), reverse=True)

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

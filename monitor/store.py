"""RunStore: every run directory under one root, newest first."""

from __future__ import annotations

import os
import threading

from kerascope.monitor import format as fmt
from kerascope.monitor.format import inside
from kerascope.monitor.reader import Run


class RunStore:
    """The runs under `root` (one directory per run, as written by LiveMonitor or RunWriter).

    Example:
    ```python
    store = RunStore("runs")
    for run in store.runs():
        print(run.id, run.name, run.status, run.epoch_metrics().tail(1))
    ```
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[Run]:
        """All runs, newest first. New directories are picked up and deleted ones dropped at each call."""
        found = set()
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            entries = []
        with self._lock:
            for entry in entries:
                if not self._is_run_dir(entry):
                    continue
                found.add(entry.name)
                if entry.name not in self._runs:
                    self._runs[entry.name] = Run(entry.path, self.root)
            for gone in set(self._runs) - found:
                del self._runs[gone]
            runs = list(self._runs.values())
        return sorted(runs, key=lambda run: (run.created, run.id), reverse=True)

    def run(self, run_id: str) -> Run:
        """The run with this id (its directory name). Raises KeyError when there is none."""
        with self._lock:
            cached = self._runs.get(run_id)
        if cached is not None and os.path.isdir(cached.path):
            return cached
        for run in self.runs():
            if run.id == run_id:
                return run
        raise KeyError(f"no run {run_id!r} under {self.root}")

    def _is_run_dir(self, entry: os.DirEntry[str]) -> bool:
        if entry.name.startswith("."):
            return False
        try:
            if not entry.is_dir():
                return False
        except OSError:
            return False
        # A symlinked run directory is served only when it stays inside the root.
        if entry.is_symlink() and not inside(self.root, entry.path):
            return False
        return any(os.path.exists(os.path.join(entry.path, name)) for name in (fmt.RUN_FILE, fmt.STATUS_FILE))

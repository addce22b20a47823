"""RunStore and Run: read run directories (finished, live or broken) as pandas DataFrames.

Each Run keeps a `JsonlTail` per stream, so calling a reader method again only parses what was appended since.
Run objects are cached by the store and are safe to share between threads (Streamlit sessions).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from kerascope.monitor import format as fmt
from kerascope.monitor.run_files import RunFiles, RunFormatError, frame_of
from kerascope.monitor.table import NumericTable
from kerascope.monitor.tail import JsonlTail, parse_numeric_columns, parse_records

REFRESH_SLICE_BYTES = 32 * 1024 * 1024
NUMERIC_STREAMS = ("batch", "epoch", "system")
RECORD_STREAMS = ("activations", "weights", "events", "layers")
LEADING_COLUMNS = {
    "batch": ("step", "epoch", "batch", "time"),
    "epoch": ("epoch", "step", "time"),
    "system": ("time",),
}
RECORD_COLUMNS = {
    "activations": ("step", "epoch", "layer", "mean", "std", "min", "max", "zero_frac", "histogram"),
    "weights": ("step", "epoch", "layer", "weight", "mean", "std", "norm", "min", "max", "histogram"),
    "events": ("time", "step", "epoch", "kind", "message", "data"),
}
LAYER_COLUMNS = ("phase", "name", "class", "output_shape", "params", "trainable")



class Run(RunFiles):
    """One run directory. Attributes: id, path, name, status, meta (run.json), status_info (status.json), error."""

    def __init__(self, path: str, root: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.root = os.path.abspath(root) if root else os.path.dirname(self.path)
        self.id = os.path.basename(self.path)
        self.meta: dict[str, Any] = {}
        self.error: str | None = None
        self.problems: list[str] = []
        self._status_info: dict[str, Any] = {}
        self._status_stamp: tuple[int, int] | None = None
        self._lock = threading.RLock()
        self._tails = {s: JsonlTail(self._file(fmt.STREAM_FILES[s]), self.root) for s in fmt.STREAM_FILES}
        self._tables = {s: NumericTable() for s in NUMERIC_STREAMS}
        self._records: dict[str, list[dict[str, Any]]] = {s: [] for s in RECORD_STREAMS}
        self._frames: dict[str, pd.DataFrame] = {}
        self.version = 0  # grows each time new records were read
        self._load_meta()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r}, status={self.status!r})"

    # -- identity and status -----------------------------------------------------------------------------------

    def _load_meta(self) -> None:
        try:
            meta = self._read_json(fmt.RUN_FILE)
            if not isinstance(meta, dict):
                raise RunFormatError("run.json does not hold a JSON object")
            version = meta.get("format_version")
            if not isinstance(version, int) or isinstance(version, bool):
                raise RunFormatError(f"run.json has no integer format_version (found {version!r:.40})")
            if version > fmt.FORMAT_VERSION:
                raise RunFormatError(
                    f"written in run format {version}; this Kerascope reads formats up to {fmt.FORMAT_VERSION}: "
                    "upgrade Kerascope to open it"
                )
            self.meta = meta
            self.error = None
        except FileNotFoundError:
            self.error = "run.json is missing: not a run directory, or its creation was interrupted"
        except OSError as exc:
            self.error = f"run.json unreadable: {exc.strerror or exc}"
        except RunFormatError as exc:
            self.error = str(exc)

    @property
    def name(self) -> str:
        name = self.meta.get("name")
        return name if isinstance(name, str) and name else self.id

    @property
    def created(self) -> float:
        created = self.meta.get("created")
        if isinstance(created, (int, float)) and not isinstance(created, bool):
            return float(created)
        try:
            return os.path.getmtime(self.path)
        except OSError:
            return 0.0

    @property
    def status_info(self) -> dict[str, Any]:
        """status.json as last written (re-read only when the file changed)."""
        path = self._file(fmt.STATUS_FILE)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns)
            if stamp != self._status_stamp:
                info = self._read_json(fmt.STATUS_FILE)
                self._status_info = info if isinstance(info, dict) else {}
                self._status_stamp = stamp
        except FileNotFoundError:
            self._status_info = {"status": fmt.BROKEN, "reason": "status.json is missing"}
            self._status_stamp = None
        except OSError as exc:
            self._status_info = {"status": fmt.BROKEN, "reason": f"status.json unreadable: {exc.strerror or exc}"}
            self._status_stamp = None
        except RunFormatError as exc:
            self._status_info = {"status": fmt.BROKEN, "reason": f"status.json unreadable: {exc}"}
            self._status_stamp = None
        return self._status_info

    @property
    def status(self) -> str:
        """running, finished, failed, interrupted; or stale (heartbeat too old) and broken (unreadable)."""
        if self.error:
            return fmt.BROKEN
        info = self.status_info
        status = info.get("status")
        if status not in fmt.STATUSES:
            return fmt.BROKEN
        heartbeat = info.get("heartbeat")
        if status == fmt.RUNNING and (
            not isinstance(heartbeat, (int, float)) or time.time() - heartbeat > fmt.STALE_AFTER_S
        ):
            return fmt.STALE
        return status

    @property
    def reason(self) -> str | None:
        """Why the run is broken, failed, interrupted or stale, in words."""
        if self.error:
            return self.error
        status = self.status
        if status == fmt.STALE:
            return f"no heartbeat for over {fmt.STALE_AFTER_S:.0f} s: the training process probably died"
        reason = self.status_info.get("reason")
        if status == fmt.BROKEN and not reason:
            found = self.status_info.get("status")
            return f"status.json has no valid status (found {found!r:.40}; expected one of {', '.join(fmt.STATUSES)})"
        return str(reason) if reason else None

    # -- incremental reading -------------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read whatever was appended since the last call. Returns True when anything new was read."""
        with self._lock:
            if self.error:
                self._load_meta()
            changed = False
            for stream, tail in self._tails.items():
                changed = self._read_stream(stream, tail) or changed
            if changed:
                self.version += 1
                self._frames.clear()
            return changed

    def _read_stream(self, stream: str, tail: JsonlTail) -> bool:
        changed, more = False, True
        while more:
            # Parsed a slice at a time, so a huge backlog (a long run opened late) never sits in memory as text.
            try:
                chunk = tail.read(REFRESH_SLICE_BYTES)
            except OSError as exc:
                self._problem(f"{fmt.STREAM_FILES[stream]}: {exc.strerror or exc}")
                return changed
            for problem in chunk.problems:
                self._problem(problem)
            if chunk.reset:
                self._drop(stream)
                changed = True
            if chunk.data:
                self._ingest(stream, chunk.data)
                changed = True
            more = chunk.more
        return changed

    def _drop(self, stream: str) -> None:
        if stream in self._tables:
            self._tables[stream].clear()
        else:
            self._records[stream] = []

    def _ingest(self, stream: str, data: bytes) -> None:
        if stream in self._tables:
            columns, rows, bad = parse_numeric_columns(data)
            self._tables[stream].append(columns, rows)
        else:
            records, bad = parse_records(data)
            self._records[stream].extend(records)
        if bad:
            self._problem(f"{fmt.STREAM_FILES[stream]}: {bad} malformed line(s) skipped")

    # -- public readers ------------------------------------------------------------------------------------------

    def batch_metrics(self) -> pd.DataFrame:
        """step, epoch, batch, time, each metric's running mean, `batch_<metric>` per-batch values, lr."""
        return self._numeric("batch")

    def epoch_metrics(self) -> pd.DataFrame:
        """epoch, step, time, metrics, val_ metrics, lr, phase."""
        return self._numeric("epoch")

    def system_metrics(self) -> pd.DataFrame:
        """time, cpu_percent, rss_bytes, and gpu_memory_bytes where a GPU was visible."""
        return self._numeric("system")

    def arrays(self, stream: str = "batch") -> dict[str, np.ndarray]:
        """Read-only numpy views of a numeric stream's columns, without copying (for live charts)."""
        with self._lock:
            self.refresh()
            return self._tables[stream].arrays()

    def activations(self) -> pd.DataFrame:
        """step, epoch, layer, mean, std, min, max, zero_frac, histogram ({"edges": [...], "counts": [...]})."""
        return self._recordframe_of("activations")

    def weights(self) -> pd.DataFrame:
        """step, epoch, layer, weight, mean, std, norm, min, max, histogram."""
        return self._recordframe_of("weights")

    def events(self) -> pd.DataFrame:
        """time, step, epoch, kind, message, data."""
        return self._recordframe_of("events")

    def phases(self) -> pd.DataFrame:
        """One row per fit() call: phase, step, epoch, trainable_params, non_trainable_params, epochs, lr, ..."""
        events = self.events()
        rows = []
        for _, event in events[events["kind"] == "phase"].iterrows():
            data = event["data"] if isinstance(event["data"], dict) else {}
            rows.append({"step": event["step"], "epoch": event["epoch"], "time": event["time"], **data})
        return pd.DataFrame(rows)

    def layers(self) -> pd.DataFrame:
        """phase, name, class, output_shape, params, trainable: the layer table recorded at each fit() call."""
        with self._lock:
            self.refresh()
            rows = []
            for entry in self._records["layers"]:
                layers = entry.get("layers")
                for layer in layers if isinstance(layers, list) else []:
                    if isinstance(layer, dict):
                        rows.append({"phase": entry.get("phase"), **layer})
            return frame_of(rows, LAYER_COLUMNS)

    def _numeric(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh()
            return self._tables[stream].frame(LEADING_COLUMNS[stream])

    def _recordframe_of(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh()
            if stream not in self._frames:
                self._frames[stream] = frame_of(self._records[stream], RECORD_COLUMNS[stream])
            return self._frames[stream]

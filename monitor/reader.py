"""Run: one run directory (finished, live or broken), read as typed values and pandas DataFrames.

Each Run keeps a `JsonlTail` per stream, so calling a reader method again only parses what was appended since.
Run objects are cached by the store and are safe to share between threads (Streamlit sessions).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from kerascope.monitor import format as fmt
from kerascope.monitor.remote_reader import RemoteRoot, RemoteRunFiles, SegmentTail
from kerascope.monitor.run_files import RunFiles, RunFormatError, open_regular
from kerascope.monitor.run_info import (
    Divergence,
    MetricSummary,
    ModelInfo,
    Overview,
    RunOptions,
    RunProgress,
    Stop,
    as_number,
    as_whole,
)
from kerascope.monitor.summary import checked_summary, derive_summary, is_current
from kerascope.monitor.table import MAX_DROPPED_NAMES, NumericTable
from kerascope.monitor.tail import JsonlTail, parse_numeric_columns, parse_records

REFRESH_SLICE_BYTES = 32 * 1024 * 1024
MAX_PROBLEMS = 50
MALFORMED_NOTE = " malformed line(s) skipped"
_VERSIONS = itertools.count(1)  # Run.version: one sequence for every reader of the process
# The files a summary depends on, in the order of `Run.summary_key()`.
SUMMARY_SOURCES = (fmt.RUN_SUMMARY_FILE, fmt.EPOCH_FILE, fmt.EVENTS_FILE)
MAX_DERIVED_BYTES = 64 << 20  # a summary is derived from at most this much of epoch.jsonl and of events.jsonl
NUMERIC_COLUMNS = {"batch": fmt.BATCH_COLUMNS, "epoch": fmt.EPOCH_COLUMNS, "system": fmt.SYSTEM_COLUMNS}
RECORD_COLUMNS = {"activations": fmt.ACTIVATION_COLUMNS, "weights": fmt.WEIGHT_COLUMNS, "events": fmt.EVENT_COLUMNS,
                  "gradients": fmt.GRADIENT_COLUMNS}
# What one run may cost a reader's memory (docs/reliability.md, "Limits"); what does not fit is counted and reported
# in `problems` as "truncated: N more ...". Float64 cells per numeric stream (2M batches of 8 columns fit):
MAX_CELLS = {"batch": 16_000_000, "epoch": 2_000_000, "system": 2_000_000}
MAX_METRIC_COLUMNS = 500
# Record streams keep their newest records, at most this many bytes of JSON (and this many records) each.
MAX_RECORD_BYTES = {"activations": 12 << 20, "weights": 12 << 20, "events": 4 << 20, "layers": 2 << 20,
                    "gradients": 12 << 20}
MAX_RECORDS = {"activations": 50_000, "weights": 50_000, "events": 10_000, "layers": 1_000, "gradients": 100_000}


class Run:
    """One run directory: identity and status, typed run.json values, metrics as DataFrames, the model files.

    Everything read from the directory is untrusted: a malformed value reads as None (typed accessors) or as a
    `problems` entry (streams), and a run whose run.json or status.json cannot be read has status `broken` with the
    reason in `error` / `reason`. Attributes: `id` (the directory name), `path`, `logdir`, `meta` (run.json as
    written), `error`, `problems` (what was skipped while reading), `version` (grows with each new record read, and
    is never the same for two Run objects of one process: a cache keyed by (run id, version) cannot hand a new reader
    of a run what it built from an older one).

    Args:
        path: the run directory (with `root`: the run's id).
        logdir: the runs folder that every file read must resolve inside; defaults to the run's parent.
        root: the object-store runs root the run lives in (format version 2); None for a local directory.

    Example:
    ```python
    run = Run("runs/20260101-120000-mlp-1a2b")
    print(run.name, run.status, run.hparams, run.progress.epoch)
    val_auc = run.epoch_metrics()["val_auc"]
    best = val_auc.max() if run.metric_direction("val_auc") == "max" else val_auc.min()
    ```
    """

    def __init__(self, path: str, logdir: str | None = None, *, snapshot: Snapshot | None = None,
                 root: RemoteRoot | None = None) -> None:
        self.meta: dict[str, Any] = {}
        self.error: str | None = None
        self.problems: list[str] = []
        self.version = next(_VERSIONS)
        self._status_info: dict[str, Any] = {}
        self._status_stamp: tuple[Any, int] | None = None
        self._status_read = False  # status_info looked at status.json (or came from a snapshot)
        self._meta_stamp: tuple[Any, ...] | None = None  # run.json's stamp when it was read (None: not known)
        self._lock = threading.RLock()
        self._root = root
        if root is not None:  # on an object store (`path` is the run id): segments instead of appended files
            self.id, self.logdir = path, root.url
            self.path = root.store.run_url(path)
            self._files: RunFiles | RemoteRunFiles = RemoteRunFiles(root, path)
        else:
            self.path = os.path.abspath(path)
            self.logdir = os.path.abspath(logdir) if logdir else os.path.dirname(self.path)
            self.id = os.path.basename(self.path)
            self._files = RunFiles(self.path, self.logdir)
        # Streams are opened lazily, each when a reader asks for it: listing a root never reads them.
        self._tails: dict[str, JsonlTail | SegmentTail] = {}
        self._tables: dict[str, NumericTable] = {}
        self._records: dict[str, list[dict[str, Any]]] = {s: [] for s in fmt.STREAM_FILES if s not in NUMERIC_COLUMNS}
        self._record_sizes: dict[str, list[int]] = {stream: [] for stream in self._records}
        self._records_dropped = dict.fromkeys(self._records, 0)
        self._malformed = dict.fromkeys(fmt.STREAM_FILES, 0)  # malformed lines skipped per stream
        self._frames: dict[str, pd.DataFrame] = {}
        self._summary: dict[str, Any] | None = None
        self._summary_key: tuple[Any, ...] | None = None
        if snapshot is not None:
            self.meta, self.error, self._meta_stamp = snapshot.meta, snapshot.error, snapshot.meta_stamp
            self._status_info, self._status_stamp = snapshot.status, snapshot.status_stamp
            self._status_read = True
            self._summary, self._summary_key = snapshot.summary, snapshot.summary_key
        else:
            self._load_meta()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r}, status={self.status!r})"

    # -- identity and status -----------------------------------------------------------------------------------

    def _run_json_stamp(self) -> tuple[Any, ...] | None:
        """run.json's stamp now (a stat; on an object store, from the root's listing); None when it cannot be had."""
        try:
            return self._files.stamp(fmt.RUN_FILE)
        except (FileNotFoundError, RunFormatError):
            return None

    def _load_meta(self) -> None:
        # Stamped before reading: a run.json replaced while it is read is read again at the next refresh.
        self._meta_stamp = self._run_json_stamp()
        try:
            meta = self._files.read_json(fmt.RUN_FILE)
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
        except RunFormatError as exc:
            self.error = f"run.json unreadable: {exc}" if isinstance(exc.__cause__, OSError) else str(exc)

    def _problem(self, message: str) -> None:
        if message not in self.problems and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    @property
    def name(self) -> str:
        name = self.meta.get("name")
        return name if isinstance(name, str) and name else self.id

    @property
    def created(self) -> float:
        """Unix time the run was created (the directory's time when run.json does not say)."""
        created = as_number(self.meta.get("created"))
        if created is not None:
            return created
        try:
            return os.path.getmtime(self.path)
        except OSError:
            return 0.0

    @property
    def status_info(self) -> dict[str, Any]:
        """status.json as last written (re-read only when the file changed)."""
        self._status_read = True
        try:
            stamp = self._files.stamp(fmt.STATUS_FILE)
            if stamp != self._status_stamp:
                info = self._files.read_json(fmt.STATUS_FILE)
                self._status_info, self._status_stamp = (info if isinstance(info, dict) else {}), stamp
        except FileNotFoundError:
            self._status_info, self._status_stamp = {"status": fmt.BROKEN, "reason": "status.json is missing"}, None
        except RunFormatError as exc:
            self._status_info = {"status": fmt.BROKEN, "reason": f"status.json unreadable: {exc}"}
            self._status_stamp = None
        return self._status_info

    @property
    def status(self) -> str:
        """running, finished, failed, interrupted; or stale (heartbeat too old) and broken (unreadable)."""
        return self.overview().status

    @property
    def reason(self) -> str | None:
        """Why the run is broken, failed, interrupted or stale, in words."""
        return self.overview().reason

    def overview(self, *, recheck: bool = True) -> Overview:
        """What the runs list shows of this run, from run.json, status.json and the summary alone (each file is
        checked once; no stream is read when summary.json is current).

        Args:
            recheck: look whether status.json and the summary's files changed since they were read (a stat each).
                False trusts what was read, for a caller that knows nothing changed since (a watcher said so); files
                never read are read all the same.
        """
        info = self.status_info if recheck or not self._status_read else self._status_info
        summary = self.summary if recheck or self._summary is None else self._summary
        divergence, stop = _divergence(summary.get("divergence")), _stop(summary.get("stop"))
        status = self._derived_status(info, divergence)
        last = summary.get("last_epoch") if isinstance(summary.get("last_epoch"), dict) else {}
        metrics = summary.get("metrics") if isinstance(summary.get("metrics"), dict) else {}
        return Overview(
            status=status,
            reason=self._reason(status, info, divergence, stop),
            progress=RunProgress.from_json(info),
            divergence=divergence,
            stop=stop,
            best_epoch=as_whole(summary.get("best_epoch")),
            last_epoch=as_whole(last.get("epoch")),
            last_step=as_whole(last.get("step")),
            metrics=self._metric_summaries(metrics),
        )

    def _metric_summaries(self, metrics: dict[str, Any]) -> dict[str, MetricSummary]:
        """summary.json `metrics`, typed; entries that are not objects are left out."""
        typed = {}
        for name, entry in metrics.items():
            summary = MetricSummary.from_json(entry, lambda name=name: self.metric_direction(name))
            if summary is not None:
                typed[name] = summary
        return typed

    def _derived_status(self, info: dict[str, Any], divergence: Divergence | None) -> str:
        if self.error:
            return fmt.BROKEN
        status = info.get("status")
        if status not in fmt.STATUSES:
            return fmt.BROKEN
        heartbeat = info.get("heartbeat")
        if status == fmt.RUNNING and (
            not isinstance(heartbeat, (int, float)) or time.time() - heartbeat > fmt.STALE_AFTER_S
        ):
            return fmt.STALE
        if status in (fmt.FINISHED, fmt.INTERRUPTED) and divergence is not None:
            return fmt.DIVERGED
        return status

    def _reason(self, status: str, info: dict[str, Any], divergence: Divergence | None, stop: Stop | None
                ) -> str | None:
        if self.error:
            return self.error
        if status == fmt.STALE:
            return f"no heartbeat for over {fmt.STALE_AFTER_S:.0f} s: the training process probably died"
        if status == fmt.DIVERGED and divergence is not None:
            where = f"step {divergence.step:,}" if divergence.step is not None else "an unknown step"
            if divergence.epoch is not None:
                where += f" (epoch {divergence.epoch + 1})"
            guard = "; a NaN guard (TerminateOnNaN) stopped training" if stop and stop.by_nan_guard else ""
            if divergence.rule == fmt.DIVERGENCE_SPIKE and divergence.best:
                what = f"{divergence.metric} rose to {divergence.value} (its best was {divergence.best:.4g})"
            else:
                what = f"{divergence.metric} became {divergence.value.replace('nan', 'NaN')}"
            layer = f"; first layer to break: {divergence.layer}" if divergence.layer else ""
            return f"{what} at {where}{guard}{layer}"
        reason = info.get("reason")
        if status == fmt.BROKEN and not reason:
            found = info.get("status")
            return f"status.json has no valid status (found {found!r:.40}; expected one of {', '.join(fmt.STATUSES)})"
        return str(reason) if reason else None

    # -- the summary (summary.json, or derived from epoch.jsonl and events.jsonl) ---------------------------------

    def summary_key(self) -> tuple[Any, ...]:
        """(size, mtime, inode) of summary.json, epoch.jsonl and events.jsonl (None for a missing file): the summary
        is re-read when this changes. On an object store: summary.json's ETag and size, and this reader's version."""
        if self._root is not None:
            try:
                stamp = self._files.stamp(fmt.RUN_SUMMARY_FILE)
            except FileNotFoundError:
                stamp = None
            return stamp, self.version
        return tuple(file_stamp(self._files.path(relpath)) for relpath in SUMMARY_SOURCES)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json (monitor/summary.py) when it matches epoch.jsonl and events.jsonl as they are now; else the
        same summary derived from those two files (a run written without it, or killed between two writes)."""
        with self._lock:
            key = self.summary_key()
            if self._summary is None or key != self._summary_key:
                self._summary, self._summary_key = self._read_summary(key), key
            return self._summary

    def _read_summary(self, key: tuple[Any, ...]) -> dict[str, Any]:
        if self._root is not None:
            return self._remote_summary(key[0] is not None)
        sizes = {relpath: stamp[0] if stamp else 0 for relpath, stamp in zip(SUMMARY_SOURCES, key, strict=True)}
        del sizes[fmt.RUN_SUMMARY_FILE]
        if key[0] is not None:
            try:
                written = checked_summary(self._files.read_json(fmt.RUN_SUMMARY_FILE))
            except (FileNotFoundError, RunFormatError):
                written = None
            if written is not None and is_current(written, sizes):
                return written
        return derive_summary(self.meta, self.status_info, self._whole_file(fmt.EPOCH_FILE),
                              self._whole_file(fmt.EVENTS_FILE))

    def _remote_summary(self, uploaded: bool) -> dict[str, Any]:
        """An object-store run's summary.json as uploaded with its segments, else one made from its epoch and event
        records (read through the segments)."""
        if uploaded:
            try:
                written = checked_summary(self._files.read_json(fmt.RUN_SUMMARY_FILE))
            except (FileNotFoundError, RunFormatError):
                written = None
            if written is not None:
                return written
        self.refresh(("epoch", "events"))
        lines = {"epoch": self.epoch_metrics().to_dict("records"), "events": self.events().to_dict("records")}
        data = {stream: "".join(json.dumps(record, default=str) + "\n" for record in records).encode()
                for stream, records in lines.items()}
        return derive_summary(self.meta, self.status_info, data["epoch"], data["events"])

    def _whole_file(self, relpath: str) -> bytes:
        try:
            with open_regular(self._files.confined(relpath)) as f:
                return f.read(MAX_DERIVED_BYTES)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            if isinstance(exc, PermissionError) and exc.errno is None:  # confinement: worded as the stream readers
                self._problem(f"{relpath}: a link that leads outside the runs root: not read")
            else:
                self._problem(f"{relpath}: {exc.strerror or exc}")
            return b""

    def snapshot(self) -> Snapshot:
        """What listing this run read, for the catalog: a Run made from it (`Run(path, snapshot=...)`) opens no file
        until one of them changes."""
        with self._lock:
            info, summary = self.status_info, self.summary
            return Snapshot(self.meta, self.error, info, self._status_stamp, summary, self._summary_key,
                            self._meta_stamp)

    # -- run.json, typed (a missing or malformed value is None) -----------------------------------------------------

    @property
    def hparams(self) -> dict[str, Any] | None:
        """The user's hyperparameters (`LiveMonitor(hparams=...)`)."""
        hparams = self.meta.get("hparams")
        return hparams if isinstance(hparams, dict) else None

    @property
    def group(self) -> str | None:
        """The sweep this run belongs to (run.json `group`: the trials of one KerasTuner search share it)."""
        group = self.meta.get(fmt.RUN_GROUP)
        return group if isinstance(group, str) else None

    @property
    def tags(self) -> list[str] | None:
        tags = self.meta.get("tags")
        return [str(tag) for tag in tags] if isinstance(tags, list) else None

    @property
    def notes(self) -> str | None:
        notes = self.meta.get("notes")
        return notes if isinstance(notes, str) else None

    @property
    def options(self) -> RunOptions:
        """The LiveMonitor options the run was recorded with (logdir, update_freq, checkpoint, monitor, mode); every
        field None when run.json has none (a run written by RunWriter alone) or a malformed value."""
        return RunOptions.from_json(self.meta.get("options"))

    @property
    def model_info(self) -> ModelInfo | None:
        """The model's name, class, parameter counts and weights' size at the latest fit() call."""
        return ModelInfo.from_json(self.meta.get("model"))

    @property
    def progress(self) -> RunProgress:
        """status.json's epoch, epochs, step, steps_per_epoch, started, ended and heartbeat."""
        return RunProgress.from_json(self.status_info)

    @property
    def metric_directions(self) -> dict[str, str]:
        """run.json `metrics` as {"metric name": "min" | "max"}: which way each logged metric is better, taken from
        the Keras metric objects. Empty for runs recorded without it (malformed entries are left out)."""
        return fmt.recorded_directions(self.meta.get("metrics"))

    def metric_direction(self, name: str) -> str:
        """"min" or "max": which way `name` (a logged metric, `val_` twins included) is better.

        As recorded in `metric_directions`; for runs recorded without it, and metrics it does not list, the rule of
        `monitor.format.metric_direction` on the name.
        """
        return fmt.metric_direction(name, self.metric_directions)

    # -- incremental reading -------------------------------------------------------------------------------------

    def refresh(self, streams: Iterable[str] | None = None) -> bool:
        """Read whatever was appended since the last call to `streams` (keys of format.STREAM_FILES; default: all of
        them). Returns True when anything new was read."""
        with self._lock:
            changed = False
            if self.error or self._run_json_stamp() != self._meta_stamp:
                # run.json replaced (update_meta, a resumed run's new phase): names, hparams and directions change.
                before = (self.meta, self.error)
                self._load_meta()
                if (self.meta, self.error) != before:
                    changed = True
                    self._summary = None  # derived from run.json too (the monitored metric)
            for stream in fmt.STREAM_FILES if streams is None else streams:
                changed = self._read_stream(stream, self._tail(stream)) or changed
            if changed:
                self.version = next(_VERSIONS)
                self._frames.clear()
            return changed

    def _tail(self, stream: str) -> JsonlTail | SegmentTail:
        tail = self._tails.get(stream)
        if tail is None:
            if self._root is not None:
                tail = SegmentTail(self._root, self.id, stream)
            else:
                tail = JsonlTail(self._files.path(fmt.STREAM_FILES[stream]), self.logdir)
            self._tails[stream] = tail
        return tail

    def _table(self, stream: str) -> NumericTable:
        table = self._tables.get(stream)
        if table is None:
            table = NumericTable(MAX_METRIC_COLUMNS, MAX_CELLS[stream], NUMERIC_COLUMNS[stream])
            self._tables[stream] = table
        return table

    def _read_stream(self, stream: str, tail: JsonlTail | SegmentTail) -> bool:
        changed, more = False, True
        # Record streams keep only their newest MAX_RECORD_BYTES: slices wholly older than that are counted, never
        # parsed (a million-event file costs a newline count, not a million json.loads).
        waiting: list[bytes] = []
        while more:
            # Read a slice at a time, so a huge backlog (a long run opened late) never sits in memory as text.
            try:
                chunk = tail.read(REFRESH_SLICE_BYTES)
            except OSError as exc:
                self._problem(f"{fmt.STREAM_FILES[stream]}: {exc.strerror or exc}")
                break
            if chunk.reset:
                self._drop(stream)
                waiting.clear()
                changed = True
            for problem in chunk.problems:
                self._problem(problem)
            if chunk.data:
                changed = True
                if stream in NUMERIC_COLUMNS:
                    self._ingest(stream, chunk.data)
                else:
                    waiting.append(chunk.data)
                    while len(waiting) > 1 and sum(map(len, waiting[1:])) >= MAX_RECORD_BYTES[stream]:
                        self._records_dropped[stream] += waiting.pop(0).count(b"\n")
            more = chunk.more
        if waiting:
            self._ingest(stream, b"".join(waiting))
        return changed

    def _drop(self, stream: str) -> None:
        """Forget what was read of a stream whose file was replaced or truncated, and what was said about it (lines
        skipped, records not kept): those were the old file's."""
        relpath = fmt.STREAM_FILES[stream]
        heads = (f"{relpath}: ", f"{os.path.basename(relpath)}: ")
        self.problems = [p for p in self.problems if not p.startswith(heads)]
        self._malformed[stream] = 0
        if stream in NUMERIC_COLUMNS:
            self._table(stream).clear()
        else:
            self._records[stream], self._record_sizes[stream] = [], []
            self._records_dropped[stream] = 0

    def _ingest(self, stream: str, data: bytes) -> None:
        if stream in NUMERIC_COLUMNS:
            bad = self._ingest_numeric(stream, data)
        else:
            bad = self._ingest_records(stream, data)
        if bad:  # one note per stream, counting every malformed line read so far
            self._malformed[stream] += bad
            head = f"{fmt.STREAM_FILES[stream]}: "
            self.problems = [p for p in self.problems if not (p.startswith(head) and p.endswith(MALFORMED_NOTE))]
            self._problem(f"{head}{self._malformed[stream]:,}{MALFORMED_NOTE}")

    def _ingest_numeric(self, stream: str, data: bytes) -> int:
        table = self._table(stream)
        if table.full:  # nothing more is kept: count the lines instead of parsing them
            table.dropped_rows += data.count(b"\n")
            bad = 0
        else:
            columns, rows, bad = parse_numeric_columns(data, MAX_METRIC_COLUMNS, table.dropped_names)
            table.append(columns, rows)
        if table.dropped_columns:
            more = f"{table.dropped_columns:,}" + ("+" if table.dropped_columns >= MAX_DROPPED_NAMES else "")
            self._truncated(stream, more, "columns", f"the first {MAX_METRIC_COLUMNS:,} are")
        if table.dropped_rows:
            self._truncated(stream, f"{table.dropped_rows:,}", "rows", f"the first {len(table):,} are")
        return bad

    def _ingest_records(self, stream: str, data: bytes) -> int:
        """Parse the newest records of `data` that fit the stream's budget; older ones are counted, not parsed."""
        budget = MAX_RECORD_BYTES[stream]
        if len(data) > budget:
            cut = data.find(b"\n", len(data) - budget - 1) + 1
            self._records_dropped[stream] += data.count(b"\n", 0, cut)
            data = data[cut:]
        sizes: list[int] = []
        records, bad = parse_records(data, sizes)
        kept, kept_sizes = self._records[stream], self._record_sizes[stream]
        kept.extend(records)
        kept_sizes.extend(sizes)
        total, first = sum(kept_sizes), max(len(kept) - MAX_RECORDS[stream], 0)
        total -= sum(kept_sizes[:first])
        while total > budget and first < len(kept):
            total -= kept_sizes[first]
            first += 1
        if first:
            del kept[:first], kept_sizes[:first]
            self._records_dropped[stream] += first
        if self._records_dropped[stream]:
            self._truncated(stream, f"{self._records_dropped[stream]:,}", "records", f"the newest {len(kept):,} are")
        return bad

    def _truncated(self, stream: str, count: str, what: str, kept: str) -> None:
        """Report, or update the count of, what a stream's caps left out: "events.jsonl: truncated: 990,000 more
        records not kept (the newest 10,000 are)"."""
        head = f"{fmt.STREAM_FILES[stream]}: truncated: "
        self.problems = [p for p in self.problems if not (p.startswith(head) and f" more {what} not kept" in p)]
        self._problem(f"{head}{count} more {what} not kept ({kept})")

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
            self.refresh((stream,))
            return self._table(stream).arrays()

    def activations(self) -> pd.DataFrame:
        """step, epoch, layer, mean, std, min, max, zero_frac, histogram ({"edges": [...], "counts": [...]})."""
        return self._recordframe_of("activations")

    def weights(self) -> pd.DataFrame:
        """step, epoch, layer, weight, mean, std, norm, min, max, histogram."""
        return self._recordframe_of("weights")

    def gradients(self) -> pd.DataFrame:
        """step, epoch, layer, weight, norm, max_abs, nonfinite_frac, global_norm, snapshot: gradient statistics per
        trainable weight on LiveMonitor's `gradient_data` (`snapshot` true for those taken at the divergence)."""
        return self._recordframe_of("gradients")

    def events(self) -> pd.DataFrame:
        """time, step, epoch, kind, message, data."""
        return self._recordframe_of("events")

    @property
    def divergence(self) -> Divergence | None:
        """The run's `divergence` event (written by LiveMonitor: the step, the LR and the layer that broke first);
        for runs without one, where the loss (any metric named like one) first became NaN or infinite, or the NaN a
        NaN guard (TerminateOnNaN) stopped on; None otherwise (a custom metric that is NaN does not mean the training
        broke)."""
        return _divergence(self.summary.get("divergence"))

    @property
    def stop(self) -> Stop | None:
        """The last time training stopped before its last epoch, or None (from the events)."""
        return _stop(self.summary.get("stop"))

    @property
    def best_epoch(self) -> int | None:
        """The 0-based epoch with the best value of the metric the run monitors (`LiveMonitor(monitor=...)`, else
        val_loss or loss), in its direction; None when no epoch logged it."""
        return as_whole(self.summary.get("best_epoch"))

    def phases(self) -> pd.DataFrame:
        """One row per fit() call: phase, step, epoch, trainable_params, non_trainable_params, epochs, lr, ..."""
        events = self.events()
        rows = []
        for _, event in events[events["kind"] == fmt.EVENT_PHASE].iterrows():
            data = event["data"] if isinstance(event["data"], dict) else {}
            rows.append({"step": event["step"], "epoch": event["epoch"], "time": event["time"], **data})
        return pd.DataFrame(rows)

    def layers(self) -> pd.DataFrame:
        """phase, name, class, output_shape, params, trainable: the layer table recorded at each fit() call."""
        with self._lock:
            self.refresh(("layers",))
            rows = []
            for entry in self._records["layers"]:
                layers = entry.get("layers")
                for layer in layers if isinstance(layers, list) else []:
                    if isinstance(layer, dict):
                        rows.append({"phase": entry.get("phase"), **layer})
            return frame_of(rows, fmt.LAYER_COLUMNS)

    def checkpoints(self) -> pd.DataFrame:
        """epoch, step, path (relative to the run directory), monitor, value, is_best, bytes, time."""
        try:
            index = self._files.read_json(fmt.CHECKPOINT_INDEX_FILE)
        except FileNotFoundError:
            index = []
        except RunFormatError as exc:
            self._problem(f"{fmt.CHECKPOINT_INDEX_FILE}: {exc}")
            index = []
        rows = [row for row in index if isinstance(row, dict)] if isinstance(index, list) else []
        return frame_of(rows, fmt.CHECKPOINT_COLUMNS)

    def model_summary(self) -> str:
        """The model.summary() text recorded at the last fit() call ("" when none)."""
        return self._files.read_text(fmt.SUMMARY_FILE)

    def model_graph_dot(self) -> str:
        """DOT source of the model graph ("" when none)."""
        return self._files.read_text(fmt.GRAPH_DOT_FILE)

    def model_graph_png(self) -> str | None:
        """Path of the plot_model PNG, or None when graphviz was not available to the training process (or the file
        is not a PNG)."""
        return self._files.png(fmt.GRAPH_PNG_FILE)

    def model_config(self) -> dict[str, Any] | None:
        """model.get_config() as JSON (never deserialized into a model), or None."""
        try:
            config = self._files.read_json(fmt.CONFIG_FILE)
        except (FileNotFoundError, RunFormatError):
            return None
        return config if isinstance(config, dict) else None

    def file_path(self, relpath: str) -> str:
        """Absolute path of a regular file inside this run (a checkpoint to download); refuses `..`, absolute paths
        and links that leave the run (PermissionError), and what is not a regular file (FileNotFoundError)."""
        return self._files.served(relpath)

    def open_file(self, relpath: str) -> BinaryIO:
        """Open a regular file inside this run for reading in binary mode (a checkpoint to download): refuses what
        `file_path` refuses, and never blocks on a FIFO swapped in for the file since it was checked.

        Example:
        ```python
        with run.open_file("checkpoints/best.keras") as f:
            data = f.read()
        ```
        """
        return open_regular(self.file_path(relpath))

    def _numeric(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh((stream,))
            return self._table(stream).frame(NUMERIC_COLUMNS[stream])

    def _recordframe_of(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh((stream,))
            if stream not in self._frames:
                self._frames[stream] = frame_of(self._records[stream], RECORD_COLUMNS[stream])
            return self._frames[stream]


@dataclass(frozen=True)
class Snapshot:
    """What a Run read to be listed (run.json, status.json, the summary, and the stamps they were read at)."""

    meta: dict[str, Any]
    error: str | None
    status: dict[str, Any]
    status_stamp: tuple[int, int] | None
    summary: dict[str, Any] | None
    summary_key: tuple[Any, ...] | None
    meta_stamp: tuple[Any, ...] | None = None  # run.json's stamp when `meta` was read (None: read it again)


def file_stamp(path: str) -> tuple[int, int, int] | None:
    """(size, mtime in ns, inode) of a file, None when it is missing or cannot be examined."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def _divergence(value: Any) -> Divergence | None:
    """The summary's `divergence` (monitor/summary.py: a `divergence` event's fields, or a first NaN's) as a
    Divergence; malformed fields read as None."""
    if not isinstance(value, dict):
        return None
    rule = value.get("rule")
    layer, evidence = value.get("layer"), value.get("evidence")
    return Divergence(
        metric=str(value.get("metric") or "a metric"),
        value=str(value.get("value") or "nan"),
        step=as_whole(value.get("step")),
        epoch=as_whole(value.get("epoch")),
        rule=rule if rule in (fmt.DIVERGENCE_NONFINITE, fmt.DIVERGENCE_SPIKE) else fmt.DIVERGENCE_NONFINITE,
        lr=as_number(value.get("lr")),
        layer=layer if isinstance(layer, str) else None,
        best=as_number(value.get("best")),
        evidence=evidence if isinstance(evidence, dict) else None,
    )


def _stop(value: Any) -> Stop | None:
    epoch = as_whole(value.get("epoch")) if isinstance(value, dict) else None
    return None if epoch is None else Stop(epoch, by_nan_guard=value.get("by_nan_guard") is True)


def frame_of(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """`rows` as a DataFrame whose `columns` come first and always exist (None where no row has them)."""
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    ordered = list(columns) + [c for c in frame.columns if c not in columns]
    return frame[ordered]

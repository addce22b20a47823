"""Run: one run directory (finished, live or broken), read as typed values and pandas DataFrames.

Each Run keeps a `JsonlTail` per stream, so calling a reader method again only parses what was appended since.
Run objects are cached by the store and are safe to share between threads (Streamlit sessions).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

import numpy as np
import pandas as pd

from kerascope.monitor import format as fmt
from kerascope.monitor.remote_reader import RemoteRoot, RemoteRunFiles, SegmentTail
from kerascope.monitor.run_files import RunFiles, RunFormatError
from kerascope.monitor.run_info import Divergence, ModelInfo, RunProgress, Stop, as_time
from kerascope.monitor.table import MAX_DROPPED_NAMES, NumericTable
from kerascope.monitor.tail import JsonlTail, parse_numeric_columns, parse_records

REFRESH_SLICE_BYTES = 32 * 1024 * 1024
MAX_PROBLEMS = 50
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
    written), `error`, `problems` (what was skipped while reading), `version` (grows with each new record read).

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

    def __init__(self, path: str, logdir: str | None = None, *, root: RemoteRoot | None = None) -> None:
        self.meta: dict[str, Any] = {}
        self.error: str | None = None
        self.problems: list[str] = []
        self.version = 0
        self._status_info: dict[str, Any] = {}
        self._status_stamp: tuple[Any, int] | None = None
        self._lock = threading.RLock()
        if root is not None:  # on an object store (`path` is the run id): segments instead of appended files
            self.id, self.logdir = path, root.url
            self.path = root.store.run_url(path)
            self._files: RunFiles | RemoteRunFiles = RemoteRunFiles(root, path)
            self._tails: dict[str, JsonlTail | SegmentTail] = {s: SegmentTail(root, path, s) for s in fmt.STREAM_FILES}
        else:
            self.path = os.path.abspath(path)
            self.logdir = os.path.abspath(logdir) if logdir else os.path.dirname(self.path)
            self.id = os.path.basename(self.path)
            self._files = RunFiles(self.path, self.logdir)
            self._tails = {s: JsonlTail(self._files.path(name), self.logdir) for s, name in fmt.STREAM_FILES.items()}
        self._tables = {stream: NumericTable(MAX_METRIC_COLUMNS, MAX_CELLS[stream], NUMERIC_COLUMNS[stream])
                        for stream in NUMERIC_COLUMNS}
        self._records: dict[str, list[dict[str, Any]]] = {s: [] for s in fmt.STREAM_FILES if s not in NUMERIC_COLUMNS}
        self._record_sizes: dict[str, list[int]] = {stream: [] for stream in self._records}
        self._records_dropped = dict.fromkeys(self._records, 0)
        self._frames: dict[str, pd.DataFrame] = {}
        self._load_meta()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r}, status={self.status!r})"

    # -- identity and status -----------------------------------------------------------------------------------

    def _load_meta(self) -> None:
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
        created = as_time(self.meta.get("created"))
        if created is not None:
            return created
        try:
            return os.path.getmtime(self.path)
        except OSError:
            return 0.0

    @property
    def status_info(self) -> dict[str, Any]:
        """status.json as last written (re-read only when the file changed)."""
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
        if status in (fmt.FINISHED, fmt.INTERRUPTED) and self.divergence is not None:
            return fmt.DIVERGED
        return status

    @property
    def reason(self) -> str | None:
        """Why the run is broken, failed, interrupted or stale, in words."""
        if self.error:
            return self.error
        status = self.status
        if status == fmt.STALE:
            return f"no heartbeat for over {fmt.STALE_AFTER_S:.0f} s: the training process probably died"
        if status == fmt.DIVERGED:
            divergence, stop = self.divergence, self.stop
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
        reason = self.status_info.get("reason")
        if status == fmt.BROKEN and not reason:
            found = self.status_info.get("status")
            return f"status.json has no valid status (found {found!r:.40}; expected one of {', '.join(fmt.STATUSES)})"
        return str(reason) if reason else None

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
    def options(self) -> dict[str, Any] | None:
        """The LiveMonitor options the run was recorded with (update_freq, checkpoint, monitor, ...)."""
        options = self.meta.get("options")
        return options if isinstance(options, dict) else None

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
        metrics = self.meta.get("metrics")
        if not isinstance(metrics, dict):
            return {}
        directions = {}
        for name, entry in metrics.items():
            direction = entry.get("direction") if isinstance(entry, dict) else None
            if direction in (fmt.MIN, fmt.MAX):
                directions[name] = direction
        return directions

    def metric_direction(self, name: str) -> str:
        """"min" or "max": which way `name` (a logged metric, `val_` twins included) is better.

        As recorded in `metric_directions`; for runs recorded without it, and metrics it does not list, the rule of
        `monitor.format.metric_direction` on the name.
        """
        directions = self.metric_directions
        for key in (name, name.removeprefix(fmt.VAL_PREFIX)):
            if key in directions:
                return directions[key]
        return fmt.metric_direction(name)

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

    def _read_stream(self, stream: str, tail: JsonlTail | SegmentTail) -> bool:
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
            self._records[stream], self._record_sizes[stream] = [], []
            self._records_dropped[stream] = 0

    def _ingest(self, stream: str, data: bytes) -> None:
        if stream in self._tables:
            bad = self._ingest_numeric(stream, data)
        else:
            bad = self._ingest_records(stream, data)
        if bad:
            self._problem(f"{fmt.STREAM_FILES[stream]}: {bad} malformed line(s) skipped")

    def _ingest_numeric(self, stream: str, data: bytes) -> int:
        table = self._tables[stream]
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
            self.refresh()
            return self._tables[stream].arrays()

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
        events = self.events()
        recorded = events[events["kind"] == fmt.EVENT_DIVERGENCE]
        if len(recorded):
            return _divergence_of(recorded.iloc[0])
        nans = events[events["kind"] == fmt.EVENT_NAN]
        names = nans["data"].map(lambda data: str(data.get("metric", "")) if isinstance(data, dict) else "")
        losses = nans[names.str.contains("loss")]
        stop = self.stop
        if len(losses):
            first = losses.iloc[0]
        elif stop is not None and stop.by_nan_guard:
            first = nans.iloc[0]
        else:
            return None
        data = first["data"] if isinstance(first["data"], dict) else {}
        value = data.get("value")
        text = str(value).lower() if isinstance(value, (int, float)) else "nan"
        return Divergence(str(data.get("metric") or "a metric"), text, _whole(first["step"]), _whole(first["epoch"]))

    @property
    def stop(self) -> Stop | None:
        """The last time training stopped before its last epoch, or None (from the events)."""
        events = self.events()
        stops = events[events["kind"] == fmt.EVENT_EARLY_STOP]
        if not len(stops):
            return None
        last = stops.iloc[-1]
        data = last["data"] if isinstance(last["data"], dict) else {}
        epoch = _whole(data.get("epoch"))
        if epoch is None:
            epoch = _whole(last["epoch"])
        if epoch is None:
            return None
        nans = events[(events["kind"] == fmt.EVENT_NAN) & (pd.to_numeric(events["epoch"], errors="coerce") == epoch)]
        return Stop(epoch, by_nan_guard=bool(len(nans)))

    @property
    def best_epoch(self) -> int | None:
        """The 0-based epoch with the best value of the metric the run monitors (`LiveMonitor(monitor=...)`, else
        val_loss or loss), in its direction; None when no epoch logged it."""
        frame = self.epoch_metrics()
        monitored = (self.options or {}).get("monitor")
        names = [monitored] if isinstance(monitored, str) else []
        name = next((n for n in [*names, "val_loss", "loss"] if n in frame and frame[n].notna().any()), None)
        if name is None:
            return None
        values = pd.to_numeric(frame[name], errors="coerce").where(lambda v: np.isfinite(v))
        if values.isna().all():
            return None
        index = values.idxmin() if self.metric_direction(name) == fmt.MIN else values.idxmax()
        return _whole(frame.loc[index, "epoch"])

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
            self.refresh()
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

    def _numeric(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh()
            return self._tables[stream].frame(NUMERIC_COLUMNS[stream])

    def _recordframe_of(self, stream: str) -> pd.DataFrame:
        with self._lock:
            self.refresh()
            if stream not in self._frames:
                self._frames[stream] = frame_of(self._records[stream], RECORD_COLUMNS[stream])
            return self._frames[stream]


def frame_of(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """`rows` as a DataFrame whose `columns` come first and always exist (None where no row has them)."""
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = pd.Series(dtype=object)
    ordered = list(columns) + [c for c in frame.columns if c not in columns]
    return frame[ordered]


def _divergence_of(event: pd.Series) -> Divergence:
    """A `divergence` event as a Divergence; malformed fields read as None."""
    data = event["data"] if isinstance(event["data"], dict) else {}
    value, rule = data.get("value"), data.get("rule")
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    text = f"{number:.4g}" if math.isfinite(number) else str(float(number)).lower()
    step = _whole(data.get("step"))
    evidence = data.get("evidence")
    return Divergence(
        metric=str(data.get("metric") or "a metric"),
        value=text,
        step=step if step is not None else _whole(event["step"]),
        epoch=_whole(event["epoch"]),
        rule=rule if rule in (fmt.DIVERGENCE_NONFINITE, fmt.DIVERGENCE_SPIKE) else fmt.DIVERGENCE_NONFINITE,
        lr=as_time(data.get("lr")),
        layer=str(data["layer"]) if isinstance(data.get("layer"), str) else None,
        best=as_time(data.get("best")),
        evidence=evidence if isinstance(evidence, dict) else None,
    )


def _whole(value: Any) -> int | None:
    """A step or epoch from a frame cell (pandas turns integer columns with gaps into floats): int, or None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    if not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else None

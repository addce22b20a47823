"""summary.json: what the runs list shows of a run, so that listing a root reads three small files per run.

The writer folds each epoch and event record into a `SummaryBuilder` as it flushes them and replaces summary.json
atomically; a reader given a run without one (written before it existed, or killed between two writes) derives the
same summary from epoch.jsonl and events.jsonl with `derive_summary`. Everything here works on dicts and bytes, not on
paths, so that other storage (object stores) can reuse it; nothing here imports numpy or pandas (the training side
imports it).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from kerascope.monitor import format as fmt
from kerascope.monitor.run_info import as_number, as_whole
from kerascope.monitor.tail import iter_records

# status.json fields copied into the summary's `progress`.
PROGRESS_FIELDS = ("epoch", "epochs", "step", "steps_per_epoch", "phase", "started", "ended", "heartbeat", "reason")
MODEL_FIELDS = ("name", "class", "total_params", "trainable_params", "size_bytes")
# The event kinds `SummaryBuilder.add_event` reads, as JSON strings in a line.
_SUMMARY_EVENT_KINDS = re.compile(b'"(?:%b)"' % b"|".join(
    re.escape(kind.encode()) for kind in (fmt.EVENT_NAN, fmt.EVENT_DIVERGENCE, fmt.EVENT_EARLY_STOP)))


class SummaryBuilder:
    """Folds epoch.jsonl and events.jsonl records, in file order, into what summary.json holds.

    Example:
    ```python
    builder = SummaryBuilder()
    builder.add_epoch({"epoch": 0, "step": 10, "time": 1.0, "loss": 0.5})
    summary = builder.summary(meta={"name": "mlp"}, status={"status": "running"}, sources={})
    summary["metrics"]["loss"]  # {"last": 0.5, "best": 0.5, "best_epoch": 0, "direction": "min"}
    ```
    """

    def __init__(self) -> None:
        self.epochs_logged = 0
        self.last_epoch: dict[str, Any] | None = None
        # name -> [last, min, min epoch, max, max epoch, has a non-NaN value]; best is picked by direction at the end
        # (run.json `metrics` may name the direction after the first values).
        self._metrics: dict[str, list[Any]] = {}
        self._loss_nan: dict[str, Any] | None = None
        self._divergence: dict[str, Any] | None = None  # the first `divergence` event LiveMonitor wrote
        self._first_nan: dict[str, Any] | None = None
        self._nan_epochs: set[int] = set()
        self._stop_epoch: int | None = None

    def add_epoch(self, record: dict[str, Any]) -> None:
        epoch = as_whole(record.get("epoch"))
        self.epochs_logged += 1
        self.last_epoch = {key: record.get(key) for key in fmt.EPOCH_COLUMNS}
        for name, value in record.items():
            if name in fmt.NON_METRIC_COLUMNS or name.startswith(fmt.BATCH_VALUE_PREFIX):
                continue
            if not isinstance(value, (int, float)):
                continue
            value = float(value)
            entry = self._metrics.setdefault(name, [math.nan, None, None, None, None, False])
            entry[0] = value
            if not math.isnan(value):
                entry[5] = True
            if math.isfinite(value):
                if entry[1] is None or value < entry[1]:
                    entry[1], entry[2] = value, epoch
                if entry[3] is None or value > entry[3]:
                    entry[3], entry[4] = value, epoch

    def add_event(self, record: dict[str, Any]) -> None:
        kind = record.get("kind")
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        if kind == fmt.EVENT_NAN:
            metric = str(data.get("metric") or "a metric")
            value = data.get("value")
            nan = {"metric": metric, "value": str(value).lower() if isinstance(value, (int, float)) else "nan",
                   "step": as_whole(record.get("step")), "epoch": as_whole(record.get("epoch"))}
            if self._first_nan is None:
                self._first_nan = nan
            if self._loss_nan is None and "loss" in str(data.get("metric", "")):
                self._loss_nan = nan
            if nan["epoch"] is not None:
                self._nan_epochs.add(nan["epoch"])
        elif kind == fmt.EVENT_DIVERGENCE and self._divergence is None:
            found = divergence_of_event(record)
            if fmt.is_loss_divergence(found["metric"], found["rule"]):
                self._divergence = found
        elif kind == fmt.EVENT_EARLY_STOP:
            epoch = as_whole(data.get("epoch"))
            self._stop_epoch = epoch if epoch is not None else as_whole(record.get("epoch"))

    def add_lines(self, stream: str, data: bytes) -> None:
        """Feed complete JSONL lines of "epoch" or "events" (malformed lines are skipped, as readers do)."""
        if stream == "events":
            # Only three kinds of event change a summary: only the lines that name one of them are parsed (a run may
            # hold a million events).
            line_end = 0
            for match in _SUMMARY_EVENT_KINDS.finditer(data):
                if match.start() < line_end:
                    continue  # the line was read already
                line_start = data.rfind(b"\n", 0, match.start()) + 1
                line_end = data.find(b"\n", match.end()) + 1 or len(data)
                for record, _ in iter_records(data[line_start:line_end]):
                    if record is not None:
                        self.add_event(record)
            return
        for record, _ in iter_records(data):
            if record is not None:
                self.add_epoch(record)

    def summary(self, meta: dict[str, Any], status: dict[str, Any], sources: dict[str, int]) -> dict[str, Any]:
        """The summary.json content for a run with this run.json (`meta`) and status.json (`status`).

        Args:
            meta: run.json as a dict. status: status.json as a dict.
            sources: {EPOCH_FILE: bytes, EVENTS_FILE: bytes} the records fed so far came from.
        """
        directions = fmt.recorded_directions(meta.get("metrics"))
        metrics = {}
        for name, (last, low, low_epoch, high, high_epoch, _) in self._metrics.items():
            direction = fmt.metric_direction(name, directions)
            best, best_epoch = (low, low_epoch) if direction == fmt.MIN else (high, high_epoch)
            metrics[name] = dict(zip(fmt.SUMMARY_METRIC_FIELDS, (last, best, best_epoch, direction), strict=True))
        options = meta.get("options") if isinstance(meta.get("options"), dict) else {}
        monitored = options.get("monitor")
        candidates = ([monitored] if isinstance(monitored, str) else []) + ["val_loss", "loss"]
        monitor = next((name for name in candidates if name in self._metrics and self._metrics[name][5]), None)
        stop = None
        if self._stop_epoch is not None:
            stop = {"epoch": self._stop_epoch, "by_nan_guard": self._stop_epoch in self._nan_epochs}
        divergence = self._divergence or self._loss_nan or (self._first_nan if stop and stop["by_nan_guard"] else None)
        started, ended = as_number(status.get("started")), as_number(status.get("ended"))
        end = ended or as_number(status.get("heartbeat"))
        model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
        summary = {
            "summary_version": fmt.SUMMARY_VERSION,
            "time": time.time(),
            "name": meta.get("name"),
            "status": status.get("status"),
            "progress": {key: status.get(key) for key in PROGRESS_FIELDS if key in status},
            "duration_s": None if started is None or end is None else max(end - started, 0.0),
            "model": {key: model.get(key) for key in MODEL_FIELDS if key in model},
            "hparams": meta.get("hparams"),
            "tags": meta.get("tags"),
            fmt.RUN_GROUP: meta.get(fmt.RUN_GROUP),
            "notes": meta.get("notes"),
            "epochs_logged": self.epochs_logged,
            "last_epoch": self.last_epoch,
            "metrics": metrics,
            "monitor": monitor,
            "best_epoch": metrics[monitor]["best_epoch"] if monitor else None,
            "divergence": divergence,
            "stop": stop,
            "sources": dict(sources),
        }
        return {name: summary[name] for name in fmt.SUMMARY_FIELDS}  # the documented fields, in their order


def divergence_of_event(record: dict[str, Any]) -> dict[str, Any]:
    """A `divergence` event as the summary keeps it (the fields of `run_info.Divergence`); malformed fields are None."""
    data = record.get("data") if isinstance(record.get("data"), dict) else {}
    value = data.get("value")
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    step = as_whole(data.get("step"))
    evidence = data.get("evidence")
    return {
        "metric": str(data.get("metric") or "a metric"),
        "value": f"{number:.4g}" if math.isfinite(number) else str(number).lower(),
        "step": step if step is not None else as_whole(record.get("step")),
        "epoch": as_whole(record.get("epoch")),
        "rule": data.get("rule") if data.get("rule") in (fmt.DIVERGENCE_NONFINITE, fmt.DIVERGENCE_SPIKE)
        else fmt.DIVERGENCE_NONFINITE,
        "lr": as_number(data.get("lr")),
        "layer": data["layer"] if isinstance(data.get("layer"), str) else None,
        "best": as_number(data.get("best")),
        "evidence": evidence if isinstance(evidence, dict) else None,
    }


def encode_summary(summary: dict[str, Any]) -> bytes:
    """summary.json's bytes (compact JSON; NaN and Infinity as the format's JSON extensions)."""
    return json.dumps(fmt.to_jsonable(summary), separators=(",", ":"), allow_nan=True).encode("utf-8")


def checked_summary(summary: Any) -> dict[str, Any] | None:
    """`summary` (parsed JSON) when it is a summary this version reads, else None."""
    if not isinstance(summary, dict):
        return None
    version = summary.get("summary_version")
    if as_whole(version) is None or version > fmt.SUMMARY_VERSION:
        return None
    if not isinstance(summary.get("metrics"), dict) or not isinstance(summary.get("sources"), dict):
        return None
    return summary


def is_current(summary: dict[str, Any], sizes: dict[str, int]) -> bool:
    """True when `summary` was made from exactly these sizes of epoch.jsonl and events.jsonl (missing files: 0)."""
    sources = summary.get("sources", {})
    return all(sources.get(name, 0) == size for name, size in sizes.items())


def derive_summary(meta: dict[str, Any], status: dict[str, Any], epoch_data: bytes, events_data: bytes
                   ) -> dict[str, Any]:
    """The summary of a run written without summary.json, from the whole content of its epoch.jsonl and
    events.jsonl (a torn last line is not a record: only complete lines count, and `sources` says how many bytes
    were summarized).

    Example:
    ```python
    summary = derive_summary(meta, status, epoch_bytes, events_bytes)
    encode_summary(summary)  # what the writer would have written
    ```
    """
    builder = SummaryBuilder()
    sources = {}
    for stream, name, data in (("epoch", fmt.EPOCH_FILE, epoch_data), ("events", fmt.EVENTS_FILE, events_data)):
        builder.add_lines(stream, data[: data.rfind(b"\n") + 1])
        sources[name] = len(data)
    return builder.summary(meta, status, sources)

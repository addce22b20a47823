"""Typed views of run.json, status.json and summary.json values: what `Run.model_info`, `Run.options`,
`Run.progress` and `Run.overview()` return.

All are built from untrusted JSON: a field that is missing or of the wrong type is None, never an exception.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kerascope.monitor import format as fmt


def as_int(value: Any) -> int | None:
    """`value` when it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_number(value: Any) -> float | None:
    """`value` as a float when it is a JSON number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def as_whole(value: Any) -> int | None:
    """A step or epoch: an integer, or a float holding one (JSON writers and pandas turn integers into floats);
    None for anything else (a bool, a fraction, NaN, text)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() else None


@dataclass(frozen=True)
class ModelInfo:
    """run.json `model`: the model's name, class and parameter counts (of the latest fit() call).

    Example:
    ```python
    info = run.model_info
    print(info.total_params if info else "no model recorded")
    ```
    """

    name: str | None = None
    class_name: str | None = None
    total_params: int | None = None
    trainable_params: int | None = None
    non_trainable_params: int | None = None
    size_bytes: int | None = None

    @classmethod
    def from_json(cls, value: Any) -> ModelInfo | None:
        if not isinstance(value, dict):
            return None
        name, class_name = value.get("name"), value.get("class")
        return cls(
            name=name if isinstance(name, str) else None,
            class_name=class_name if isinstance(class_name, str) else None,
            total_params=as_int(value.get("total_params")),
            trainable_params=as_int(value.get("trainable_params")),
            non_trainable_params=as_int(value.get("non_trainable_params")),
            size_bytes=as_int(value.get("size_bytes")),
        )


@dataclass(frozen=True)
class RunOptions:
    """run.json `options`: the LiveMonitor options a run was recorded with, as far as readers use them.

    Every field is None when run.json does not hold it or holds a value LiveMonitor never writes there (a run written
    by RunWriter alone has no options at all).

    Example:
    ```python
    options = run.options
    if options.checkpoint == "best":
        print(f"best.keras follows {options.monitor} ({options.mode})")
    ```
    """

    logdir: str | None = None  # the runs folder, or the object-store URL without credentials
    update_freq: str | int | None = None  # "batch", "epoch" or every N-th batch
    checkpoint: str | None = None  # "best", "last" or "all" (format.CHECKPOINT_POLICIES); None: no checkpoints
    monitor: str | None = None  # the metric checkpoints and the best epoch follow ("val_loss")
    mode: str | None = None  # "auto", "min" or "max" for `monitor`

    @classmethod
    def from_json(cls, value: Any) -> RunOptions:
        if not isinstance(value, dict):
            return cls()
        logdir, update_freq = value.get("logdir"), value.get("update_freq")
        checkpoint, monitor, mode = value.get("checkpoint"), value.get("monitor"), value.get("mode")
        every = as_int(update_freq)
        return cls(
            logdir=logdir if isinstance(logdir, str) else None,
            update_freq=update_freq if update_freq in ("batch", "epoch") else every if every and every > 0 else None,
            checkpoint=checkpoint if checkpoint in fmt.CHECKPOINT_POLICIES else None,
            monitor=monitor if isinstance(monitor, str) and monitor else None,
            mode=mode if mode in ("auto", fmt.MIN, fmt.MAX) else None,
        )


@dataclass(frozen=True)
class MetricSummary:
    """One epoch metric of a run as the runs list shows it (summary.json `metrics`, `Overview.metrics`): its last
    value, its best one in its direction, and the 0-based epoch of the best.

    `last` may be NaN or infinite (the metric diverged); `best` is finite. Malformed values read as None; `direction`
    is always "min" or "max" (as recorded, else `Run.metric_direction`).

    Example:
    ```python
    val_loss = run.overview().metrics.get("val_loss")
    if val_loss and val_loss.best is not None:
        print(f"best {val_loss.best:.4g} at epoch {val_loss.best_epoch + 1}")
    ```
    """

    last: float | None
    best: float | None
    best_epoch: int | None
    direction: str

    @classmethod
    def from_json(cls, value: Any, direction: Callable[[], str]) -> MetricSummary | None:
        """An entry of summary.json `metrics`; None when it is not an object. `direction()` gives the run's direction
        for the metric, asked only when the entry's own is missing or malformed."""
        if not isinstance(value, dict):
            return None
        recorded = value.get("direction")
        return cls(
            last=as_number(value.get("last")),
            best=as_number(value.get("best")),
            best_epoch=as_whole(value.get("best_epoch")),
            direction=recorded if recorded in (fmt.MIN, fmt.MAX) else direction(),
        )


@dataclass(frozen=True)
class Divergence:
    """Where training first diverged: the run's `divergence` event (a metric became NaN/Inf, or the loss rose above
    10x its best), or for runs without one its first `nan` event on a loss.

    Example:
    ```python
    if run.divergence:
        d = run.divergence
        print(f"{d.metric} became {d.value} at step {d.step} (LR {d.lr}); first layer to break: {d.layer}")
    ```
    """

    metric: str
    value: str  # "nan", "inf" or "-inf"; for a loss spike, the loss value as text
    step: int | None
    epoch: int | None  # 0-based, as stored
    rule: str = "non-finite"  # or "spike": the loss rose above `best` x LiveMonitor's divergence_factor
    lr: float | None = None  # the learning rate at that step
    layer: str | None = None  # the first layer whose activations or gradients broke (see docs/run-format.md)
    best: float | None = None  # the run's best running-mean loss before it
    evidence: dict | None = None  # how `layer` was chosen: rule, source, value, baseline, ratio, nonfinite_layers


@dataclass(frozen=True)
class Stop:
    """Training stopped before its last epoch (`model.stop_training`): by EarlyStopping or any other callback, or by a
    NaN guard (TerminateOnNaN) when a metric became NaN or infinite in that epoch."""

    epoch: int  # 0-based, as stored
    by_nan_guard: bool


@dataclass(frozen=True)
class RunProgress:
    """status.json's progress fields: where the current fit() call stands and when the run started and ended.

    `epoch` is the latest 0-based epoch, `epochs` the exclusive end of the current fit(), `steps_per_epoch` None for
    unsized datasets; times are Unix seconds.

    Example:
    ```python
    progress = run.progress
    if progress.epoch is not None and progress.epochs:
        print(f"epoch {progress.epoch + 1}/{progress.epochs}")
    ```
    """

    epoch: int | None = None
    epochs: int | None = None
    step: int | None = None
    steps_per_epoch: int | None = None
    started: float | None = None
    ended: float | None = None
    heartbeat: float | None = None

    @classmethod
    def from_json(cls, value: Any) -> RunProgress:
        if not isinstance(value, dict):
            return cls()
        return cls(
            epoch=as_int(value.get("epoch")),
            epochs=as_int(value.get("epochs")),
            step=as_int(value.get("step")),
            steps_per_epoch=as_int(value.get("steps_per_epoch")),
            started=as_number(value.get("started")),
            ended=as_number(value.get("ended")),
            heartbeat=as_number(value.get("heartbeat")),
        )


@dataclass(frozen=True)
class Overview:
    """What the runs list shows of one run (`Run.overview()`), read in one pass over run.json, status.json and the
    summary: the derived status and its reason, progress, and each epoch metric's last and best value.

    Example:
    ```python
    overview = run.overview()
    val_loss = overview.metrics.get("val_loss")
    print(overview.status, val_loss.best if val_loss else None)
    ```
    """

    status: str
    reason: str | None
    progress: RunProgress
    divergence: Divergence | None
    stop: Stop | None
    best_epoch: int | None  # 0-based epoch with the best value of the monitored metric
    last_epoch: int | None  # 0-based epoch of the last epoch record
    last_step: int | None  # its step
    metrics: dict[str, MetricSummary]  # each epoch metric's last and best value, by name

"""Typed views of run.json and status.json values: what `Run.model_info` and `Run.progress` return.

Both are built from untrusted JSON: a field that is missing or of the wrong type is None, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def as_int(value: Any) -> int | None:
    """`value` when it is a JSON integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_time(value: Any) -> float | None:
    """`value` as float seconds when it is a JSON number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
            started=as_time(value.get("started")),
            ended=as_time(value.get("ended")),
            heartbeat=as_time(value.get("heartbeat")),
        )


@dataclass(frozen=True)
class Overview:
    """What the runs list shows of one run (`Run.overview()`), read in one pass over run.json, status.json and the
    summary: the derived status and its reason, progress, and each epoch metric's last and best value.

    Example:
    ```python
    overview = run.overview()
    print(overview.status, overview.metrics.get("val_loss", {}).get("best"))
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
    metrics: dict[str, dict[str, Any]]  # summary.json `metrics`: {"val_loss": {"last", "best", "best_epoch", ...}}

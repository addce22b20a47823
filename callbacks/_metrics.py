"""Which logged metrics are running means (so a batch's own value can be derived), and which way is better."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras

# Names that are better when higher, for mode="auto" when the metric object does not say.
_HIGHER_IS_BETTER = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "score")


def flat_metrics(metrics: Iterable[Any]) -> list[Any]:
    """The metric objects behind model.metrics, with Keras's compile containers opened up."""
    flat = []
    for metric in metrics:
        children = getattr(metric, "metrics", None)
        if isinstance(children, (list, tuple)) and not isinstance(metric, keras.metrics.Mean):
            flat.extend(flat_metrics(children))
        else:
            flat.append(metric)
    return flat


def mean_metric_keys(log_keys: Iterable[str], metrics: Iterable[Any]) -> list[str]:
    """The log keys whose value is a running mean: loss and every keras.metrics.Mean subclass (accuracy, MAE, ...).

    Keras prefixes metrics of multi-output models with the output name ("head_accuracy") and numbers duplicates,
    so a key matches a metric by its name or by an `_<name>` suffix; a key that also matches a non-mean metric is
    left out rather than derived wrongly.
    """
    objects = flat_metrics(metrics)
    means = {m.name for m in objects if isinstance(m, keras.metrics.Mean)}
    others = {m.name for m in objects if not isinstance(m, keras.metrics.Mean)}

    def matches(key: str, names: set[str]) -> bool:
        return key in names or any(key.endswith("_" + name) for name in names)

    keys = []
    for key in log_keys:
        if key in others or (key not in means and matches(key, others)):
            continue
        if key == "loss" or key.endswith("_loss") or matches(key, means):
            keys.append(key)
    return keys


def better_mode(monitor: str, mode: str, metrics: Iterable[Any]) -> str:
    """Return "min" or "max" for `monitor`; mode="auto" is resolved like ModelCheckpoint does."""
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    for metric in flat_metrics(metrics):
        if metric.name == name and getattr(metric, "_direction", None) in ("up", "down"):
            return "max" if metric._direction == "up" else "min"
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else "min"

"""Which logged metrics are running means (so a batch's own value can be derived), and which way each is better."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras

from kerascope.monitor import format as fmt


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


def is_running_mean(metric: Any) -> bool:
    """A keras.metrics.Mean whose result is the mean itself (accuracy, MAE, ...); RootMeanSquaredError is a Mean
    subclass whose result is the root of one, which no per-batch value averages to."""
    return isinstance(metric, keras.metrics.Mean) and type(metric).result is keras.metrics.Mean.result


def mean_metric_keys(log_keys: Iterable[str], metrics: Iterable[Any]) -> list[str]:
    """The log keys whose value is a running mean: loss and every keras.metrics.Mean subclass that reports its mean
    (accuracy, MAE, ...; not RootMeanSquaredError).

    Keras prefixes metrics of multi-output models with the output name ("head_accuracy") and numbers duplicates,
    so a key matches a metric by its name or by an `_<name>` suffix; a key that also matches a non-mean metric is
    left out rather than derived wrongly.
    """
    objects = flat_metrics(metrics)
    means = {m.name for m in objects if is_running_mean(m)}
    others = {m.name for m in objects if not is_running_mean(m)}

    def matches(key: str, names: set[str]) -> bool:
        return key in names or any(key.endswith("_" + name) for name in names)

    keys = []
    for key in log_keys:
        if key in others or (key not in means and matches(key, others)):
            continue
        if key == "loss" or key.endswith("_loss") or matches(key, means):
            keys.append(key)
    return keys


def check_directions(overrides: dict[str, str] | None) -> dict[str, str]:
    """LiveMonitor's `metric_directions` as a dict; ValueError for a direction other than "min" or "max"."""
    overrides = dict(overrides or {})
    for name, direction in overrides.items():
        if direction not in (fmt.MIN, fmt.MAX):
            raise ValueError(f'metric_directions[{name!r}] must be "min" or "max", got {direction!r}')
    return overrides


def metric_direction(key: str, metrics: Iterable[Any], overrides: dict[str, str]) -> str:
    """"min" or "max" for a log key (`val_` twins as their metric), from the Keras metric objects.

    In order: the user's override (for the key or its metric), "min" for losses, the direction Keras gives its own
    metrics (`_direction`, set on accuracy, AUC, precision, recall, R2, F-scores, errors, crossentropies, ...), and
    for a metric that does not say (a user-defined function) the name rule of `monitor.format.metric_direction`.
    """
    name = key.removeprefix(fmt.VAL_PREFIX)
    for candidate in (key, name):
        if candidate in overrides:
            return overrides[candidate]
    if name == "loss" or name.endswith("_loss"):
        return fmt.MIN
    objects = flat_metrics(metrics)
    # Keras prefixes the metrics of multi-output models with the output name ("head_accuracy").
    matching = [m for m in objects if m.name == name] or [m for m in objects if name.endswith("_" + m.name)]
    for metric in matching:
        direction = getattr(metric, "_direction", None)
        if direction in ("up", "down"):
            return fmt.MAX if direction == "up" else fmt.MIN
    return fmt.metric_direction(name)

"""What run.json records about the environment, the model and the optimizer."""

from __future__ import annotations

import platform
import re
from typing import Any

import keras
import numpy as np

from kerascope.monitor.format import to_jsonable
from kerascope.monitor.storage import redact_url


def environment() -> dict[str, Any]:
    """Keras version, backend and Python version of the training process."""
    return {
        "keras_version": keras.__version__,
        "backend": keras.backend.backend(),
        "python_version": platform.python_version(),
    }


def _count(variables: list[Any]) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))


def _itemsize(dtype: Any) -> int:
    try:
        return np.dtype(str(dtype)).itemsize
    except TypeError:  # a dtype numpy does not know: its bit width is the first number in its name
        bits = re.search(r"\d+", str(dtype))  # "posit24_es2": 24 bits
        return max(1, -(-int(bits[0]) // 8)) if bits else 4


def parameter_counts(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) parameter counts now (they change when layers are frozen between fits)."""
    return _count(model.trainable_weights), _count(model.non_trainable_weights)


def model_info(model: keras.Model) -> dict[str, Any]:
    """run.json `model`: name, class, parameter counts and the weights' size in bytes."""
    trainable, non_trainable = parameter_counts(model)
    return {
        "name": model.name,
        "class": type(model).__name__,
        "total_params": trainable + non_trainable,
        "trainable_params": trainable,
        "non_trainable_params": non_trainable,
        "size_bytes": int(sum(int(np.prod(v.shape)) * _itemsize(v.dtype) for v in model.weights)),
    }


def optimizer_info(optimizer: Any) -> dict[str, Any] | None:
    """The optimizer's class and config; schedules appear as their own config (Keras serializes them)."""
    if optimizer is None:
        return None
    try:
        config = to_jsonable(optimizer.get_config())
    except Exception as exc:  # a custom optimizer without a working get_config still gets its class recorded
        config = {"error": f"get_config() failed: {type(exc).__name__}"}
    return {"class": type(optimizer).__name__, "config": config}


OPTION_NAMES = (
    "logdir",
    "update_freq",
    "activation_freq",
    "weight_freq",
    "gradient_freq",
    "divergence_factor",
    "checkpoint",
    "monitor",
    "mode",
    "metric_directions",
    "system_freq",
    "flush_interval",
    "strict",
    "resume",
)


def recorded_options(callback: Any) -> dict[str, Any]:
    """The options of a LiveMonitor (`callback`) in effect, and how many activation samples it was given."""
    options = {name: to_jsonable(getattr(callback, name)) for name in OPTION_NAMES}
    options["logdir"] = redact_url(str(callback.logdir))  # a URL may carry keys in its user part or query
    # The inputs of a multi-input model come as a dict, list or tuple of arrays: their first array says how many.
    arrays = [leaf for leaf in keras.tree.flatten(callback.activation_data) if hasattr(leaf, "shape")]
    options["activation_samples"] = int(arrays[0].shape[0]) if arrays else None
    return options

"""Tiny real models and data for the callback tests, and small readers of what LiveMonitor wrote."""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np

from kerascope import RunStore

FEATURES = 8
SAMPLES = 128
BATCH = 32  # 128 samples -> 4 steps per epoch (3 with a 0.25 validation split)


def data(samples: int = SAMPLES, features: int = FEATURES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable two-class data, so accuracy and loss move during a few epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")
    return x, y


def mlp(optimizer: Any = "adam", features: int = FEATURES, metrics: list[Any] | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ],
        name="tiny_mlp",
    )
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=metrics or ["accuracy"])
    return model


def read_jsonl(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def records(run_dir: str, relpath: str) -> list[dict[str, Any]]:
    return read_jsonl(os.path.join(run_dir, relpath))


def read_json(run_dir: str, relpath: str) -> Any:
    with open(os.path.join(run_dir, relpath), encoding="utf-8") as f:
        return json.load(f)


def events(run_dir: str, kind: str | None = None) -> list[dict[str, Any]]:
    found = records(run_dir, "events.jsonl")
    return [e for e in found if kind is None or e["kind"] == kind]


def open_run(run_dir: str):
    """The run as the dashboard sees it (RunStore over the run's root)."""
    store = RunStore(os.path.dirname(run_dir))
    return store.run(os.path.basename(run_dir))


class LearningRateRecorder(keras.callbacks.Callback):
    """The oracle for per-batch LR tests: the optimizer's own `learning_rate` just before each update.

    Put it last in the callback list, so that every other callback's on_epoch_begin has run.
    """

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.values.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

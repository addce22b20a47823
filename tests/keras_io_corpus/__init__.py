"""Short training scripts modelled on published keras.io examples, on synthetic data (seconds each).

Each module has `train(logdir, spy) -> list[keras.callbacks.History]`: it trains with a `LiveMonitor(logdir, ...)`
and `spy` (a `Spy`, last in the callback list) and returns the History of each fit() call. The test compares what
RunStore reads back with what Keras passed to the spy and with `history.history`.
"""

from __future__ import annotations

import copy
from typing import Any

import keras
import numpy as np

# What every script passes to LiveMonitor besides its own options: no system sampler or weight statistics (not what
# is compared), a short flush interval.
MONITOR = {"system_freq": 0, "weight_freq": 0, "flush_interval": 0.2}


class Spy(keras.callbacks.Callback):
    """What Keras hands to callbacks, per fit() call: batch logs, epoch logs, and the optimizer's LR before each step.

    KerasTuner deep-copies the callbacks of a search; the copies are this same spy, so every trial's fit() is seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self.fits: list[dict[str, list[Any]]] = []
        self._epoch = 0

    def __deepcopy__(self, memo: dict[int, Any]) -> Spy:
        return self

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.fits.append({"batches": [], "epochs": [], "lr": []})

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.model.optimizer
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        self.fits[-1]["lr"].append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.fits[-1]["batches"].append((self._epoch, batch, copy.copy(logs or {})))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.fits[-1]["epochs"].append((epoch, copy.copy(logs or {})))


def images(samples: int = 96, size: int = 12, channels: int = 1, classes: int = 3, seed: int = 0):
    """Images whose class shows in their mean brightness: a convnet learns it within a few epochs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, samples)
    x = rng.normal(size=(samples, size, size, channels)).astype("float32") * 0.5 + y[:, None, None, None]
    return x.astype("float32"), y.astype("int32")


def series(samples: int = 96, steps: int = 16, features: int = 2, seed: int = 0):
    """Sine waves of two frequencies (the class) plus noise, and the next value as a regression target."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, samples)
    t = np.arange(steps + 1)[None, :, None]
    phase = rng.uniform(0, 6.28, (samples, 1, features))
    wave = np.sin(t * (0.3 + 0.5 * y[:, None, None]) + phase) + 0.1 * rng.normal(size=(samples, steps + 1, features))
    return wave[:, :-1].astype("float32"), y.astype("int32"), wave[:, -1, 0].astype("float32")


def table(samples: int = 128, features: int = 8, seed: int = 0):
    """Tabular data with a linear two-class label."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype("float32")
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype("int32")

"""keras.io "Imbalanced classification: credit card fraud detection": class_weight on imbalanced data, then
sample_weight on a second model, with precision/recall metrics (not means: no per-batch value)."""

import keras
import numpy as np

from kerascope import LiveMonitor

from . import MONITOR, table


def model():
    m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")])
    m.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy",
              metrics=[keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")])
    return m


def train(logdir, spy):
    x, _ = table()
    y = (x[:, 0] > 1.0).astype("int32")  # about 16 % positives
    weights = {0: 1.0, 1: float(len(y) / max(y.sum(), 1))}
    live_monitor = LiveMonitor(logdir, name="class_weight", **MONITOR)
    first = model().fit(x, y, batch_size=32, epochs=2, class_weight=weights, verbose=0, callbacks=[live_monitor, spy])
    sample_weight = np.where(y == 1, weights[1], 1.0).astype("float32")
    second = model().fit(x, y, batch_size=32, epochs=4, initial_epoch=2, sample_weight=sample_weight, verbose=0,
                         callbacks=[live_monitor, spy])
    return [first, second]

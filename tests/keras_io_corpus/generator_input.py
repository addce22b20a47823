"""A Python generator as input (keras.io "Training & evaluation with the built-in methods"): endless batches,
steps_per_epoch given, validation from a second generator."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, table


def batches(x, y, size=16):
    while True:
        for start in range(0, len(x) - size + 1, size):
            yield x[start:start + size], y[start:start + size]


def train(logdir, spy):
    x, y = table()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(name="auc")])
    live_monitor = LiveMonitor(logdir, name="generator_input", **MONITOR)
    return [model.fit(batches(x, y), steps_per_epoch=5, epochs=2, validation_data=batches(x, y),
                      validation_steps=2, verbose=0, callbacks=[live_monitor, spy])]

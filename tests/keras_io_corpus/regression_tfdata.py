"""keras.io "Structured data" style regression from a tf.data pipeline (shuffled, batched, prefetched; the last
batch smaller), with MAE / RMSE metrics and the loss on a Huber objective."""

import keras
import tensorflow as tf

from kerascope import LiveMonitor

from . import MONITOR, table


def train(logdir, spy):
    x, _ = table(samples=90)
    target = x[:, 0] * 3.0 - x[:, 2]
    dataset = tf.data.Dataset.from_tensor_slices((x, target)).shuffle(90, seed=0).batch(32).prefetch(2)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile("adam", keras.losses.Huber(), metrics=["mae", keras.metrics.RootMeanSquaredError(name="rmse")])
    live_monitor = LiveMonitor(logdir, name="regression_tfdata", **MONITOR)
    return [model.fit(dataset, epochs=2, verbose=0, callbacks=[live_monitor, spy])]

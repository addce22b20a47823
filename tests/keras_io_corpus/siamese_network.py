"""keras.io "Image similarity estimation using a Siamese Network with a contrastive loss": one embedding tower
shared by two inputs, a Lambda distance, a contrastive loss."""

import keras
import numpy as np
from keras import ops

from kerascope import LiveMonitor

from . import MONITOR, table


def contrastive_loss(y_true, y_pred, margin=1.0):
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.mean((1 - y_true) * ops.square(y_pred) + y_true * ops.square(ops.maximum(margin - y_pred, 0.0)))


def train(logdir, spy):
    x, y = table()
    rng = np.random.default_rng(2)
    other = rng.permutation(len(x))
    pairs_a, pairs_b = x, x[other]
    different = (y != y[other]).astype("float32")
    tower = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="tanh")], name="tower")
    a, b = keras.Input((8,), name="a"), keras.Input((8,), name="b")
    distance = keras.layers.Lambda(
        lambda pair: ops.sqrt(ops.maximum(ops.sum(ops.square(pair[0] - pair[1]), axis=1, keepdims=True), 1e-7)),
        output_shape=(1,),
        name="distance",
    )([tower(a), tower(b)])
    model = keras.Model([a, b], distance)
    model.compile("rmsprop", contrastive_loss)
    live_monitor = LiveMonitor(logdir, name="siamese_network", activation_data=[x[:8], x[8:16]], **MONITOR)
    return [model.fit([pairs_a, pairs_b], different, batch_size=32, epochs=2, verbose=0, callbacks=[live_monitor, spy])]

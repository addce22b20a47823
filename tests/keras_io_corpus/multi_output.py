"""keras.io "The Functional API" multi-input, multi-output model: named outputs, per-output losses, loss weights
and metrics."""

import keras
import numpy as np

from kerascope import LiveMonitor

from . import MONITOR, table


def train(logdir, spy):
    x, y = table()
    extra = np.random.default_rng(1).normal(size=(len(x), 4)).astype("float32")
    main_in, extra_in = keras.Input((8,), name="main"), keras.Input((4,), name="extra")
    h = keras.layers.Dense(8, activation="relu")(keras.layers.concatenate([main_in, extra_in]))
    priority = keras.layers.Dense(1, name="priority")(h)
    department = keras.layers.Dense(2, activation="softmax", name="department")(h)
    model = keras.Model([main_in, extra_in], {"priority": priority, "department": department})
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={"priority": "mse", "department": "sparse_categorical_crossentropy"},
        loss_weights={"priority": 1.0, "department": 0.2},
        metrics={"priority": ["mae"], "department": ["accuracy"]},
    )
    targets = {"priority": x[:, :1] * 2.0, "department": y}
    live_monitor = LiveMonitor(logdir, name="multi_output", activation_data=[x[:8], extra[:8]], **MONITOR)
    return [model.fit([x, extra], targets, batch_size=32, epochs=2, verbose=0, callbacks=[live_monitor, spy])]

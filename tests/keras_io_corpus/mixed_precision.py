"""keras.io "Mixed precision" guide: the mixed_float16 policy, a float32 softmax output, LossScaleOptimizer (added by
compile) and a decaying LearningRateSchedule."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, table


def train(logdir, spy):
    x, y = table()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((8,))
        h = keras.layers.Dense(16, activation="relu")(inputs)
        outputs = keras.layers.Activation("softmax", dtype="float32")(keras.layers.Dense(2)(h))
        model = keras.Model(inputs, outputs)
        schedule = keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=2, decay_rate=0.7)
        model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", metrics=["accuracy"])
        live_monitor = LiveMonitor(logdir, name="mixed_precision", activation_data=x[:8], **MONITOR)
        return [model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[live_monitor, spy])]
    finally:
        keras.mixed_precision.set_global_policy("float32")

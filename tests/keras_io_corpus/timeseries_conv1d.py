"""keras.io "Timeseries classification from scratch": Conv1D / BatchNormalization / ReLU blocks, global pooling,
ReduceLROnPlateau."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, series


def train(logdir, spy):
    x, y, _ = series()
    inputs = keras.Input(x.shape[1:])
    h = inputs
    for _ in range(2):
        h = keras.layers.Conv1D(8, 3, padding="same")(h)
        h = keras.layers.BatchNormalization()(h)
        h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    outputs = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["sparse_categorical_accuracy"])
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    live_monitor = LiveMonitor(logdir, name="timeseries_conv1d", activation_data=x[:16], **MONITOR)
    return [model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[live_monitor, plateau, spy])]

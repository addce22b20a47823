"""keras.io "Timeseries forecasting for weather prediction": an LSTM regressor with MAE, ModelCheckpoint-style best
checkpoints and EarlyStopping on val_loss."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, series


def train(logdir, spy):
    x, _, target = series()
    inputs = keras.Input(x.shape[1:])
    outputs = keras.layers.Dense(1)(keras.layers.LSTM(8)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "mse", metrics=["mae"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    live_monitor = LiveMonitor(logdir, name="timeseries_lstm", checkpoint="best", **MONITOR)
    return [model.fit(x, target, batch_size=32, epochs=3, validation_split=0.25, verbose=0,
                      callbacks=[live_monitor, stop, spy])]

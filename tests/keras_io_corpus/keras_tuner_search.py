"""keras.io "Getting started with KerasTuner": a RandomSearch of two trials; every trial is a run of one group."""

import keras
import keras_tuner

from kerascope import LiveMonitor

from . import MONITOR, table


def build(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.Adam(hp.Choice("lr", [1e-2, 1e-3])), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train(logdir, spy):
    x, y = table()
    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=2, seed=1, overwrite=True,
                                     directory=f"{logdir}-tuner", project_name="corpus")
    tuner.search(x, y, epochs=1, batch_size=32, validation_split=0.25, verbose=0,
                 callbacks=[LiveMonitor(logdir, **MONITOR), spy])
    return []

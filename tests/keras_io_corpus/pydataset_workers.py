"""keras.utils.PyDataset with worker threads (keras.io "Training & evaluation with the built-in methods")."""

import math

import keras

from kerascope import LiveMonitor

from . import MONITOR, table


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[part], self.y[part]


def train(logdir, spy):
    x, y = table(samples=100)  # a last, smaller batch
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    data = Batches(x, y, 16, workers=2, use_multiprocessing=False)
    live_monitor = LiveMonitor(logdir, name="pydataset_workers", **MONITOR)
    return [model.fit(data, epochs=2, verbose=0, callbacks=[live_monitor, spy])]

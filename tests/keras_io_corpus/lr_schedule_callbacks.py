"""keras.io callbacks guide: LearningRateScheduler at epoch begin, and a linear warm-up written by hand that sets the
learning rate at every batch begin."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, table


class WarmUp(keras.callbacks.Callback):
    def __init__(self, target, steps):
        super().__init__()
        self.target, self.steps, self.seen = target, steps, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen < self.steps:
            self.model.optimizer.learning_rate = self.target * (self.seen + 1) / self.steps
        self.seen += 1


def train(logdir, spy):
    x, y = table()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy", metrics=["accuracy"])
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    live_monitor = LiveMonitor(logdir, name="lr_schedule_callbacks", **MONITOR)
    return [model.fit(x, y, batch_size=32, epochs=3, verbose=0,
                      callbacks=[live_monitor, scheduler, WarmUp(0.1, steps=6), spy])]

"""keras.io "Transfer learning & fine-tuning": a frozen base and a new head, then the base unfrozen and a second fit()
at a 10x lower learning rate (two phases of one run)."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, images


def train(logdir, spy):
    x, y = images(channels=3)
    base = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.GlobalMaxPooling2D()],
        name="base",
    )
    base.trainable = False
    inputs = keras.Input(x.shape[1:])
    h = base(inputs, training=False)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.2)(h))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    live_monitor = LiveMonitor(logdir, name="transfer_learning", activation_data=x[:16], **MONITOR)
    first = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[live_monitor, spy])
    base.trainable = True
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    second = model.fit(x, y, batch_size=32, epochs=4, initial_epoch=2, verbose=0, callbacks=[live_monitor, spy])
    return [first, second]

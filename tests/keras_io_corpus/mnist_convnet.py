"""keras.io "Simple MNIST convnet": Conv2D / MaxPooling2D / Dropout, softmax, validation_split."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, images


def train(logdir, spy):
    x, y = images()
    model = keras.Sequential([
        keras.Input(x.shape[1:]),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    live_monitor = LiveMonitor(logdir, name="mnist_convnet", activation_data=x[:16], **MONITOR)
    return [model.fit(x, y, batch_size=32, epochs=2, validation_split=0.25, verbose=0, callbacks=[live_monitor, spy])]

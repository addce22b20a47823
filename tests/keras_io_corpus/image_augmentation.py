"""keras.io "Image classification from scratch": Rescaling and random augmentation layers inside the model."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, images


def train(logdir, spy):
    x, y = images(size=8, channels=3)
    augment = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1), keras.layers.RandomZoom(0.1)],
        name="augmentation",
    )
    inputs = keras.Input(x.shape[1:])
    h = augment(inputs)
    h = keras.layers.Rescaling(1.0 / 4)(h)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(3, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    live_monitor = LiveMonitor(logdir, name="image_augmentation", activation_data=x[:16], **MONITOR)
    return [model.fit(x, y, batch_size=32, epochs=1, validation_data=(x[:32], y[:32]), verbose=0,
                      callbacks=[live_monitor, spy])]

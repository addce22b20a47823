"""keras.io "Quantization in Keras": a trained float model quantized to int8, then fine-tuned (a second fit, with
LoRA on the quantized Dense layers, as the guide does for quantized training)."""

import keras

from kerascope import LiveMonitor

from . import MONITOR, table


def train(logdir, spy):
    x, y = table()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    live_monitor = LiveMonitor(logdir, name="quantized", activation_data=x[:8], **MONITOR)
    first = model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[live_monitor, spy])
    model.quantize("int8")
    model.get_layer("hidden").enable_lora(2)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    second = model.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, verbose=0, callbacks=[live_monitor, spy])
    return [first, second]

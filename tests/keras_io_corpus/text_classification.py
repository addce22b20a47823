"""keras.io "Text classification from scratch": TextVectorization in the tf.data pipeline, Embedding, Conv1D."""

import keras
import numpy as np
import tensorflow as tf

from kerascope import LiveMonitor

from . import MONITOR

WORDS = ["good", "great", "fine", "bad", "awful", "poor", "movie", "plot", "actor", "the", "a", "was"]


def texts(samples=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, samples)
    lines = []
    for label in labels:
        mood = WORDS[:3] if label else WORDS[3:6]
        lines.append(" ".join(rng.choice(WORDS[6:] + mood, 8)))
    return np.array(lines), labels.astype("int32")


def train(logdir, spy):
    x, y = texts()
    vectorize = keras.layers.TextVectorization(max_tokens=50, output_mode="int", output_sequence_length=8)
    vectorize.adapt(x)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32).map(lambda t, label: (vectorize(t), label))
    inputs = keras.Input((8,), dtype="int64")
    h = keras.layers.Embedding(50, 8)(inputs)
    h = keras.layers.Conv1D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalMaxPooling1D()(h)
    outputs = keras.layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    live_monitor = LiveMonitor(logdir, name="text_classification", **MONITOR)
    return [model.fit(dataset, epochs=2, validation_data=dataset.take(1), verbose=0, callbacks=[live_monitor, spy])]

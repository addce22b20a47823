"""Data and models for the sample runs: scikit-learn's 8x8 digits (shipped inside the package, no download)."""

from __future__ import annotations

import keras
import numpy as np
from sklearn.datasets import load_digits

INPUT_SHAPE = (8, 8, 1)


def digits_split(seed: int = 0, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val): images scaled to [0, 1], shape (n, 8, 8, 1), integer labels."""
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_val = int(len(x) * val_fraction)
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def small_cnn(
    *,
    filters: tuple[int, int] = (16, 32),
    dense: int = 64,
    batch_norm: bool = False,
    augmentation: bool = False,
    classes: int = 10,
    name: str = "small_cnn",
) -> keras.Model:
    """Two conv blocks and a dense head: the baseline every sample run varies one thing of."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if augmentation:
        x = keras.layers.RandomRotation(0.05, name="random_rotation")(x)
        x = keras.layers.RandomTranslation(0.1, 0.1, name="random_translation")(x)
        x = keras.layers.RandomZoom(0.1, name="random_zoom")(x)
    for block, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=not batch_norm, name=f"conv{block}")(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"bn{block}")(x)
        x = keras.layers.Activation("relu", name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def feature_base(name: str = "digit_features") -> keras.Model:
    """A convolutional feature extractor, pretrained in the fine-tuning run and then reused as a frozen base."""
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, x, name=name)


def with_head(base: keras.Model, classes: int, name: str) -> keras.Model:
    inputs = keras.Input(INPUT_SHAPE, name="image")
    features = base(inputs)
    x = keras.layers.Dense(32, activation="relu", name=f"{name}_dense")(features)
    outputs = keras.layers.Dense(classes, activation="softmax", name=f"{name}_classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def compile_for_classification(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> keras.Model:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model

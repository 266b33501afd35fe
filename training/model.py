"""The production architecture (fixed by the data scientist's notebook)."""

from __future__ import annotations

import keras

INPUT_NAME = "image"
PARAM_COUNT = 34_826


def build_model() -> keras.Model:
    """Conv32-Pool-Conv64-Pool-Dropout-Dense10: 34,826 parameters, softmax probabilities out."""
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name=INPUT_NAME),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn",
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model

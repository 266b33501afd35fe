"""The model architectures: the notebook's CNN (the reference) and its successor.

`notebook` is fixed by the data scientist's notebook: Conv32-Pool-Conv64-Pool-Dropout-Dense10,
34,826 parameters, about 2.4 M multiply-adds per image. `wide` is the same family (3x3
convolutions, max-pooling, a softmax head) one block deeper with batch normalisation, at about
3.3x the notebook's multiply-adds (the issue's budget is 4x), for shapes MNIST's writers do not
have. Both take (N, 28, 28, 1) float32 in [0, 1] and output softmax probabilities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its names; TensorFlow loads on use
    import keras

INPUT_NAME = "image"
PARAM_COUNT = 34_826
"""Parameters of the notebook architecture."""
ARCHITECTURES = ("notebook", "wide")


def _compile(model: keras.Model, label_smoothing: float, learning_rate: object) -> keras.Model:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model


def notebook() -> keras.Sequential:
    import keras

    return keras.Sequential(
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


def wide() -> keras.Sequential:
    import keras

    def block(filters: int, size: int) -> list[keras.layers.Layer]:
        return [
            keras.layers.Conv2D(filters, size, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]

    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name=INPUT_NAME),
            *block(32, 5),  # 28 -> 14
            *block(64, 3),  # 14 -> 7
            *block(128, 3),  # 7 -> 3
            keras.layers.Flatten(),
            keras.layers.Dropout(0.4),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_cnn_wide",
    )


def build_model(
    architecture: str = "notebook", label_smoothing: float = 0.0, learning_rate: object = 1e-3
) -> keras.Model:
    """A compiled model of `architecture` (one of `ARCHITECTURES`); `learning_rate` is a
    number or a Keras schedule."""
    builders = {"notebook": notebook, "wide": wide}
    if architecture not in builders:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {ARCHITECTURES}")
    return _compile(builders[architecture](), label_smoothing, learning_rate)


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass through the convolutions and dense layers."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            k_h, k_w, c_in, _ = layer.kernel.shape
            total += h * w * c_out * k_h * k_w * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += int(layer.kernel.shape[0] * layer.kernel.shape[1])
    return int(total)

"""The model zoo (Keras 3 functional): cnn, lstm, gru, gru-anomaly, gru-forecast, dnn.

Every model takes the SCALED input the device feeds: (T, F, 1) for cnn, (T, F) for the
recurrent models, (F,) for dnn. Classifiers end in a softmax over the labels; gru-anomaly
outputs one anomaly score per window (the reconstruction's mean squared error, computed in
the graph from built-in layers only, so the device compares one number with a threshold);
gru-forecast (training/forecast.py) outputs its scaled forecast residual the same way.

Recurrent models are also rebuilt for export with a fixed batch of 1 and ``unroll=True``:
Keras GRU/LSTM with a dynamic batch do not convert to TFLite, the unrolled fixed-batch graph
converts to float, dynamic-range and full int8 and matches Keras.

The dnn and the recurrent classifiers can start with a fixed piecewise-linear encoding of the
scaled features (``encoding`` > 0 units, applied to every step): per feature, quantile knots of
the training data snapped to the int8 input grid (1/255), and one unit per bin between two
knots that rises from 0 to 1 across it (Gorishniy et al. 2022, "On Embeddings for Numerical
Features in Tabular Deep Learning"). Flow features are heavy-tailed (Rate, Header_Length,
Tot sum, IAT...) and so is TON_IoT's reading interval, so min-max squeezes most rows into a
few input levels; the encoding spreads them out the way a tree's thresholds do. It is a
non-trainable Dense plus ``ReLU(max_value=1)``: built-in layers only, so model.keras loads
without custom code and converts to builtin int8 TFLite, and knots on the grid keep the int8
input faithful (knots finer than 1/255 would be lost to input quantization on the device).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

MODEL_TYPES = ("cnn", "lstm", "gru", "gru-anomaly", "gru-forecast", "dnn")
RECURRENT = ("lstm", "gru", "gru-anomaly", "gru-forecast")
ANOMALY = ("gru-anomaly", "gru-forecast")  # one score per window, compared with a threshold
DNN_BINS = 32  # piecewise-linear bins per feature (at most) for ``iotids train``
INPUT_LEVELS = 255  # int8 input steps over the scaled 0..1 range
ENCODING_LAYER = "piecewise_linear"
ENCODED = ("dnn", "lstm", "gru")  # the models that may read binned inputs


@dataclass(frozen=True)
class ModelSpec:
    """What to build: the type, the window and feature count, and the size knobs."""

    model_type: str
    window: int
    features: int
    n_classes: int
    units: int = 32
    dropout: float = 0.2
    encoding: int = 0  # piecewise-linear units in total (ENCODED models), 0: the scaled input
    members: int = 1  # dnn: sub-networks on the shared encoding whose softmaxes are averaged
    # gru-forecast: per column its sensor's value column, -1 for none (training/forecast.py)
    sensors: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model: must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.model_type == "dnn" and self.window != 1:
            raise ValueError(f"window: dnn reads one step, got window {self.window}")
        if self.encoding < 0 or (self.encoding and self.model_type not in ENCODED):
            raise ValueError(
                f"encoding: only {ENCODED} take an encoding >= 0, "
                f"got {self.encoding} for {self.model_type}"
            )
        if self.members < 1 or (self.members > 1 and self.model_type != "dnn"):
            raise ValueError(f"members: only dnn averages sub-networks, got {self.members}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The model's input shape without the batch axis."""
        if self.model_type == "cnn":
            return (self.window, self.features, 1)
        if self.model_type == "dnn":
            return (self.features,)
        return (self.window, self.features)

    @property
    def task(self) -> str:
        """``anomaly`` for gru-anomaly and gru-forecast, ``classify`` otherwise."""
        return "anomaly" if self.model_type in ANOMALY else "classify"


def build(spec: ModelSpec, batch_size: int | None = None, unroll: bool = False) -> Any:
    """The Keras model for ``spec``; ``batch_size=1, unroll=True`` gives the export graph."""
    import keras

    inputs = keras.Input(spec.input_shape, batch_size=batch_size, name="window")
    if spec.model_type == "cnn":
        outputs = _cnn(keras, inputs, spec)
    elif spec.model_type == "dnn":
        outputs = _dnn(keras, inputs, spec)
    elif spec.model_type == "gru-anomaly":
        return _anomaly_scorer(keras, inputs, spec, unroll)
    elif spec.model_type == "gru-forecast":
        from training.forecast import scorer

        return scorer(keras, inputs, spec, unroll)
    else:
        outputs = _recurrent(keras, inputs, spec, unroll)
    return keras.Model(inputs, outputs, name=spec.model_type.replace("-", "_"))


def _cnn(keras: Any, inputs: Any, spec: ModelSpec) -> Any:
    """Parallel 3×3 and 5×5 convolutions, stacked blocks, 2×2 pooling, ReLU dense, softmax."""
    layers = keras.layers
    b3 = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv3x3")(inputs)
    b5 = layers.Conv2D(8, 5, padding="same", activation="relu", name="conv5x5")(inputs)
    x = layers.Concatenate(name="multiscale")([b3, b5])
    x = layers.MaxPooling2D(2, strides=2, padding="same")(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="block2")(x)
    x = layers.MaxPooling2D(2, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(spec.units, activation="relu")(x)
    x = layers.Dropout(spec.dropout)(x)
    return layers.Dense(spec.n_classes, activation="softmax", name="probabilities")(x)


def _encoded(keras: Any, inputs: Any, spec: ModelSpec) -> Any:
    """The fixed piecewise-linear encoding of every step's features (or the input as is)."""
    if not spec.encoding:
        return inputs
    # the weights come from the training data through fit_encoding; zeros until then
    x = keras.layers.Dense(
        spec.encoding, trainable=False, kernel_initializer="zeros", name=ENCODING_LAYER
    )(inputs)
    return keras.layers.ReLU(max_value=1.0, name="bin_fill")(x)


def _dnn(keras: Any, inputs: Any, spec: ModelSpec) -> Any:
    """A multi-layer perceptron for flow-feature tables, optionally on binned inputs.

    With ``members`` > 1, that many perceptrons read the same encoding from their own random
    initialisations and the output is the mean of their softmaxes: a seed ensemble inside one
    graph (one model.keras, one int8 TFLite), which smooths out the seed-to-seed swing of one
    perceptron on a few thousand rows.
    """
    layers = keras.layers
    encoded = _encoded(keras, inputs, spec)
    heads = []
    for m in range(spec.members):
        suffix = f"_{m}" if spec.members > 1 else ""
        x = layers.Dense(spec.units * 2, activation="relu", name=f"hidden1{suffix}")(encoded)
        x = layers.Dropout(spec.dropout)(x)
        x = layers.Dense(spec.units, activation="relu", name=f"hidden2{suffix}")(x)
        x = layers.Dropout(spec.dropout)(x)
        name = f"member_probabilities{suffix}" if spec.members > 1 else "probabilities"
        heads.append(layers.Dense(spec.n_classes, activation="softmax", name=name)(x))
    if spec.members == 1:
        return heads[0]
    return layers.Average(name="probabilities")(heads)


def _recurrent(keras: Any, inputs: Any, spec: ModelSpec, unroll: bool) -> Any:
    """Two stacked LSTM or GRU layers and a softmax."""
    cell = keras.layers.LSTM if spec.model_type == "lstm" else keras.layers.GRU
    x = _encoded(keras, inputs, spec)
    x = cell(spec.units, return_sequences=True, unroll=unroll, name="rnn1")(x)
    x = keras.layers.Dropout(spec.dropout)(x)
    x = cell(spec.units, unroll=unroll, name="rnn2")(x)
    return keras.layers.Dense(spec.n_classes, activation="softmax", name="probabilities")(x)


def _anomaly_scorer(keras: Any, inputs: Any, spec: ModelSpec, unroll: bool) -> Any:
    """A GRU autoencoder wrapped so the graph outputs its mean squared error, shape (1,)."""
    layers = keras.layers
    auto = autoencoder(spec, inputs.shape[0], unroll)
    recon = auto(inputs)
    diff = layers.Subtract(name="error")([recon, inputs])
    squared = layers.Multiply(name="squared")([diff, diff])
    per_feature = layers.GlobalAveragePooling1D(name="mean_over_time")(squared)
    column = layers.Reshape((spec.features, 1))(per_feature)
    score = layers.GlobalAveragePooling1D(name="anomaly_score")(column)
    return keras.Model(inputs, score, name="gru_anomaly")


def autoencoder(spec: ModelSpec, batch_size: int | None = None, unroll: bool = False) -> Any:
    """The trainable part of gru-anomaly: encode the window, repeat, decode every step."""
    import keras

    layers = keras.layers
    inputs = keras.Input(spec.input_shape, batch_size=batch_size, name="ae_in")
    code = layers.GRU(spec.units, unroll=unroll, name="encoder")(inputs)
    x = layers.RepeatVector(spec.window)(code)
    x = layers.GRU(spec.units, return_sequences=True, unroll=unroll, name="decoder")(x)
    recon = layers.Dense(spec.features, activation="sigmoid", name="reconstruction")(x)
    return keras.Model(inputs, recon, name="autoencoder")


Knots = list[npt.NDArray[np.float64]]


def encoding_knots(x: npt.NDArray[np.float32], bins: int = DNN_BINS) -> Knots:
    """Per feature of scaled training rows (..., F), its distinct quantiles on the int8 grid."""
    rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
    quantiles = np.quantile(rows, np.linspace(0.0, 1.0, bins + 1), axis=0)
    snapped = np.round(quantiles * INPUT_LEVELS) / INPUT_LEVELS
    return [np.unique(snapped[:, f]) for f in range(rows.shape[1])]


def encoding_width(knots: Knots) -> int:
    """Units of the encoding: one per bin between two knots (a constant feature has none)."""
    return sum(len(edges) - 1 for edges in knots)


def encoding_weights(knots: Knots) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Kernel (F, units) and bias: the unit of bin (k_j, k_j+1) computes (x - k_j) / width."""
    kernel = np.zeros((len(knots), encoding_width(knots)), np.float32)
    bias = np.zeros(kernel.shape[1], np.float32)
    unit = 0
    for f, edges in enumerate(knots):
        for low, high in itertools.pairwise(edges):
            kernel[f, unit] = 1.0 / (high - low)
            bias[unit] = -low / (high - low)
            unit += 1
    return kernel, bias


def fit_encoding(model: Any, knots: Knots) -> None:
    """Load the encoding's fixed weights into a model built with ``encoding_width(knots)``."""
    model.get_layer(ENCODING_LAYER).set_weights(list(encoding_weights(knots)))


def trainable_part(model: Any) -> Any:
    """The sub-model to fit: the autoencoder or forecaster inside a scorer, else the model."""
    for layer in model.layers:
        if layer.name in ("autoencoder", "forecaster"):
            return layer
    return model


def export_model(spec: ModelSpec, trained: Any) -> Any:
    """The trained weights in a fixed-batch-1, unrolled graph that converts to int8 TFLite."""
    exported = build(spec, batch_size=1, unroll=True)
    exported.set_weights(trained.get_weights())
    return exported

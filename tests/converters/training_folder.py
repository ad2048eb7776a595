"""Tiny training output folders (what ``iotids train --out`` writes), built in seconds with Keras.

Windows are 16 steps x 8 features; class c raises feature c, so one or two epochs learn it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agent.features.schema import FeatureSet
from agent.quiet import quiet_tensorflow
from converters.quantize import keras_numpy_quiet

FEATURES = FeatureSet("unit", 1, tuple(f"f{i}" for i in range(8)))
WINDOW = 16
LABELS = ("benign", "scan", "flood")


def windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled (n, 16, 8) windows and their labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    x = rng.random((n, WINDOW, FEATURES.width)).astype(np.float32) * 0.3
    x[np.arange(n), :, y] += 0.6
    return x, y


def _model(model_type: str) -> tuple[Any, tuple[int, ...]]:
    """A small Keras model of the kind and its per-sample input shape."""
    import keras

    keras.utils.set_random_seed(0)
    if model_type == "cnn":
        shape: tuple[int, ...] = (WINDOW, FEATURES.width, 1)
        inp = keras.Input(shape)
        a = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
        b = keras.layers.Conv2D(4, 5, padding="same", activation="relu")(inp)
        h = keras.layers.MaxPooling2D(2, 2)(keras.layers.Concatenate()([a, b]))
        h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(h))
    elif model_type == "gru":
        shape = (WINDOW, FEATURES.width)
        inp = keras.Input(shape)
        h = keras.layers.GRU(8)(inp)
    elif model_type == "dnn":
        shape = (FEATURES.width,)
        inp = keras.Input(shape)
        h = keras.layers.Dense(160, activation="relu")(
            inp
        )  # > 1024 weights: dynamic-range quantizes it
    elif model_type == "gru-anomaly":  # reconstruct the window; the graph outputs its MSE
        shape = (WINDOW, FEATURES.width)
        inp = keras.Input(shape)
        h = keras.layers.GRU(8, return_sequences=True)(inp)
        recon = keras.layers.Dense(FEATURES.width, activation="sigmoid")(h)
        diff = keras.layers.Subtract()([inp, recon])
        squared = keras.layers.Flatten()(keras.layers.Multiply()([diff, diff]))
        size = WINDOW * FEATURES.width
        mean = keras.layers.Dense(1, use_bias=False, trainable=False, kernel_initializer="ones")
        score = keras.layers.Rescaling(1.0 / size)(mean(squared))
        model = keras.Model(inp, score)
        model.compile("adam", "mae")  # the score is >= 0: minimising it reconstructs
        return model, shape
    else:
        raise ValueError(model_type)
    model = keras.Model(inp, keras.layers.Dense(len(LABELS), activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    return model, shape


def build(root: Path, model_type: str, epochs: int = 2) -> Path:
    """Train a tiny model and write the folder training would: model, metadata, data."""
    quiet_tensorflow()
    with keras_numpy_quiet():
        return _build(root, model_type, epochs)


def _build(root: Path, model_type: str, epochs: int) -> Path:
    folder = root / model_type
    (folder / "data").mkdir(parents=True)
    model, shape = _model(model_type)
    x, y = windows(400, seed=1)
    test_x, test_y = windows(150, seed=2)
    if model_type == "dnn":  # tabular: one step
        x, test_x = x[:, 0, :], test_x[:, 0, :]
    x, test_x = x.reshape((-1, *shape)), test_x.reshape((-1, *shape))
    if model_type == "gru-anomaly":  # learns normal (label 0) windows only
        model.fit(x[y == 0], np.zeros(int(np.sum(y == 0))), epochs=epochs, verbose=0)
        y, test_y = (y != 0).astype(np.int64), (test_y != 0).astype(np.int64)
    else:
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(folder / "model.keras")
    np.savez(folder / "data" / "representative.npz", x=x[:200], y=y[:200])
    np.savez(folder / "data" / "test.npz", x=test_x, y=test_y)
    outputs = model.predict(test_x, verbose=0)
    meta = preprocess(model_type, shape)
    if model_type == "gru-anomaly":
        threshold = float(np.percentile(outputs[test_y == 0], 99))
        meta |= {"task": "anomaly", "labels": ["normal", "anomaly"], "categories": {}}
        meta |= {"thresholds": {"anomaly": threshold}}
        meta["threshold_calibration"] = {
            "method": "percentile",
            "q": 99,
            "n": int(sum(test_y == 0)),
        }
        predicted = (outputs[:, 0] > threshold).astype(np.int64)
    else:
        predicted = outputs.argmax(axis=1)
    metrics = {"accuracy": float(np.mean(predicted == test_y))}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "preprocess.json").write_text(json.dumps(meta))
    return folder


def preprocess(model_type: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """preprocess.json for the tiny models."""
    width = FEATURES.width
    return {
        "feature_set": FEATURES.id,
        "schema_id": FEATURES.schema_id,
        "columns": list(FEATURES.columns),
        "step": {"kind": "time", "size": 1.0},
        "window": 1 if model_type == "dnn" else WINDOW,
        "input_shape": list(shape),
        "model_type": model_type,
        "task": "classify",
        "scaler": {
            "kind": "minmax",
            "min": [0.0] * width,
            "max": [100.0] * width,
            "clip_low": [0.0] * width,
            "clip_high": [100.0] * width,
        },
        "labels": list(LABELS),
        "categories": {"benign": "benign", "scan": "recon", "flood": "dos"},
        "thresholds": {"scan": 0.5, "flood": 0.5},
        "threshold_calibration": {"method": "default"},
    }

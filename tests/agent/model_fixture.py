"""Tiny .tflite models for agent-side tests, generated once per session in a TF subprocess.

The test process itself never imports TensorFlow (the agent must run without it); the models
are built by a child interpreter and cached under pytest's base temp dir. Without TensorFlow
the tests that need them are skipped.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WINDOW, WIDTH, LABELS = 16, 8, 3
NAMES = ("cnn_float32", "cnn_int8", "cnn_dynamic", "gru_int8", "gru_float32")

_SCRIPT = r"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras, tensorflow as tf
out = sys.argv[1]
T, F, C = 16, 8, 3
rng = np.random.default_rng(0)
y = rng.integers(0, C, 300)
x = rng.random((300, T, F)).astype("float32") * 0.3
x[np.arange(300), :, y] += 0.6  # class c lights up feature c: learnable in one epoch
keras.utils.set_random_seed(0)

def convert(model, mode):
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        shape = (1, *model.input.shape[1:])
        c.representative_dataset = lambda: ([x[i : i + 1].reshape(shape)] for i in range(100))
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()

inp = keras.Input((T, F, 1))
h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
h = keras.layers.MaxPooling2D(2, 2)(h)
h = keras.layers.Flatten()(h)
cnn = keras.Model(inp, keras.layers.Dense(C, activation="softmax")(h))
cnn.compile("adam", "sparse_categorical_crossentropy")
cnn.fit(x[..., None], y, epochs=3, verbose=0)
for mode in ("float32", "int8", "dynamic"):
    open(f"{out}/cnn_{mode}.tflite", "wb").write(convert(cnn, mode))

inp = keras.Input(batch_shape=(1, T, F))
h = keras.layers.GRU(4, unroll=True)(inp)
gru = keras.Model(inp, keras.layers.Dense(C, activation="softmax")(h))
for mode in ("float32", "int8"):
    open(f"{out}/gru_{mode}.tflite", "wb").write(convert(gru, mode))
np.savez(f"{out}/samples.npz", x=x, y=y)
"""


def tiny_models(cache: Path) -> Path:
    """Directory holding NAMES as .tflite plus samples.npz (x: (N, 16, 8) scaled, y)."""
    folder = cache / "tiny_models"
    if (folder / "samples.npz").exists():
        return folder
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("building the tiny test models needs TensorFlow (the [train] extra)")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(folder)],
        check=True,
        cwd=REPO,
        capture_output=True,
        timeout=300,
    )
    return folder

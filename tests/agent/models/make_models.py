"""Regenerate the tiny .tflite test models committed beside this script (needs TensorFlow).

    python -m tests.agent.models.make_models tests/agent/models          # the committed set
    python -m tests.agent.models.make_models DIR --gru                   # GRU models only

The committed models let the agent's runtime, bundle, signature and golden-vector tests run on
a gateway install without TensorFlow. The GRU models (unrolled, 50-70 KB each) are too large to
commit; tests that need them build them with ``--gru`` when TensorFlow is present.

- ``flood_int8.tflite``: traffic-v1, window 4, a dense layer with hand-set weights that calls a
  step a flood when its packet count is high (``tests.agent.bundles.int8_flood_model``).
- ``telemetry_anomaly.tflite``: float32 "autoencoder" reconstructing zeros for one sensor.
- ``cnn_{float32,int8,dynamic}.tflite``: a small CNN trained for 3 epochs on ``samples()``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
WINDOW, WIDTH, LABELS, COUNT = 16, 8, 3, 300
COMMITTED = (
    "flood_int8",
    "telemetry_anomaly",
    "cnn_float32",
    "cnn_int8",
    "cnn_dynamic",
)
GRU = ("gru_float32", "gru_int8")


def samples() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(x (300, 16, 8) in [0, 1], y): class c lights up feature c, learnable in one epoch."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, LABELS, COUNT)
    x = np.asarray(rng.random((COUNT, WINDOW, WIDTH)).astype("float32") * 0.3, np.float32)
    x[np.arange(COUNT), :, y] += 0.6
    return x, y


def _convert(tf: Any, model: Any, mode: str, x: npt.NDArray[np.float32]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "int8":
        shape = (1, *model.input.shape[1:])
        converter.representative_dataset = lambda: (
            [x[i : i + 1].reshape(shape)] for i in range(100)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def build_committed(out: Path) -> None:
    """Write the committed models into ``out``."""
    import keras
    import tensorflow as tf

    from agent.features.traffic import TRAFFIC_V1
    from tests.agent.bundles import int8_flood_model, zero_reconstruction_model

    (out / "flood_int8.tflite").write_bytes(int8_flood_model(TRAFFIC_V1.width))
    # one sensor: value, delta, staleness
    (out / "telemetry_anomaly.tflite").write_bytes(zero_reconstruction_model(3))
    x, y = samples()
    keras.utils.set_random_seed(0)
    inp = keras.Input((WINDOW, WIDTH, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D(2, 2)(h)
    h = keras.layers.Flatten()(h)
    cnn = keras.Model(inp, keras.layers.Dense(LABELS, activation="softmax")(h))
    cnn.compile("adam", "sparse_categorical_crossentropy")
    cnn.fit(x[..., None], y, epochs=3, verbose=0)
    for mode in ("float32", "int8", "dynamic"):
        (out / f"cnn_{mode}.tflite").write_bytes(_convert(tf, cnn, mode, x))


def build_gru(out: Path) -> None:
    """Write the (untrained, seeded) GRU models into ``out``."""
    import keras
    import tensorflow as tf

    x, _ = samples()
    keras.utils.set_random_seed(0)
    inp = keras.Input(batch_shape=(1, WINDOW, WIDTH))
    h = keras.layers.GRU(4, unroll=True)(inp)
    gru = keras.Model(inp, keras.layers.Dense(LABELS, activation="softmax")(h))
    for mode in ("float32", "int8"):
        (out / f"gru_{mode}.tflite").write_bytes(_convert(tf, gru, mode, x))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--gru", action="store_true", help="only the GRU models")
    args = parser.parse_args(argv)
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    args.out.mkdir(parents=True, exist_ok=True)
    (build_gru if args.gru else build_committed)(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Conversion benchmark: float32 vs int8 bundle size, LiteRT latency and metric change.

Per model type (cnn, lstm and gru on a 16 x 60 window, dnn on 60 features), the product's own
architecture from ``training.models`` is trained for a few epochs on synthetic windows (class c
shifts its own group of features, with noise), written as a training output folder, packed as
float32 and int8 bundles with the real converter, and measured on the real interpreter.
Targets: int8 CNN bundle < 100 KB and < 200 µs per window; macro-F1 drop < 1 point.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agent.bundle import load_bundle
from agent.features.schema import FeatureSet
from agent.quiet import quiet_tensorflow
from converters.bundle import pack
from converters.quantize import keras_numpy_quiet
from converters.signing import generate_keypair
from converters.verify import latency_us

WINDOW, WIDTH, CLASSES = 16, 60, 5
MODEL_TYPES = ("cnn", "lstm", "gru", "dnn")
RECURRENT = ("lstm", "gru")
FEATURES = FeatureSet("bench", 1, tuple(f"c{i}" for i in range(WIDTH)))


def _windows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scaled (n, 16, 60) windows: class c raises features 12c..12c+11 on ~40% of steps."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.random((n, WINDOW, WIDTH)).astype(np.float32) * 0.5
    group = WIDTH // CLASSES
    for i, label in enumerate(y):
        steps = rng.random(WINDOW) < 0.4
        x[i, steps, label * group : (label + 1) * group] += 0.2
    return np.clip(x, 0.0, 1.0), y


def _model(model_type: str) -> tuple[Any, Any, tuple[int, ...]]:
    """The product's own architecture (training.models) for ``model_type``, compiled."""
    import keras

    from training.models import ModelSpec, build

    keras.utils.set_random_seed(0)
    window = 1 if model_type == "dnn" else WINDOW
    spec = ModelSpec(model_type, window, WIDTH, CLASSES)
    model = build(spec)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, spec, spec.input_shape


def _training_folder(root: Path, model_type: str, quick: bool) -> Path:
    """Train and write a folder in the format ``iotids train --out`` writes."""
    folder = root / model_type
    (folder / "data").mkdir(parents=True)
    model, spec, shape = _model(model_type)
    x, y = _windows(600 if quick else 3000, seed=1)
    test_x, test_y = _windows(300 if quick else 1000, seed=2)
    if model_type == "dnn":  # tabular: the mean of the window's steps
        x, test_x = x.mean(axis=1), test_x.mean(axis=1)
    x, test_x = x.reshape((-1, *shape)), test_x.reshape((-1, *shape))
    model.fit(x, y, epochs=3 if quick else 8, batch_size=32, verbose=0)
    model.save(folder / "model.keras")
    if model_type in RECURRENT:  # what `iotids train` writes: the int8-convertible graph
        from training.models import export_model

        export_model(spec, model).save(folder / "export.keras")
    np.savez(folder / "data" / "representative.npz", x=x[:300], y=y[:300])
    np.savez(folder / "data" / "test.npz", x=test_x, y=test_y)
    (folder / "metrics.json").write_text(json.dumps({"note": "benchmark model"}))
    labels = [f"class{i}" for i in range(CLASSES)]
    preprocess = {
        "feature_set": FEATURES.id,
        "schema_id": FEATURES.schema_id,
        "columns": list(FEATURES.columns),
        "step": {"kind": "time", "size": 1.0},
        "window": 1 if model_type == "dnn" else WINDOW,
        "input_shape": list(shape),
        "model_type": model_type,
        "task": "classify",
        "scaler": {k: [v] * WIDTH for k, v in (("min", 0.0), ("max", 1.0))}
        | {"kind": "minmax", "clip_low": [0.0] * WIDTH, "clip_high": [1.0] * WIDTH},
        "labels": labels,
        "categories": {label: "attack" for label in labels},
        "thresholds": {},
        "threshold_calibration": {"method": "default"},
    }
    (folder / "preprocess.json").write_text(json.dumps(preprocess))
    return folder


def _rows(model_type: str, mode: str, path: Path, public: Path, runs: int) -> list[dict[str, Any]]:
    """Size, latency and macro-F1 of one bundle."""
    bundle = load_bundle(path, [public.read_bytes()])
    metrics = bundle.manifest.metrics
    latency = latency_us(bundle.model, bundle.manifest.golden.inputs[0], runs)
    is_target = model_type == "cnn" and mode == "int8"
    case = f"{model_type} {mode}"
    rows = [
        _row(case, "bundle_size", path.stat().st_size / 1024, "KiB", "< 100" if is_target else ""),
        _row(case, "latency_p50", latency["p50"], "us", "< 200" if is_target else ""),
        _row(case, "latency_p99", latency["p99"], "us", ""),
        _row(case, "macro_f1", float(metrics["quantized"]["macro_f1"]), "", ""),
    ]
    if mode != "float32":
        drop = float(metrics["float"]["macro_f1"]) - float(metrics["quantized"]["macro_f1"])
        rows.append(_row(case, "macro_f1_drop", drop * 100, "points", "< 1"))
    return rows


def _row(case: str, metric: str, value: float, unit: str, target: str) -> dict[str, Any]:
    return {
        "benchmark": "conversion",
        "case": case,
        "metric": metric,
        "value": value,
        "unit": unit,
        "target": target,
    }


def run(quick: bool = False) -> list[dict[str, object]]:
    """Train, convert and measure each model type; returns the table rows."""
    quiet_tensorflow()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="iotids-bench-") as tmp, keras_numpy_quiet():
        root = Path(tmp)
        private, public, _ = generate_keypair(root / "bench")
        for model_type in MODEL_TYPES:
            folder = _training_folder(root, model_type, quick)
            for mode in ("float32", "int8"):
                out = root / f"{model_type}-{mode}.bundle"
                pack(folder, mode, out, sign_key=private)
                rows.extend(_rows(model_type, mode, out, public, 200 if quick else 1000))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    options = parser.parse_args()
    for result in run(quick=options.quick):
        print(
            f"{result['case']:14} {result['metric']:14} {result['value']:>10.3f} "
            f"{result['unit']:7} {result['target']}"
        )

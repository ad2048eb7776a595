"""A gru-forecast scorer packs into an int8 bundle the agent scores with the TFLite runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.bundle import load_bundle
from agent.inference import anomaly_scores
from converters.bundle import pack
from tests.converters.training_folder import FEATURES, WINDOW, preprocess

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def _smooth_windows(n: int, seed: int) -> np.ndarray:
    """Scaled (n, T, F) windows of slow sines: a forecast of the last step is easy."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW)[None, :, None] + rng.uniform(0, 100, (n, 1, 1))
    phase = np.arange(FEATURES.width)[None, None, :]
    x = 0.5 + 0.3 * np.sin(t / 5.0 + phase) + rng.normal(0, 0.01, (n, WINDOW, FEATURES.width))
    return np.clip(x, 0, 1).astype(np.float32)


def _folder(root: Path) -> Path:
    """A training folder of a tiny gru-forecast: model.keras, export.keras and its data."""
    import keras

    from training.forecast import SPREAD_QUANTILE, residuals, set_spread, target_values
    from training.models import ModelSpec, build, export_model, trainable_part

    keras.utils.set_random_seed(0)
    # two sensors of four columns each: two cross-sensor heads beside the forecast
    sensors = tuple(4 * (i // 4) for i in range(FEATURES.width))
    spec = ModelSpec("gru-forecast", WINDOW, FEATURES.width, 2, 8, 0.0, sensors=sensors)
    model = build(spec)
    x = _smooth_windows(300, 1)
    part = trainable_part(model)
    part.compile("adam", "mse")
    part.fit(x, target_values(spec, x), epochs=8, verbose=0)
    set_spread(model, np.quantile(residuals(model, spec, x), SPREAD_QUANTILE, axis=0))
    test = _smooth_windows(60, 2)
    last = test[30:, -1, 0]
    test[30:, -1, 0] = np.where(last > 0.5, last - 0.4, last + 0.4)  # the last step jumps
    y = (np.arange(60) >= 30).astype(np.int64)
    scores = model.predict(test, verbose=0).reshape(-1)
    folder = root / "gru-forecast"
    (folder / "data").mkdir(parents=True)
    model.save(folder / "model.keras")
    export_model(spec, model).save(folder / "export.keras")
    np.savez(
        folder / "data" / "representative.npz",
        x=np.concatenate([x[:150], test]),
        y=np.zeros(210, np.int64),
    )
    np.savez(folder / "data" / "test.npz", x=test, y=y)
    meta = preprocess("gru-forecast", (WINDOW, FEATURES.width))
    meta |= {"task": "anomaly", "labels": ["normal", "anomaly"], "categories": {}}
    meta |= {"thresholds": {"anomaly": float(scores[y == 0].max())}}
    meta["threshold_calibration"] = {"method": "false alarms per day", "false_alarms_per_day": 1}
    (folder / "preprocess.json").write_text(json.dumps(meta))
    (folder / "metrics.json").write_text(json.dumps({}))
    return folder


def test_int8_forecast_bundle_scores_on_the_agent(
    tmp_path: Path, signer: tuple[Path, Path, str]
) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "forecast.bundle"
    pack(folder, "int8", out, sign_key=signer[0])
    bundle = load_bundle(out, [signer[1].read_bytes()])
    manifest = bundle.manifest
    assert manifest.model_type == "gru-forecast"
    assert manifest.task == "anomaly"
    assert manifest.quantization == "int8"
    assert manifest.input.dtype == manifest.output.dtype == "int8"
    assert manifest.output_shape == (1,)
    assert manifest.metrics["float_error"] < 1e-3
    with np.load(folder / "data" / "test.npz") as data:
        x, y = data["x"], data["y"]
    # the agent's own scoring path: runtime interpreter, then numpy only
    scores = anomaly_scores(x, bundle.model.predict(x))
    assert scores.shape == (len(x),)
    # the jumped windows score above the normal ones on the int8 model
    assert np.median(scores[y == 1]) > np.max(scores[y == 0])

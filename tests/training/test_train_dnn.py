"""``train`` on a flow table: the dnn reads binned inputs and keeps its best val macro-F1 epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.config import TrainConfig
from training.datasets import load
from training.models import ENCODING_LAYER, encoding_knots, encoding_weights
from training.train import prepare, train

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.filterwarnings(KERAS_NUMPY_COPY)]


def _flow_table(path: Path, rows: int = 900) -> None:
    """Heavy-tailed rate and size columns and a flag; the class is the rate's tercile."""
    rng = np.random.default_rng(0)
    rate = rng.pareto(1.2, rows) * 10
    label = np.digitize(rate, np.quantile(rate, [1 / 3, 2 / 3]))  # decided among small rates
    size = 60 + rng.pareto(1.5, rows) * 200
    flag = rng.random(rows) < 0.2
    cells = zip(rate, size, flag, label, strict=True)
    lines = ["rate,size,flag,label", *(f"{r:.4f},{s:.2f},{int(f)},c{c}" for r, s, f, c in cells)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_dnn_trains_on_binned_inputs_and_stops_on_val_macro_f1(tmp_path: Path) -> None:
    import keras

    _flow_table(tmp_path / "flows.csv")
    out = tmp_path / "model"
    config = TrainConfig(
        dataset="csv", path=str(tmp_path / "flows.csv"), model="dnn", out=str(out),
        label_column="label", epochs=10, patience=4, units=8, learning_rate=0.01, verbose=0,
        baseline_trees=10,
    )  # fmt: skip
    summary = train(config)
    assert len(summary["history"]["val_macro_f1"]) == len(summary["history"]["loss"])
    assert all(0.0 <= f <= 1.0 for f in summary["history"]["val_macro_f1"])
    model = keras.saving.load_model(out / "model.keras")  # built-in layers only
    state = json.loads((out / "preprocess.json").read_text())
    test = np.load(out / "data" / "test.npz")
    kernel, bias = model.get_layer(ENCODING_LAYER).get_weights()
    assert kernel.shape[0] == len(state["columns"])
    assert kernel.shape[1] > len(state["columns"])  # heavy tails get several bins
    assert not model.get_layer(ENCODING_LAYER).trainable
    prepared = prepare(config, load(config.dataset, config.path, **config.loader_options()))
    assert len(prepared.knots) == len(state["columns"])
    expected_kernel, expected_bias = encoding_weights(encoding_knots(prepared.x["train"]))
    np.testing.assert_allclose(kernel, expected_kernel, rtol=1e-6)  # fit on training rows
    np.testing.assert_allclose(bias, expected_bias, rtol=1e-6, atol=1e-7)
    probs = model.predict(test["x"], verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert summary["model"]["macro_f1"] > 0.6  # one class for all scores 1/6

"""``--scaler quantile`` end to end: train a tabular dnn, convert to a signed int8 bundle, verify
it, and score it on the raw table the gateway's way (the manifest's quantile knots)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main as iotids

pytestmark = pytest.mark.tf


def _table(path: Path, rows: int = 3000) -> None:
    """Flow-table-like rows: heavy-tailed rates and counts; the class moves two of them."""
    rng = np.random.default_rng(7)
    label = rng.integers(0, 3, rows)
    x = rng.lognormal(0.0, 2.0, (rows, 6))
    x[:, 0] *= np.where(label == 1, 40.0, 1.0)
    x[:, 1] *= np.where(label == 2, 40.0, 1.0)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([*(f"f{j}" for j in range(6)), "label"])
        for row, y in zip(x.tolist(), label.tolist(), strict=True):
            out.writerow([*(f"{v:.6g}" for v in row), ("benign", "scan", "flood")[y]])


def test_a_quantile_scaled_dnn_converts_verifies_and_scores_on_the_raw_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, model, bundle = tmp_path / "flows.csv", tmp_path / "model", tmp_path / "dnn.bundle"
    _table(table)
    train = ["train", "--dataset", "csv", "--path", str(table), "--label-column", "label"]
    train += ["--model", "dnn", "--scaler", "quantile", "--epochs", "8", "--seed", "0"]
    assert iotids([*train, "--out", str(model), "--quiet"]) == 0
    assert iotids(["keys", "generate", "--out", str(tmp_path / "signer")]) == 0
    convert = ["convert", str(model), "--quantize", "int8", "--out", str(bundle)]
    assert iotids([*convert, "--sign-key", str(tmp_path / "signer.key")]) == 0
    preprocess = json.loads((model / "preprocess.json").read_text())
    assert preprocess["scaler"]["kind"] == "quantile"
    assert len(preprocess["scaler"]["knots"]) == 6
    capsys.readouterr()
    key = str(tmp_path / "signer.pub")
    # golden vectors: the gateway's interpreter gives the converter's outputs
    assert iotids(["verify", str(bundle), "--trust-key", key, "--json"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", "--bundle", str(bundle), "--trust-key", key, "--dataset", "csv"]
    evaluate += ["--path", str(table), "--float-model", str(model)]
    assert iotids([*evaluate, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    # the raw rows scaled by the manifest's knots: the int8 bundle scores as the float model
    assert metrics["quantized"]["macro_f1"] > 0.7  # 0.75: the classes overlap by design
    assert abs(metrics["macro_f1_drop"]) <= 0.01


def test_an_unknown_scaler_names_the_key() -> None:
    from training.config import ConfigError, TrainConfig

    with pytest.raises(ConfigError) as caught:
        TrainConfig("nsl-kdd", "x", "dnn", "out", scaler="robust")
    assert str(caught.value) == "train.scaler: must be one of ('minmax', 'quantile'), got 'robust'"

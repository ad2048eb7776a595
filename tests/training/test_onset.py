"""Attack onsets in training: weighted onset windows, calibrated thresholds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from training.config import ConfigError, TrainConfig
from training.datasets import load
from training.fit import sample_weights
from training.synth.scenario import preset
from training.synth.traffic import generate_traffic
from training.train import prepare, train

KERAS_NUMPY_COPY = (
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _traffic(folder: Path) -> Path:
    """The default preset's attacks (30..245 s), then benign only up to 600 s."""
    scenario = dataclasses.replace(preset("default"), duration=600.0)
    generate_traffic(scenario, folder)
    return folder


def _config(data: Path, out: Path, **values: object) -> TrainConfig:
    base = TrainConfig("synthetic", str(data), "cnn", str(out), window=4, split="blocks")
    return dataclasses.replace(base, **values)  # type: ignore[arg-type]


def test_onset_windows_cross_into_the_attack_and_weigh_more(tmp_path: Path) -> None:
    data = _traffic(tmp_path / "data")
    config = _config(data, tmp_path / "out", blocks=12, onset_weight=5.0, onset_steps=2)
    prepared = prepare(config, load("synthetic", str(data), step="1s"))
    y, position = prepared.y["train"], prepared.position["train"]
    onset = (position >= 0) & (position < 2) & (y != prepared.benign)
    assert onset.any(), "the block split must keep windows that start an attack run"
    first = np.nonzero(onset & (position == 0))[0]
    rows = prepared.x["train"][first, 0, :-1, 0]  # the steps before the attack's first
    assert (rows.sum(axis=-1) > 0).all()  # benign traffic leads into the attack step
    weights = sample_weights(config, prepared)
    plain = sample_weights(dataclasses.replace(config, onset_weight=1.0), prepared)
    assert np.allclose(weights[onset], 5.0 * plain[onset])
    assert np.array_equal(weights[~onset], plain[~onset])
    for label in np.unique(y[~onset]):  # balanced classes: same weight within a class
        assert np.ptp(plain[y == label]) == pytest.approx(0.0)


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.filterwarnings(KERAS_NUMPY_COPY)
def test_calibrated_thresholds_hold_the_benign_validation_rate(tmp_path: Path) -> None:
    data = _traffic(tmp_path / "data")
    out = tmp_path / "out"
    config = _config(
        data,
        out,
        blocks=12,
        epochs=3,
        units=8,
        baseline_trees=5,
        verbose=0,
        onset_weight=5.0,
        calibrate_thresholds=True,
        target_fpr=0.05,
        threshold_floor=0.3,
    )
    summary = train(config)
    state = json.loads((out / "preprocess.json").read_text(encoding="utf-8"))
    attacks = [label for label in state["labels"] if label != "benign"]
    assert sorted(state["thresholds"]) == sorted(attacks)
    assert summary["thresholds"] == state["thresholds"]
    assert all(0.3 <= t <= 1.0 for t in state["thresholds"].values())
    calibration = state["threshold_calibration"]
    assert calibration["target_fpr"] == 0.05
    assert calibration["split"] == "val"
    assert calibration["n_normal"] >= 20

    import keras

    prepared = prepare(config, load("synthetic", str(data), step="1s"))
    normal = prepared.x["val"][prepared.y["val"] == prepared.benign]
    scores = keras.models.load_model(out / "model.keras").predict(normal, verbose=0)
    for i, label in enumerate(state["labels"]):
        if label in state["thresholds"]:
            rate = float(np.mean(scores[:, i] >= state["thresholds"][label]))
            assert rate <= 0.05 + 1.0 / len(normal)


@pytest.mark.parametrize(
    ("key", "value"),
    [("onset_weight", 0.5), ("onset_steps", 0), ("threshold_floor", 1.0)],
)
def test_onset_and_threshold_settings_are_validated(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"train\.{key}"):
        TrainConfig("synthetic", "p", "cnn", "o", **{key: value})  # type: ignore[arg-type]


def test_the_onset_weight_flag_reaches_the_config_key(tmp_path: Path) -> None:
    """``iotids train --onset-weight W`` is the ``onset_weight`` key, validated as the file's."""
    import argparse

    from training.cli_train import configure
    from training.config import load_config

    parser = argparse.ArgumentParser()
    configure(parser)
    flags = ["--dataset", "captures", "--path", str(tmp_path), "--model", "cnn", "--out", "o"]

    def config_of(weight: str) -> TrainConfig:
        args = parser.parse_args([*flags, "--onset-weight", weight])
        fields = dataclasses.fields(TrainConfig)
        return load_config(
            None, {f.name: getattr(args, f.name) for f in fields if hasattr(args, f.name)}
        )

    assert config_of("2").onset_weight == 2.0
    with pytest.raises(ConfigError, match=r"train\.onset_weight: must be >= 1, got 0\.5"):
        config_of("0.5")

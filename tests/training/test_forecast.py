"""gru-forecast: the in-graph residual score, the false-alarm-rate threshold, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from training.config import ConfigError, TrainConfig
from training.forecast import (
    SCORE_SCALE,
    SPREAD_FLOOR,
    alarm_runs,
    debounced,
    steps_per_day,
    threshold_for_rate,
    value_columns,
)


def test_alarms_need_two_of_three_windows_and_merge_short_gaps() -> None:
    flags = np.zeros(100, bool)
    flags[[3, 4, 10, 60, 62, 70, 71]] = True
    # a lone window (10) raises nothing, as on the agent; 60 and 62 are 2 of 3
    assert debounced(flags).nonzero()[0].tolist() == [4, 5, 62, 71, 72]
    assert alarm_runs(flags, gap=10) == [(4, 6), (62, 73)]
    assert alarm_runs(flags, gap=2) == [(4, 6), (62, 63), (71, 73)]
    assert alarm_runs(np.zeros(5, bool)) == []


def test_threshold_keeps_alarms_within_the_rate() -> None:
    rng = np.random.default_rng(0)
    scores = rng.exponential(1.0, 20_000)
    per_day = 20_000 / 4  # the scores span four days
    threshold = threshold_for_rate(scores, per_day, 2.0)
    assert len(alarm_runs(scores > threshold)) <= 8
    assert threshold < scores.max()  # a rate above zero does not need the maximum
    # under a day of scores and a rate of one a day: no alarm at all on them
    short = threshold_for_rate(scores[:1000], 86_400, 1.0)
    assert alarm_runs(scores[:1000] > short) == []
    # and the lowest such: a little lower raises one
    assert alarm_runs(scores[:1000] > 0.98 * short) != []


def test_steps_per_day_follows_the_step() -> None:
    assert steps_per_day({"kind": "time", "size": 10.0}) == 8640
    assert steps_per_day({"kind": "packets", "size": 20}) == 86_400


@pytest.mark.parametrize("bad", [0, -1, "x", 1e9])
def test_bad_false_alarm_rate_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"train\.false_alarms_per_day"):
        TrainConfig("synthetic", "p", "gru-forecast", "o", false_alarms_per_day=bad)  # type: ignore


def test_value_columns_group_a_sensors_columns() -> None:
    columns = ["t.value", "t.delta", "p.value", "p.delta", "interval_s"]
    assert value_columns(columns) == (0, 0, 2, 2, -1)
    # one sensor: nothing to estimate it from, so no cross-sensor heads
    assert value_columns(["t.value", "t.delta"]) == (-1, -1)


@pytest.mark.tf
def test_graph_score_is_the_scaled_max_residual() -> None:
    import keras

    from training.forecast import residuals, set_spread, targets
    from training.models import ModelSpec, build, export_model

    keras.utils.set_random_seed(0)
    sensors = value_columns(["t.value", "t.delta", "p.value", "p.delta"])
    spec = ModelSpec("gru-forecast", 5, 4, 2, units=4, dropout=0.0, sensors=sensors)
    assert targets(spec) == [0, 1, 2, 3, 0, 2]  # every column's forecast, two cross estimates
    model = build(spec)
    spread = np.array([0.1, 0.05, 0.03, 0.2, 0.1, 1e-6])  # the last one is floored
    set_spread(model, spread)
    x = np.random.default_rng(1).random((7, 5, 4)).astype(np.float32)
    scaled = residuals(model, spec, x) / np.maximum(spread, SPREAD_FLOOR) / SCORE_SCALE
    expected = np.tanh(scaled).max(axis=1)
    got = model.predict(x, verbose=0).reshape(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    exported = export_model(spec, model)  # batch 1, unrolled: what converts to int8
    one = exported.predict(x[:1], verbose=0).reshape(-1)
    np.testing.assert_allclose(one, expected[:1], rtol=1e-4)
    # the estimate of t's value never reads t's own columns
    hidden = x.copy()
    hidden[:, :, :2] = 0.0
    part = model.get_layer("forecaster")
    cross = part.predict(x, verbose=0)[:, 4]
    np.testing.assert_allclose(part.predict(hidden, verbose=0)[:, 4], cross, rtol=1e-5)


@pytest.mark.tf
@pytest.mark.slow
def _train_forecast(tmp_path: Path, duration: int, step: str, extra: str = "") -> Path:
    """``iotids train --model gru-forecast`` (one small epoch) on generated telemetry; its out."""
    synth = tmp_path / "synth"
    args = ["synth", "telemetry", "--out", str(synth), "--duration", str(duration), "--step", "5"]
    assert main(args) == 0
    out = tmp_path / "model"
    config = tmp_path / "train.toml"
    config.write_text(
        f'[train]\ndataset = "synthetic"\npath = "{synth}"\nmodel = "gru-forecast"\n'
        f'out = "{out}"\nwindow = 4\nepochs = 1\nmin_epochs = 1\nunits = 8\nstep = "{step}"\n'
        + extra
    )
    assert main(["train", "--config", str(config), "--quiet"]) == 0
    return out


def test_train_gru_forecast_on_synthetic_telemetry(tmp_path: Path) -> None:
    out = _train_forecast(tmp_path, 20000, "10s", "false_alarms_per_day = 3\n")
    state = json.loads((out / "preprocess.json").read_text())
    assert state["model_type"] == "gru-forecast"
    assert state["task"] == "anomaly"
    assert state["labels"][1] == "attack"
    assert state["threshold_calibration"]["false_alarms_per_day"] == 3
    assert state["thresholds"]["anomaly"] > 0
    # the agent's accumulator rides along into the bundle's extra (converters.bundle.EXTRA_KEYS)
    from agent.accumulate import AccumulatorSpec

    spec = AccumulatorSpec.from_manifest(state["accumulator"])
    values = [i for i, c in enumerate(state["columns"]) if c.endswith(".value")]
    assert list(spec.stuck_columns) == values
    assert spec.limit > 0
    assert (out / "export.keras").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["model"]["macro_f1"] <= 1.0


@pytest.mark.tf
@pytest.mark.slow
def test_gru_forecast_bundle_state_carries_the_cross_check(tmp_path: Path) -> None:
    """With several sensors and enough normal validation steps, ``iotids train`` fits the
    cross-sensor and variability checks on raw rows, as the agent will read them."""
    out = _train_forecast(tmp_path, 60000, "5s")
    state = json.loads((out / "preprocess.json").read_text())
    from agent.accumulate import AccumulatorSpec

    spec = AccumulatorSpec.from_manifest(state["accumulator"])
    assert spec.cross is not None
    assert "accumulator" not in state["threshold_calibration"]  # signed once, in extra
    spec.check_width(len(state["columns"]))
    values = [i for i, c in enumerate(state["columns"]) if c.endswith(".value")]
    assert len(values) >= 2
    assert list(spec.cross.columns) == values
    assert spec.flat is not None
    assert list(spec.flat.columns) == values

"""Quantile scaling: what the manifest may say, what the gateway computes, and why int8 needs it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from agent.bundle import BundleError, Manifest
from agent.features.traffic import TRAFFIC_V1
from agent.scaling import MAX_KNOTS, Scaler, by_quantiles
from tests.agent.bundles import manifest_for
from tests.agent.flood_bundle import MODELS
from training.preprocess import Scaler as TrainingScaler

MODEL = (MODELS / "flood_int8.tflite").read_bytes()  # the agent tests' committed int8 model


def _quantile(knots: list[list[float]], levels: list[list[float]]) -> dict[str, Any]:
    width = len(knots)
    return {
        "kind": "quantile",
        "min": [0.0] * width,
        "max": [1.0] * width,
        "clip_low": [0.0] * width,
        "clip_high": [1.0] * width,
        "knots": knots,
        "levels": levels,
    }


def test_each_feature_goes_through_its_knots_clamped_at_the_ends() -> None:
    scaler = Scaler.parse(_quantile([[0.0, 10.0, 1000.0], [5.0]], [[0.25, 0.5, 1.0], [0.5]]), 2)
    raw = np.array([[-3.0, 1.0], [0.0, 5.0], [5.0, 9.0], [505.0, 5.0], [1e9, 0.0]])
    assert scaler.transform(raw).tolist() == [
        [0.25, 0.5],  # below the first knot: its level; a constant feature: its one level
        [0.25, 0.5],
        [0.375, 0.5],  # half way from 0 to 10
        [0.75, 0.5],
        [1.0, 0.5],
    ]
    assert scaler.transform(raw[None]).shape == (1, 5, 2)  # windows: the last axis is features


def test_the_training_fit_is_what_the_gateway_computes() -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack(
        [rng.lognormal(0, 2, 5000), (rng.random(5000) < 0.1) * rng.exponential(1e4, 5000)]
    ).astype(np.float32)
    fitted = TrainingScaler.fit(rows, kind="quantile")
    device = Scaler.parse(json.loads(json.dumps(fitted.to_dict())), 2)
    assert np.array_equal(device.transform(rows), fitted.transform(rows))
    again = TrainingScaler.from_dict(fitted.to_dict())
    assert np.array_equal(again.transform(rows), fitted.transform(rows))
    # a sparse feature's many zeros sit mid-way up their run of levels, not at 0 or 0.9
    assert fitted.transform(np.zeros((1, 2), np.float32))[0, 1] == pytest.approx(0.45, abs=0.01)


def test_a_heavy_tailed_feature_keeps_its_resolution_at_the_int8_input() -> None:
    # an int8 input has one scale over 0..1: 255 steps for every feature
    rng = np.random.default_rng(1)
    rows = rng.lognormal(0, 2.5, (20_000, 1)).astype(np.float32)
    steps = {
        kind: np.round(TrainingScaler.fit(rows, kind=kind).transform(rows) * 255)
        for kind in ("minmax", "quantile")
    }
    low = {kind: float(np.mean(s <= 1)) for kind, s in steps.items()}
    used = {kind: len(np.unique(s)) for kind, s in steps.items()}
    assert low["minmax"] > 0.8  # most rows in the lowest two steps (0.87 here)
    assert low["quantile"] < 0.02  # 2 of 256 steps: ~0.8 % of the rows
    assert used["quantile"] == 256 > 2 * used["minmax"]  # 107 steps used by min-max


def test_a_minmax_manifest_is_written_as_before() -> None:
    manifest = manifest_for(MODEL, TRAFFIC_V1)
    assert set(json.loads(manifest.to_json())["scaler"]) == {
        "kind",
        "min",
        "max",
        "clip_low",
        "clip_high",
    }


def test_a_quantile_manifest_round_trips() -> None:
    manifest = manifest_for(MODEL, TRAFFIC_V1)
    width = len(manifest.columns)
    raw = json.loads(manifest.to_json())
    raw["scaler"] = _quantile([[0.0, 1.0, 2.0]] * width, [[0.0, 0.5, 1.0]] * width)
    parsed = Manifest.from_json(json.dumps(raw).encode())
    assert parsed.scaler.kind == "quantile"
    assert Manifest.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "robust"}, "scaler.kind: must be one of minmax, quantile, got 'robust'"),
        ({"knots": None}, "scaler.knots: expected one list per feature"),
        ({"knots": [[0.0, 1.0]]}, "scaler.knots: expected one list per feature"),
        ({"knots": "x"}, "scaler.knots: expected one list per feature"),
        ({"knots_0": [1.0, 1.0, 2.0]}, "scaler.knots[0]: must increase"),
        ({"knots_0": [2.0, 1.0, 0.0]}, "scaler.knots[0]: must increase"),
        ({"knots_0": [0.0, float("nan"), 2.0]}, "scaler.knots[0]: expected a list of finite"),
        ({"knots_0": [0.0, 1e309, 2.0]}, "scaler.knots[0]: expected a list of finite"),
        ({"knots_0": [0.0, True, 2.0]}, "scaler.knots[0]: expected a list of finite"),
        ({"knots_0": []}, "scaler.knots[0]: 1..1025 knots, as many levels, got 0"),
        ({"levels_0": [0.0, 1.0]}, "scaler.knots[0]: 1..1025 knots, as many levels, got 3"),
        ({"levels_0": [0.0, 1.5, 2.0]}, "scaler.levels[0]: must be 0..1 and not decrease"),
        ({"levels_0": [0.5, 0.2, 1.0]}, "scaler.levels[0]: must be 0..1 and not decrease"),
        ({"min": [0.0]}, f"scaler.min: expected {TRAFFIC_V1.width} values, got 1"),
    ],
)
def test_a_hostile_quantile_scaler_is_refused_naming_the_key(
    change: dict[str, Any], message: str
) -> None:
    manifest = manifest_for(MODEL, TRAFFIC_V1)
    width = len(manifest.columns)
    raw = json.loads(manifest.to_json())
    scaler = _quantile([[0.0, 1.0, 2.0]] * width, [[0.0, 0.5, 1.0]] * width)
    for key, value in change.items():
        name, _, row = key.partition("_")
        if row:
            scaler[name][int(row)] = value
        else:
            scaler[key] = value
    raw["scaler"] = scaler
    # json.dumps writes NaN and Infinity, which Python's json reads back: a hostile file can
    with pytest.raises(BundleError) as caught:
        Manifest.from_json(json.dumps(raw).encode())
    assert str(caught.value).startswith(f"bundle manifest: {message}")


def test_knots_per_feature_are_bounded() -> None:
    knots = [list(range(MAX_KNOTS + 1))]
    with pytest.raises(ValueError, match=r"knots\[0\]: 1..1025 knots"):
        Scaler.parse(_quantile(knots, [[0.0] * (MAX_KNOTS + 1)]), 1)


def test_nan_features_stay_nan() -> None:
    out = by_quantiles(np.array([[np.nan]]), ((0.0, 1.0),), ((0.0, 1.0),))
    assert np.isnan(out[0, 0])

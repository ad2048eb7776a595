"""Fitting the accumulator's cross check on correlated sensors with lags between them, and its
variability band."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.accumulate import Accumulator, AccumulatorSpec, CrossCheck
from agent.accumulate_flat import FlatCheck
from training.accumulate_fit import FitSettings, Stretch, fit_accumulator, fit_cross, fit_flat

F64 = np.ndarray[Any, np.dtype[np.float64]]
DAY = 86_400.0


def lag(x: F64, tau: float) -> F64:
    out = np.empty_like(x)
    value = x[0]
    for i, v in enumerate(x.tolist()):
        value += (v - value) / tau
        out[i] = value
    return out


def plant(n: int, seed: int) -> F64:
    """(n, 4) steps: speed follows load, pressure lags it, temperature lags speed; col 3 noise."""
    rng = np.random.default_rng(seed)
    setpoint = np.repeat(rng.uniform(0.2, 0.9, n // 300 + 1), 300)[:n]
    load = setpoint + lag(rng.normal(0, 0.05, n), 20)
    speed = 600 + 2400 * lag(load, 15)
    pressure = 1.5 + 4 * lag(load, 8)
    temperature = 20 + 0.013 * lag(speed, 60)
    noise = rng.normal(0, 1, (n, 4)) * [0.1, 0.03, 6.0, 50.0]
    return np.stack([temperature, pressure, speed, np.zeros(n)], axis=1) + noise


SETTINGS = FitSettings(cross=True, cross_spans=(1, 10, 30, 120))
COLUMNS = (0, 1, 2)


def test_fit_cross_recovers_the_coupling_and_sets_a_quiet_limit() -> None:
    parts = [plant(20_000, seed) for seed in range(3)]
    spec = fit_cross(parts, COLUMNS, DAY, 0.5, SETTINGS)
    assert spec.columns == COLUMNS
    assert spec.spans == SETTINGS.cross_spans
    assert len(spec.weights[0]) == 2 * 4 + 1
    # residuals near each sensor's own noise, not its swing over the run
    swing = np.vstack(parts)[:, :3].std(axis=0)
    assert (np.asarray(spec.spread) < 0.2 * swing).all()
    assert spec.spread[1] < 0.06  # pressure: 0.03 noise plus a little from the lags
    fresh = plant(40_000, seed=7)
    assert CrossCheck(spec, cap=2.0).ratios(fresh).max() < 1.0
    drifted = fresh.copy()
    drifted[20_000:22_000, 1] += np.linspace(0, 0.2, 2_000)  # 5% of ~4 bar over 2000 steps
    ratios = CrossCheck(spec, cap=2.0).ratios(drifted)
    assert ratios[:20_000].max() < 1.0
    assert (ratios[20_000:22_000] >= 1.0).any()


def test_fit_accumulator_adds_the_cross_check_only_when_asked() -> None:
    rng = np.random.default_rng(5)
    stretches = []
    for seed in range(2):
        raw = plant(10_000, seed)
        clean = np.ones(len(raw), bool)
        clean[4_000:4_500] = False  # a fault splits the run in two normal stretches
        stretches.append(Stretch(rng.gamma(2.0, 0.1, len(raw)), raw, clean))
    plain = fit_accumulator(stretches, COLUMNS, DAY, 1.0)
    assert plain.cross is None
    spec = fit_accumulator(stretches, COLUMNS, DAY, 1.0, SETTINGS)
    assert spec.cross is not None
    assert spec.cross.slack == SETTINGS.cross_slack
    assert AccumulatorSpec.from_manifest(spec.to_dict()) == spec
    ratios = Accumulator(spec).ratios(rng.gamma(2.0, 0.1, 10_000), plant(10_000, 9))
    assert np.isfinite(ratios).all()


def test_too_few_normal_steps_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="too few normal steps"):
        fit_cross([plant(100, 0)], COLUMNS, DAY, 1.0, SETTINGS)


def test_fit_flat_bands_each_sensor_and_leaves_a_state_that_holds_still_uncalm() -> None:
    parts = [plant(20_000, seed) for seed in range(3)]
    for part in parts:
        part[:, 3] = (np.arange(len(part)) // 700) % 2  # a 0/1 state: holds for 700 steps
    settings = FitSettings(flat=True, flat_span=120, flat_margin=1.2)
    low, high = fit_flat(parts, (0, 1, 2, 3), settings)
    assert low[3] == 0.0  # it holds still over whole spans: never calm
    assert 0 < low[0] < high[0]
    check = FlatCheck((0, 1, 2, 3), 120, low, high)
    fresh = plant(20_000, seed=8)
    fresh[:, 3] = (np.arange(len(fresh)) // 900) % 2
    assert check.ratios(fresh).max() < 1.0
    calm = fresh.copy()
    # temperature replaced by a plausible level with a tenth of its noise
    calm[10_000:11_000, 0] = 21.0 + np.random.default_rng(9).normal(0, 0.01, 1_000)
    check.reset()
    ratios = check.ratios(calm)
    assert ratios[:10_000].max() < 1.0
    assert ratios[10_120:11_000].min() >= 1.0
    with pytest.raises(ValueError, match="no normal run longer"):
        fit_flat([plant(100, 0)], COLUMNS, settings)


def test_fit_accumulator_adds_the_flat_check_only_when_asked() -> None:
    rng = np.random.default_rng(6)
    raw = plant(10_000, 1)
    stretches = [Stretch(rng.gamma(2.0, 0.1, len(raw)), raw, np.ones(len(raw), bool))]
    assert fit_accumulator(stretches, COLUMNS, DAY, 1.0).flat is None
    settings = FitSettings(flat=True, flat_span=60)
    spec = fit_accumulator(stretches, COLUMNS, DAY, 1.0, settings)
    assert spec.flat is not None
    assert spec.flat.columns == COLUMNS
    assert spec.flat.span == 60
    assert AccumulatorSpec.from_manifest(spec.to_dict()) == spec

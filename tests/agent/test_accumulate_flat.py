"""The variability check: a reading held with a little noise (too calm) or redrawn each step
around a plausible level (too rough) raises once its span is full; a normal run stays quiet;
a state column that often holds still never fires as calm; hostile manifests are refused by
field name and hostile readings outlived.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from agent.accumulate import Accumulator, AccumulatorError, AccumulatorSpec, FlatSpec
from agent.accumulate_flat import RATIO_CEILING, FlatCheck
from tests.agent.test_accumulate_cross import CROSS

NOISE = 0.1
SPAN = 50
# a sensor with noise 0.1 changes by 0.1 · √2 · √(2/π) ≈ 0.113 a step on average; over 50
# steps that mean stays within 0.113 ± 0.06 (4 of its sds)
FLAT = FlatSpec(columns=(0, 2), span=SPAN, low=(0.05, 0.0), high=(0.2, 0.2))


def steps(n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    """(n, 4) raw steps: a noisy slow sensor in 0, a 0/1 state in 2, unrelated columns between."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, 100, (n, 4))  # the columns the check must not read
    out[:, 0] = 20 + np.sin(np.arange(n) / 2_000) + rng.normal(0, NOISE, n)
    out[:, 2] = (np.arange(n) // 400) % 2  # holds for 400 steps, then flips
    return out


def check() -> FlatCheck:
    return FlatCheck(FLAT.columns, FLAT.span, FLAT.low, FLAT.high)


def test_a_normal_run_stays_quiet_and_the_warm_up_decides_nothing() -> None:
    ratios = check().ratios(steps(20_000))
    assert ratios.max() < 1.0
    assert ratios[SPAN:].min() > 0.3  # the band is not so wide that the check is idle
    assert (ratios[:SPAN] == 0).all()  # SPAN readings give only SPAN - 1 changes


def test_a_calm_value_and_a_rough_one_are_caught_at_a_plausible_level() -> None:
    x = steps(6_000, seed=1)
    rng = np.random.default_rng(11)
    x[2_000:3_000, 0] = 20.5 + rng.normal(0, NOISE / 4, 1_000)  # held, with a little noise
    x[4_000:5_000, 0] = 20.5 + rng.normal(0, NOISE * 3, 1_000)  # redrawn each step
    ratios = check().ratios(x)
    assert ratios[:2_000].max() < 1.0
    calm = 2_000 + int(np.flatnonzero(ratios[2_000:] >= 1.0)[0])
    assert 2_000 < calm < 2_000 + SPAN  # as soon as most of the span is calm
    assert ratios[2_000 + SPAN : 3_000].min() >= 1.0
    assert ratios[3_000 + SPAN : 4_000].max() < 1.0  # gone once out of the span
    assert ratios[4_000 + SPAN : 5_000].min() >= 1.0
    assert ratios[5_000 + SPAN :].max() < 1.0


def test_a_state_that_holds_still_is_not_calm_but_random_flips_are_rough() -> None:
    x = steps(3_000, seed=2)
    x[:, 0] = 20 + np.random.default_rng(5).normal(0, NOISE, 3_000)
    x[1_000:1_500, 2] = 1.0  # held for 500 steps: longer than usual, yet low is 0
    x[2_000:2_500, 2] = np.random.default_rng(6).integers(0, 2, 500)
    ratios = check().ratios(x)
    assert ratios[:2_000].max() < 1.0
    assert ratios[2_000 + SPAN : 2_500].min() >= 1.0


def test_state_across_calls_equals_one_call() -> None:
    x = steps(3_000, seed=3)
    x[1_500:2_000, 0] = 20.0
    whole = check().ratios(x)
    flat = check()
    cuts = [0, 1, 3, 3, 4, 49, 50, 51, 200, 1_499, 2_999, 3_000]
    parts = np.concatenate([flat.ratios(x[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_allclose(whole, parts, rtol=1e-9, atol=1e-12)
    assert whole.max() >= 1.0


def test_missing_readings_are_skipped_and_keep_the_last_ratio() -> None:
    x = steps(2_000, seed=4)
    x[1_000:1_400, 0] = 20.0
    clean = check().ratios(x)
    holes = np.array([0, 2, 700, 1_200, 1_201, 1_999])
    with_nan = np.insert(x, holes, np.nan, axis=0)
    with_nan[holes + np.arange(len(holes)), 1] = 7.0  # an unwatched column may be anything
    with_nan[np.flatnonzero(np.isnan(with_nan[:, 0]))[2], 0] = np.inf
    ratios = check().ratios(with_nan)
    missing = ~np.isfinite(with_nan[:, [0, 2]]).all(axis=1)
    np.testing.assert_allclose(ratios[~missing], clean)
    for i in np.flatnonzero(missing):
        assert ratios[i] == (ratios[i - 1] if i else 0.0)
    assert clean.max() >= 1.0


def test_hostile_readings_stay_bounded_and_are_forgotten() -> None:
    x = steps(2_000, seed=5)
    x[500:505, 0] = [1.7e308, -1.7e308, 1.7e308, -1.7e308, 1e-300]  # changes overflow to inf
    ratios = check().ratios(x)
    assert np.isfinite(ratios).all()
    assert ratios[500:506].max() == RATIO_CEILING
    assert ratios[506 + SPAN :].max() < 1.0  # gone from the span


def test_the_accumulator_takes_the_larger_ratio_and_reset_forgets() -> None:
    spec = AccumulatorSpec(level=1.0, limit=1.0, flat=FLAT)
    acc = Accumulator(spec)
    x = steps(3_000, seed=6)
    x[1_000:, 0] = 20.0
    ratios = acc.ratios(np.zeros(3_000), x)
    np.testing.assert_allclose(ratios, check().ratios(x))
    assert ratios[1_100:].min() >= 1.0
    acc.reset()
    assert acc.step_ratios(x[:SPAN]).max() == 0  # warming up again
    assert AccumulatorSpec.from_manifest(spec.to_dict()) == spec
    both = AccumulatorSpec(level=1.0, limit=1.0, cross=CROSS, flat=FLAT)
    assert AccumulatorSpec.from_manifest(both.to_dict()) == both


def manifest(**change: Any) -> dict[str, Any]:
    section = AccumulatorSpec(level=0.5, limit=2.0, flat=FLAT).to_dict()
    section.update(change)
    return {k: v for k, v in section.items() if v is not None}


HOSTILE = [
    ("flat_columns", {"flat_columns": []}),
    ("flat_columns", {"flat_columns": [0, 0]}),
    ("flat_columns", {"flat_columns": [0, -1]}),
    ("flat_columns", {"flat_columns": [0, 1 << 40]}),
    ("flat_columns", {"flat_columns": "02"}),
    ("flat_columns", {"flat_columns": [0, 2.0]}),
    ("flat_columns", {"flat_columns": list(range(100))}),
    ("flat_span", {"flat_span": 1}),
    ("flat_span", {"flat_span": 10**9}),
    ("flat_span", {"flat_span": 50.0}),
    ("flat_span", {"flat_span": True}),
    ("flat_span", {"flat_span": [50]}),
    ("flat_low", {"flat_low": [0.1]}),
    ("flat_low", {"flat_low": [-0.1, 0.0]}),
    ("flat_low", {"flat_low": [math.nan, 0.0]}),
    ("flat_low", {"flat_low": [math.inf, 0.0]}),
    ("flat_low", {"flat_low": ["0.1", 0.0]}),
    ("flat_low", {"flat_low": [0.0] * 10**6}),
    ("flat_low", {"flat_low": None}),
    ("flat_high", {"flat_high": [0.2, 0.2, 0.2]}),
    ("flat_high", {"flat_high": [0.0, 0.5]}),
    ("flat_high", {"flat_high": [math.inf, 0.5]}),
    ("flat_high", {"flat_high": [1e300, 0.5]}),
    ("flat_high", {"flat_high": [0.05, 0.5]}),  # under its low: no normal value fits the band
    ("flat_high", {"flat_high": [True, 0.5]}),
    ("flat_high", {"flat_high": 0.5}),
]


@pytest.mark.parametrize(("field", "change"), HOSTILE)
def test_hostile_flat_manifests_are_refused_naming_the_field(
    field: str, change: dict[str, Any]
) -> None:
    with pytest.raises(AccumulatorError, match=f"extra.accumulator.{field}:"):
        AccumulatorSpec.from_manifest(manifest(**change))


def test_a_flat_check_needs_every_key_and_columns_that_exist() -> None:
    with pytest.raises(AccumulatorError, match=r"accumulator\.flat_span: needed"):
        AccumulatorSpec.from_manifest({"level": 1, "limit": 1, "flat_columns": [0]})
    spec = AccumulatorSpec.from_manifest(manifest())
    spec.check_width(3)
    with pytest.raises(AccumulatorError, match=r"flat_columns: beyond the 2 step columns"):
        spec.check_width(2)
    assert AccumulatorSpec.from_manifest({"level": 1, "limit": 1}).flat is None

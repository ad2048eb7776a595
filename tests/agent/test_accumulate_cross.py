"""The cross-sensor check: a slow drift that keeps each sensor plausible breaks its coupling with
the others and raises; a normal run stays quiet; hostile manifests are refused by field name
and hostile readings outlived.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from agent.accumulate import (
    Accumulator,
    AccumulatorError,
    AccumulatorSpec,
    CrossCheck,
    CrossSpec,
    cross_residuals,
)

NOISE = 0.1
# three sensors driven by one load l: a = 2l, b = 5 - l, c = 1 + 3l (each plus noise); each
# estimated from the others' last value (span 1), the span-5 averages weighted 0
CROSS = CrossSpec(
    columns=(0, 2, 4),
    spans=(1, 5),
    weights=(
        (-2.0, 0.0, 0.0, 0.0, 10.0),  # a from b
        (-0.5, 0.0, 0.0, 0.0, 5.0),  # b from a
        (1.5, 0.0, 0.0, 0.0, 1.0),  # c from a
    ),
    spread=(2 * NOISE * math.sqrt(2), NOISE * math.sqrt(1.25), NOISE * math.sqrt(3.25)),
    slack=2.5,
    limit=20.0,
)


def steps(n: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    """(n, 5) raw steps: sensors in columns 0, 2, 4, unrelated columns between."""
    rng = np.random.default_rng(seed)
    load = np.cumsum(rng.normal(0, 0.05, n))
    noise = rng.normal(0, NOISE, (n, 3))
    out = rng.normal(0, 100, (n, 5))  # the columns the check must not read
    out[:, 0] = 2 * load + noise[:, 0]
    out[:, 2] = 5 - load + noise[:, 1]
    out[:, 4] = 1 + 3 * load + noise[:, 2]
    return out


def test_a_normal_run_stays_quiet_and_the_warm_up_decides_nothing() -> None:
    ratios = CrossCheck(CROSS, cap=2.0).ratios(steps(20_000))
    assert ratios.max() < 1.0
    assert ratios.max() > 0  # the sums do move on normal noise
    z = cross_residuals(CROSS, steps(10)[:, [0, 2, 4]], np.zeros((0, 3)))
    assert np.isnan(z[:4]).all()
    assert np.isfinite(z[4:]).all()


def test_a_slow_drift_on_one_sensor_is_caught_while_a_per_step_test_would_not_be() -> None:
    x = steps(6_000, seed=1)
    ramp = np.linspace(0, 6 * NOISE, 3_000)  # at most 6 noise sds, under 4.8 spreads of b
    x[3_000:, 2] += ramp
    ratios = CrossCheck(CROSS, cap=2.0).ratios(x)
    assert ratios[:3_000].max() < 1.0
    first = int(np.flatnonzero(ratios >= 1.0)[0])
    assert 3_000 < first < 6_000
    assert ratios[-1] >= 1.0


def test_state_across_calls_equals_one_call() -> None:
    x = steps(3_000, seed=2)
    x[1_500:, 4] += np.linspace(0, 1.0, 1_500)
    whole = CrossCheck(CROSS, cap=2.0).ratios(x)
    check = CrossCheck(CROSS, cap=2.0)
    cuts = [0, 1, 3, 3, 4, 200, 1_499, 2_999, 3_000]
    parts = np.concatenate([check.ratios(x[a:b]) for a, b in itertools.pairwise(cuts)])
    np.testing.assert_allclose(whole, parts, rtol=1e-9, atol=1e-9)
    assert whole.max() >= 1.0


def test_missing_readings_are_skipped_and_keep_the_last_ratio() -> None:
    x = steps(2_000, seed=3)
    x[1_000:, 0] += np.linspace(0, 1.5, 1_000)
    clean = CrossCheck(CROSS, cap=2.0).ratios(x)
    holes = np.array([0, 2, 700, 1_200, 1_201, 1_999])
    with_nan = np.insert(x, holes, np.nan, axis=0)
    with_nan[holes + np.arange(len(holes)), 1] = 7.0  # an unwatched column may be anything
    with_nan[np.flatnonzero(np.isnan(with_nan[:, 0]))[2], 0] = np.inf
    ratios = CrossCheck(CROSS, cap=2.0).ratios(with_nan)
    missing = ~np.isfinite(with_nan[:, [0, 2, 4]]).all(axis=1)
    np.testing.assert_allclose(ratios[~missing], clean)
    for i in np.flatnonzero(missing):
        assert ratios[i] == (ratios[i - 1] if i else 0.0)
    assert np.isfinite(ratios).all()


def test_the_accumulator_takes_the_larger_ratio_and_reset_forgets() -> None:
    spec = AccumulatorSpec(level=1.0, limit=1.0, cross=CROSS)
    acc = Accumulator(spec)
    x = steps(3_000, seed=4)
    x[1_000:, 2] += 1.0  # a jump of 10 noise sds on b
    ratios = acc.ratios(np.zeros(3_000), x)
    np.testing.assert_allclose(ratios, CrossCheck(CROSS, 2.0).ratios(x))
    assert ratios[1_100:].min() >= 1.0
    acc.reset()
    assert acc.step_ratios(x[:4]).max() == 0  # averages empty again: warming up
    assert AccumulatorSpec.from_manifest(spec.to_dict()) == spec


# a estimated from b's 60-step average alone, b and c from a's last value: a fault on b stays
# in b's average, and so in a's estimate, for 60 steps after it ends
LAGGED = CrossSpec(
    columns=(0, 2, 4),
    spans=(1, 60),
    weights=(
        (0.0, -2.0, 0.0, 0.0, 10.0),
        (-0.5, 0.0, 0.0, 0.0, 5.0),
        (1.5, 0.0, 0.0, 0.0, 1.0),
    ),
    spread=(NOISE * math.sqrt(1 + 4 / 60), NOISE * math.sqrt(1.25), NOISE * math.sqrt(3.25)),
    slack=2.5,
    limit=20.0,
)


def slow_steps(n: int, seed: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """(n, 5) steps as ``steps`` with a load slow enough for a 60-step average to follow."""
    x = steps(n, seed)
    load = 0.5 * np.sin(2 * np.pi * np.arange(n) / 20_000)
    rng = np.random.default_rng(seed + 100)
    noise = rng.normal(0, NOISE, (n, 3))
    x[:, 0] = 2 * load + noise[:, 0]
    x[:, 2] = 5 - load + noise[:, 1]
    x[:, 4] = 1 + 3 * load + noise[:, 2]
    return x


def test_hostile_readings_stay_bounded_and_are_forgotten() -> None:
    x = slow_steps(2_000, seed=8)
    x[500:505, 2] = 1.7e308  # finite, but a sum of two overflows
    x[505:510, 0] = -1.7e308
    ratios = CrossCheck(LAGGED, cap=2.0).ratios(x)
    assert np.isfinite(ratios).all()
    assert ratios.max() <= 2.0  # the cap holds
    assert ratios[700:].max() < 1.0  # gone from every average and drained


def manifest(**change: Any) -> dict[str, Any]:
    section = AccumulatorSpec(level=0.5, limit=2.0, cross=CROSS).to_dict()
    section.update(change)
    return {k: v for k, v in section.items() if v is not None}


HOSTILE = [
    ("cross_columns", {"cross_columns": [0]}),
    ("cross_columns", {"cross_columns": [0, 0, 2]}),
    ("cross_columns", {"cross_columns": [0, 2, -1]}),
    ("cross_columns", {"cross_columns": [0, 2, 1 << 40]}),
    ("cross_columns", {"cross_columns": "024"}),
    ("cross_columns", {"cross_columns": [0, 2, 4.0]}),
    ("cross_spans", {"cross_spans": []}),
    ("cross_spans", {"cross_spans": [0]}),
    ("cross_spans", {"cross_spans": [1, 10**9]}),
    ("cross_spans", {"cross_spans": [1, 1]}),
    ("cross_spans", {"cross_spans": list(range(1, 20))}),
    ("cross_weights", {"cross_weights": [[0.0] * 5] * 2}),
    ("cross_weights", {"cross_weights": [[0.0] * 4] * 3}),
    ("cross_weights", {"cross_weights": [[math.nan] * 5] * 3}),
    ("cross_weights", {"cross_weights": [[1e300] * 5] * 3}),
    ("cross_weights", {"cross_weights": [["1"] * 5] * 3}),
    ("cross_weights", {"cross_weights": [[0.0] * 10**6] * 3}),
    ("cross_weights", {"cross_weights": [[0.0] * 5] * 10**6}),
    ("cross_weights", {"cross_weights": 3}),
    ("cross_spread", {"cross_spread": [1.0, 1.0]}),
    ("cross_spread", {"cross_spread": [1.0, 0.0, 1.0]}),
    ("cross_spread", {"cross_spread": [1.0, -1.0, math.inf]}),
    ("cross_spread", {"cross_spread": None}),
    ("cross_slack", {"cross_slack": -1.0}),
    ("cross_slack", {"cross_slack": math.nan}),
    ("cross_slack", {"cross_slack": True}),
    ("cross_limit", {"cross_limit": 0}),
    ("cross_limit", {"cross_limit": 1e300}),
    ("cross_limit", {"cross_limit": "10"}),
]


@pytest.mark.parametrize(("field", "change"), HOSTILE)
def test_hostile_cross_manifests_are_refused_naming_the_field(
    field: str, change: dict[str, Any]
) -> None:
    with pytest.raises(AccumulatorError, match=f"extra.accumulator.{field}:"):
        AccumulatorSpec.from_manifest(manifest(**change))


def test_a_cross_check_needs_every_key_and_columns_that_exist() -> None:
    with pytest.raises(AccumulatorError, match=r"accumulator\.cross_spans: needed"):
        AccumulatorSpec.from_manifest({"level": 1, "limit": 1, "cross_columns": [0, 1]})
    spec = AccumulatorSpec.from_manifest(manifest())
    spec.check_width(5)
    with pytest.raises(AccumulatorError, match=r"cross_columns: beyond the 4 step columns"):
        spec.check_width(4)
    assert AccumulatorSpec.from_manifest({"level": 1, "limit": 1}).cross is None

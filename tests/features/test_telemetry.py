"""telemetry-v1: forward fill, delta, staleness, and batch == incremental at any split."""

from __future__ import annotations

import numpy as np
import pytest

from agent.features.steps import StepSpec
from agent.features.telemetry import (
    TelemetryFeaturizer,
    TelemetrySteps,
    featurize_telemetry,
    telemetry_feature_set,
)

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _readings(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-sorted readings of two sensors with gaps, as (ts, sensor index, value)."""
    gaps = rng.exponential(0.7 * S, n).astype(np.int64)
    gaps[rng.random(n) < 0.02] += 20 * S  # long silences exercise forward fill
    ts = T0 + np.cumsum(gaps)
    return ts, rng.integers(0, 2, n), rng.normal(20.0, 3.0, n)


def test_columns_are_value_delta_staleness_per_sensor() -> None:
    fs = telemetry_feature_set(["temp", "door"])
    assert fs.id == "telemetry-v1"
    assert fs.columns == (
        "temp.value", "temp.delta", "temp.staleness_s",
        "door.value", "door.delta", "door.staleness_s",
    )  # fmt: skip
    assert len(fs.schema_id) == 16
    with pytest.raises(ValueError, match="duplicate"):
        telemetry_feature_set(["a", "a"])


def test_forward_fill_delta_and_staleness() -> None:
    steps = featurize_telemetry(
        ["temp"],
        [([T0 + S // 2, T0 + 3 * S + S // 4], "temp", [10.0, 13.0])],
        StepSpec("time", 1.0),
    )
    assert steps.start_ns.tolist() == [T0 + k * S for k in range(4)]
    np.testing.assert_allclose(steps.values[:, 0], [10, 10, 10, 13])
    np.testing.assert_allclose(steps.values[:, 1], [0, 0, 0, 3])
    np.testing.assert_allclose(steps.values[:, 2], [0.5, 1.5, 2.5, 0.75])


def test_nonfinite_readings_are_skipped_and_counted() -> None:
    featurizer = TelemetryFeaturizer(["temp"])
    featurizer.push([T0, T0 + S // 10, T0 + S // 5], "temp", [1.0, np.nan, np.inf])
    steps = featurizer.flush()
    assert featurizer.skipped_nonfinite == 2
    assert steps.values[:, 0].tolist() == [1.0]


def test_late_readings_are_counted_not_used() -> None:
    featurizer = TelemetryFeaturizer(["temp"])
    featurizer.push([T0 + S // 2], 0, [5.0])
    first = featurizer.advance(T0 + 2 * S)
    featurizer.push([T0 + S // 3], 0, [99.0])
    assert featurizer.late == 1
    assert len(first) == 2
    assert 99.0 not in featurizer.flush().values[:, 0]


def test_unknown_sensor_is_named() -> None:
    with pytest.raises(KeyError, match="humidity"):
        TelemetryFeaturizer(["temp"]).push([T0], "humidity", [1.0])


@pytest.mark.parametrize("seed", range(5))
def test_batch_equals_incremental_at_random_split_points(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts, sensor, value = _readings(rng, 400)
    sensors = ["temp", "pressure"]
    step = StepSpec("time", 0.5)
    batch = featurize_telemetry(
        sensors, [(ts[sensor == j], j, value[sensor == j]) for j in range(2)], step
    )
    featurizer = TelemetryFeaturizer(sensors, step)
    cuts = np.sort(rng.choice(np.arange(1, len(ts)), size=12, replace=False))
    parts: list[TelemetrySteps] = []
    for chunk in np.split(np.arange(len(ts)), cuts):
        for j in range(2):
            mine = chunk[sensor[chunk] == j]
            featurizer.push(ts[mine], sensors[j], value[mine])
        parts.append(featurizer.advance(int(ts[chunk[-1]])))
    parts.append(featurizer.flush())
    incremental = TelemetrySteps.concat(parts, batch.values.shape[1])
    assert featurizer.late == 0
    assert len(batch) == (ts[-1] // step.size_ns) - (ts[0] // step.size_ns) + 1
    np.testing.assert_array_equal(incremental.start_ns, batch.start_ns)
    np.testing.assert_array_equal(incremental.values, batch.values)

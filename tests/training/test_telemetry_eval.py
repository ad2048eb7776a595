"""Telemetry evaluation logic and the classical baselines, on small generated arrays."""

from __future__ import annotations

import numpy as np
import pytest

from training.synth.telemetry import FaultSpec, TelemetryScenario
from training.telemetry_baselines import fit_forest, forest_scores, rolling_z
from training.telemetry_eval import fault_spans, judge, steps_of, windows_of


def _calm(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.5 + rng.normal(0, 0.01, (n, 8, 3))).astype(np.float32)


def test_rolling_z_rises_on_a_jump_of_the_last_step() -> None:
    windows = _calm(20)
    windows[10:, -1, 1] += 0.2
    z = rolling_z(windows)
    assert z.shape == (20,)
    assert z[10:].min() > z[:10].max()


def test_isolation_forest_scores_outliers_higher() -> None:
    forest = fit_forest(_calm(300), seed=0, trees=20)
    odd = _calm(10, seed=1)
    odd[:, :, 0] = 0.9
    scores = forest_scores(forest, np.concatenate([_calm(10, seed=2), odd]))
    assert scores[10:].min() > scores[:10].max()


def test_judge_counts_found_faults_delays_and_false_alarms() -> None:
    types = np.array(
        ["normal"] * 100 + ["drift"] * 20 + ["normal"] * 100 + ["jump"] * 10 + ["normal"] * 200
    )
    assert fault_spans(types) == [("drift", 100, 120), ("jump", 220, 230)]
    scores = np.zeros(len(types))
    scores[104:106] = 2.0  # drift raised 5 steps in (2 of 3 windows)
    scores[50:52] = 2.0  # an alarm on normal steps: a false alarm
    scores[400:403] = 2.0  # another
    scores[225] = 2.0  # one window alone raises nothing: the jump is missed
    outcome = judge(scores, 1.0, types, window=4)
    assert outcome.found == {"drift": [True], "jump": [False]}
    assert outcome.delays_s == {"drift": [5.0]}
    assert outcome.false_alarms == 2
    assert outcome.per_day == pytest.approx(2 / (400 / 86_400))


def test_generated_run_becomes_windows_with_clean_flags() -> None:
    scenario = TelemetryScenario(duration=600.0, faults=(FaultSpec("stuck_at", 300.0, 360.0),))
    x, types = steps_of(scenario)
    assert x.shape == (600, 9)  # value, delta, staleness of three sensors
    assert (types == "stuck_at").sum() == 60
    run = windows_of(x, types, 16)
    assert run.windows.shape == (585, 16, 9)
    # windows holding any fault step are not clean, even when their last step is normal
    assert not run.clean[300 - 15 : 360].any()
    assert run.clean[: 300 - 15].all()
    assert run.clean[360:].all()

"""Classical telemetry anomaly baselines on the same windows as gru-forecast.

Rolling z-score: each column's last step against the mean and spread of the steps before it
in the window, max over columns (what a rule-based gateway would do). IsolationForest: fit on
the training windows' normal rows (flattened), score = how easily a window is isolated.
Both output one score per window, higher = more anomalous, thresholded like the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
# the spread of a column that did not move in the window: one int8 input step, so a constant
# reading followed by a change of one step is not an infinite z-score
Z_FLOOR = 1.0 / 255.0
FOREST_SAMPLE = 20_000  # training windows an IsolationForest sees (it subsamples anyway)


def rolling_z(windows: F32) -> F64:
    """Max over columns of |last - mean(past)| / std(past), per window (N, T, F)."""
    past = windows[:, :-1].astype(np.float64)
    last = windows[:, -1].astype(np.float64)
    spread = np.maximum(past.std(axis=1), Z_FLOOR)
    z = np.abs(last - past.mean(axis=1)) / spread
    return np.asarray(z.max(axis=1), np.float64) if z.size else np.zeros(len(windows))


def fit_forest(normal: F32, seed: int, trees: int = 100) -> Any:
    """An IsolationForest on (a sample of) normal windows, flattened."""
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(seed)
    rows = normal.reshape(len(normal), -1)
    if len(rows) > FOREST_SAMPLE:
        rows = rows[rng.choice(len(rows), FOREST_SAMPLE, replace=False)]
    return IsolationForest(n_estimators=trees, random_state=seed).fit(rows)


def forest_scores(forest: Any, windows: F32) -> F64:
    """Higher = more anomalous (the negated sklearn score)."""
    if len(windows) == 0:
        return np.zeros(0)
    return np.asarray(-forest.score_samples(windows.reshape(len(windows), -1)), np.float64)

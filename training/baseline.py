"""The RandomForest reference: on tabular IDS data trees are the bar deep models must clear."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from training.evaluate import classification_metrics

logger = logging.getLogger(__name__)

MAX_TRAIN_ROWS = 50_000


def random_forest(
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.int64],
    x_test: npt.NDArray[np.float32],
    y_test: npt.NDArray[np.int64],
    labels: list[str],
    benign: int | None,
    trees: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit a RandomForest on the same (flattened) training windows and score the same test set."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    flat_train = x_train.reshape(len(x_train), -1)
    if len(flat_train) > MAX_TRAIN_ROWS:
        keep = rng.choice(len(flat_train), MAX_TRAIN_ROWS, replace=False)
        flat_train, y_train = flat_train[keep], y_train[keep]
        logger.info("RandomForest trains on a %d-row sample", MAX_TRAIN_ROWS)
    forest = RandomForestClassifier(
        n_estimators=trees, random_state=seed, n_jobs=1, class_weight="balanced"
    )
    started = time.perf_counter()
    forest.fit(flat_train, y_train)
    fit_s = time.perf_counter() - started
    predicted = forest.predict(x_test.reshape(len(x_test), -1)).astype(np.int64)
    result = classification_metrics(y_test, predicted, labels, benign)
    result.update({"model": "RandomForest", "trees": trees, "train_rows": len(flat_train)})
    result["fit_seconds"] = round(fit_s, 3)
    return result

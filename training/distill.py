"""A tree-ensemble teacher for the tabular dnn: RandomForest soft labels, out of fold.

On flow tables a RandomForest is the bar; its class probabilities carry what the trees learned
about which classes resemble which (for CICIoT2023's DoS and DDoS families, most of all).
Training the dnn on ``(1 - distill) · one-hot + distill · teacher`` passes that on. The teacher's
probabilities on a training row come from a forest fitted on the other folds: a forest's
probabilities on its own training rows are near one-hot and would teach nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from training.config import TrainConfig

if TYPE_CHECKING:
    from training.train import Prepared

logger = logging.getLogger(__name__)

FOLDS = 3


def out_of_fold_probabilities(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    n_classes: int,
    trees: int,
    seed: int,
) -> npt.NDArray[np.float32]:
    """Each row's RandomForest class probabilities from a forest trained on the other folds."""
    from sklearn.ensemble import RandomForestClassifier

    flat = x.reshape(len(x), -1)
    fold = np.random.default_rng(seed).permutation(len(flat)) % FOLDS
    out = np.zeros((len(flat), n_classes), np.float32)
    for k in range(FOLDS):
        held = fold == k
        forest = RandomForestClassifier(
            n_estimators=trees, random_state=seed + k, n_jobs=1, class_weight="balanced"
        )
        forest.fit(flat[~held], y[~held])
        out[np.ix_(held, forest.classes_)] = forest.predict_proba(flat[held])
    return out


def soft_targets(config: TrainConfig, prepared: Prepared) -> npt.NDArray[np.float32] | None:
    """One-hot training targets mixed with the teacher's (None: plain one-hot, no teacher)."""
    if config.distill <= 0:
        return None
    y = prepared.y["train"]
    n_classes = len(prepared.labels)
    teacher = out_of_fold_probabilities(
        prepared.x["train"], y, n_classes, config.baseline_trees, config.seed
    )
    logger.info("distilling from a RandomForest teacher (weight %g)", config.distill)
    hard = np.eye(n_classes, dtype=np.float32)[y]
    mixed: npt.NDArray[np.float32] = (1.0 - config.distill) * hard + config.distill * teacher
    return mixed

"""A tree-ensemble teacher for the tabular dnn: RandomForest soft labels, out of fold.

On flow tables a RandomForest is the bar; its class probabilities carry what the trees learned
about which classes resemble which (for CICIoT2023's DoS and DDoS families, most of all).
Training the dnn on ``(1 - distill) · one-hot + distill · teacher`` passes that on. The teacher's
probabilities on a training row come from a forest fitted on the other folds: a forest's
probabilities on its own training rows are near one-hot and would teach nothing.

``distill_augment`` adds new rows labelled by the teacher alone (model compression: the trees'
decision regions between the training rows are passed on, not only at them).
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
AUGMENT_SWAP = 0.3  # share of an augmented row's features taken from its partner


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


def swapped_rows(
    x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], count: int, swap: float, seed: int
) -> npt.NDArray[np.float32]:
    """``count`` new rows: a training row with each feature taken, at ``swap``, from another row.

    The partner is a random row of the same class, so a new row stays near its class's rows and
    every value is one the data holds (flags stay 0/1); the teacher decides what it is.
    """
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    base = rng.integers(0, len(flat), count)
    partner = np.empty(count, np.int64)
    for c in np.unique(y[base]):
        chosen = y[base] == c
        pool = np.nonzero(y == c)[0]
        partner[chosen] = pool[rng.integers(0, len(pool), int(chosen.sum()))]
    take = rng.random((count, flat.shape[1])) < swap
    rows: npt.NDArray[np.float32] = np.where(take, flat[partner], flat[base]).astype(np.float32)
    return rows.reshape((count, *x.shape[1:]))


def augmented(
    config: TrainConfig, prepared: Prepared, class_weight: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Teacher-labelled new rows (``distill_augment`` per training row): inputs, targets, weights.

    The teacher is a RandomForest on every training row; the student sees its probabilities
    where no training row is, which a few thousand rows leave mostly empty. A new row weighs
    its teacher label's expected class weight.
    """
    from sklearn.ensemble import RandomForestClassifier

    x, y = prepared.x["train"], prepared.y["train"]
    count = round(config.distill_augment * len(x))
    new = swapped_rows(x, y, count, AUGMENT_SWAP, config.seed)
    forest = RandomForestClassifier(
        config.baseline_trees, random_state=config.seed, n_jobs=1, class_weight="balanced"
    )
    forest.fit(x.reshape(len(x), -1), y)
    targets = np.zeros((count, len(prepared.labels)), np.float32)
    targets[:, forest.classes_] = forest.predict_proba(new.reshape(count, -1))
    logger.info("%d teacher-labelled augmented rows", count)
    return new, targets, targets @ class_weight

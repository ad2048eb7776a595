"""Choose the tabular dnn recipe on VALIDATION rows only: dnn vs RandomForest macro-F1 per seed.

The held-out test part of each seed's split is never scored here. Run
``python -m benchmarks.tabular_validation nsl-kdd --seeds 0 1 --set class_weight_power=0.5``.

With ``class_offsets`` the offsets are fitted on validation rows, so scoring them there would
flatter them: the validation rows are cut into ``OFFSET_FOLDS`` stratified parts and each part
is scored with offsets fitted on the others (the same trained net; its plain figure is printed
beside).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.training_quality import DATASETS, TABULAR_RECIPES

FOLDERS = {"ciciot2023": "ciciot2023_sample", "nsl-kdd": "nsl_kdd"}
OFFSET_FOLDS = 5


def _value(text: str) -> Any:
    """A ``--set`` value as int, float or string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cross_fitted(
    members: npt.NDArray[np.float64], y: npt.NDArray[np.int64], limit: float, seed: int
) -> npt.NDArray[np.int64]:
    """Each validation row's class with offsets fitted on the other stratified parts."""
    from training.offsets import fit_offsets, shifted

    rng = np.random.default_rng(seed)
    part = np.empty(len(y), np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        part[rows] = (np.arange(len(rows)) + rng.integers(OFFSET_FOLDS)) % OFFSET_FOLDS
    predicted = np.empty(len(y), np.int64)
    for k in range(OFFSET_FOLDS):
        held = part == k
        offsets = fit_offsets(members[:, ~held], y[~held], limit)
        predicted[held] = shifted(members[:, held], offsets).argmax(axis=1)
    return predicted


def validation_scores(dataset: str, seed: int, options: dict[str, Any]) -> tuple[float, float]:
    """The dnn's and the forest's macro-F1 on the validation rows of ``seed``'s split."""
    import keras
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score

    from training.config import TrainConfig
    from training.datasets import load
    from training.fit import fit_classifier
    from training.models import build, fit_encoding
    from training.train import prepare

    options = dict(options)
    limit = options.pop("class_offsets", 0.0)
    config = TrainConfig(
        dataset=dataset,
        path=str(DATASETS / FOLDERS[dataset]),
        out="unused",
        verbose=0,
        seed=seed,
        **options,
    )
    keras.utils.set_random_seed(seed)
    prepared = prepare(config, load(config.dataset, config.path, **config.loader_options()))
    model = build(prepared.spec)
    if prepared.spec.encoding:
        fit_encoding(model, prepared.knots)
    fit_classifier(config, prepared, model)
    x_val, y_val = prepared.x["val"], prepared.y["val"]
    predicted = model.predict(x_val, batch_size=1024, verbose=0).argmax(axis=1)
    dnn = f1_score(y_val, predicted, average="macro", zero_division=0)
    if limit > 0:
        from training.offsets import member_probabilities

        plain = dnn
        predicted = cross_fitted(member_probabilities(model, x_val), y_val, limit, seed)
        dnn = f1_score(y_val, predicted, average="macro", zero_division=0)
        print(f"seed {seed}: val macro-F1 without offsets {plain:.4f}, cross-fitted {dnn:.4f}")
    forest = RandomForestClassifier(
        config.baseline_trees, random_state=seed, n_jobs=1, class_weight="balanced"
    )
    forest.fit(prepared.x["train"].reshape(len(prepared.x["train"]), -1), prepared.y["train"])
    rf = f1_score(y_val, forest.predict(x_val.reshape(len(x_val), -1)), average="macro")
    return float(dnn), float(rf)


def main() -> None:
    """Print validation macro-F1 of the dnn and the forest for each seed."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(FOLDERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], help="recipe key=value overrides")
    args = parser.parse_args()
    options = dict(TABULAR_RECIPES[args.dataset])
    options.update({k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    gaps = []
    for seed in args.seeds:
        started = time.perf_counter()
        dnn, rf = validation_scores(args.dataset, seed, options)
        gaps.append(dnn - rf)
        print(
            f"{args.dataset} seed {seed}: val macro-F1 dnn {dnn:.4f} rf {rf:.4f} "
            f"gap {dnn - rf:+.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(f"{Path(__file__).name} {args.set}: mean gap {np.mean(gaps):+.4f}, min {min(gaps):+.4f}")


if __name__ == "__main__":
    main()

"""Choose the tabular dnn recipe on VALIDATION rows only: dnn vs RandomForest macro-F1 per seed.

The held-out test part of each seed's split is never scored here. Run
``python -m benchmarks.tabular_validation nsl-kdd --seeds 0 1 --set class_weight_power=0.5``.

One seed's validation rows hold about one U2R row, so the figures are also pooled over the
seeds (``pooled_lines``).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.training_quality import DATASETS, TABULAR_RECIPES

FOLDERS = {"ciciot2023": "ciciot2023_sample", "nsl-kdd": "nsl_kdd"}


def _value(text: str) -> Any:
    """A ``--set`` value as int, float or string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@dataclass
class ValOutcome:
    """One seed's validation rows and each model's classes for them."""

    y: npt.NDArray[np.int64]
    dnn: npt.NDArray[np.int64]
    forest: npt.NDArray[np.int64]
    labels: list[str]


def validation_outcome(dataset: str, seed: int, options: dict[str, Any]) -> ValOutcome:
    """The dnn's and the forest's classes for the validation rows of ``seed``'s split."""
    import keras
    from sklearn.ensemble import RandomForestClassifier

    from training.config import TrainConfig
    from training.datasets import load
    from training.fit import fit_classifier
    from training.models import build, fit_encoding
    from training.train import prepare

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
    dnn = model.predict(x_val, batch_size=1024, verbose=0).argmax(axis=1).astype(np.int64)
    forest = RandomForestClassifier(
        config.baseline_trees, random_state=seed, n_jobs=1, class_weight="balanced"
    )
    forest.fit(prepared.x["train"].reshape(len(prepared.x["train"]), -1), prepared.y["train"])
    trees = forest.predict(x_val.reshape(len(x_val), -1)).astype(np.int64)
    return ValOutcome(y_val, dnn, trees, list(prepared.labels))


def _f1(y: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], **kwargs: Any) -> Any:
    from sklearn.metrics import f1_score

    return f1_score(y, predicted, zero_division=0, **kwargs)


def pooled_lines(outcomes: list[ValOutcome]) -> list[str]:
    """Macro- and per-class F1 over every seed's validation rows at once.

    One seed's validation rows hold about one U2R row, so its F1 is 0 or 1 and a per-seed
    macro-F1 swings by 20 points on it; pooled over the seeds it is graded.
    """
    from sklearn.metrics import confusion_matrix

    y = np.concatenate([o.y for o in outcomes])
    labels = outcomes[0].labels
    lines = []
    for name in ("dnn", "forest"):
        predicted = np.concatenate([getattr(o, name) for o in outcomes])
        per_class = _f1(y, predicted, labels=range(len(labels)), average=None)
        lines.append(
            f"pooled {name:6s} macro-F1 {_f1(y, predicted, average='macro'):.4f} over "
            f"{len(y)} rows; "
            + ", ".join(f"{label} {f:.3f}" for label, f in zip(labels, per_class, strict=True))
        )
        # counts say more than F1 with a handful of rare rows: e.g. benign rows called R2L
        lines.append(f"pooled {name:6s} confusion {confusion_matrix(y, predicted).tolist()}")
    return lines


def main() -> None:
    """Print validation macro-F1 of the dnn and the forest for each seed, then pooled."""
    from agent.quiet import quiet_tensorflow

    quiet_tensorflow()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(FOLDERS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", nargs="*", default=[], help="recipe key=value overrides")
    args = parser.parse_args()
    options = dict(TABULAR_RECIPES[args.dataset])
    options.update({k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    gaps, outcomes = [], []
    for seed in args.seeds:
        started = time.perf_counter()
        outcome = validation_outcome(args.dataset, seed, options)
        outcomes.append(outcome)
        dnn, rf = (
            _f1(outcome.y, outcome.dnn, average="macro"),
            _f1(outcome.y, outcome.forest, average="macro"),
        )
        gaps.append(dnn - rf)
        print(
            f"{args.dataset} seed {seed}: val macro-F1 dnn {dnn:.4f} rf {rf:.4f} "
            f"gap {dnn - rf:+.4f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    for line in pooled_lines(outcomes):
        print(line)
    print(f"{Path(__file__).name} {args.set}: mean gap {np.mean(gaps):+.4f}, min {min(gaps):+.4f}")


if __name__ == "__main__":
    main()

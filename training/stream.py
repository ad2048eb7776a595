"""Training on CSV tables larger than memory: chunks from disk through tf.data (``--stream``).

Two passes over the files, neither holding more than one chunk of rows: the first counts
classes and keeps a (near-)uniform reservoir sample of the training split to fit the scaler (and the
RandomForest reference); the second feeds ``tf.data.Dataset.from_generator`` over scaled
chunks to ``fit``, and scores the test split chunk by chunk. Rows go to train / val / test by a
hash of their feature values, so identical rows always land in the same split and no duplicate
crosses it (within-split duplicates are kept in this mode).

One process; training across workers reads ``iotids features`` recordings instead (see
training/multiworker.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from training import split
from training.config import ConfigError, TrainConfig
from training.datasets.base import BENIGN_NAMES, Dataset
from training.models import ModelSpec, build
from training.preprocess import Scaler, class_weights

logger = logging.getLogger(__name__)

SAMPLE_ROWS = 200_000
TEST_KEEP = 20_000  # scaled test rows saved to data/test.npz for the converters
_SPLIT_OF_BUCKET = np.array(["train"] * 7 + ["val"] + ["test"] * 2)


def row_buckets(x: npt.NDArray[np.float32]) -> npt.NDArray[np.str_]:
    """train / val / test per row from a hash of its feature bits (70 / 10 / 20 %)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    h = np.full(len(x), 0xCBF29CE484222325, np.uint64)
    for column in bits.T:  # FNV-style mixing, vectorised over rows; uint64 wraps by design
        h = (h ^ column) * np.uint64(0x100000001B3)
        h ^= h >> np.uint64(29)
    return _SPLIT_OF_BUCKET[(h % np.uint64(10)).astype(np.int64)]


def _chunks(
    config: TrainConfig,
) -> Iterator[tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.str_]]]:
    """Finite-valued chunks of the configured CSV kind."""
    if config.dataset == "ciciot2023":
        from training.datasets.ciciot2023 import chunks

        source = chunks(config.path, config.label_mode or "family")
    elif config.dataset == "csv":
        from training.datasets.table import chunks as table_chunks

        source = table_chunks(config.path, config.label_column or "label", config.drop_columns)
    else:
        raise ConfigError(f"train.stream: only ciciot2023 and csv stream, not {config.dataset!r}")
    for names, x, labels, _ in source:
        ok = np.isfinite(x).all(axis=1)
        yield names, x[ok], labels[ok]


def survey(
    config: TrainConfig,
) -> tuple[list[str], Counter[tuple[str, str]], npt.NDArray[np.float32], npt.NDArray[np.str_]]:
    """Pass 1: columns, (split, class) counts, and a reservoir sample of training rows."""
    rng = np.random.default_rng(config.seed)
    counts: Counter[tuple[str, str]] = Counter()
    sample_x: npt.NDArray[np.float32] | None = None
    sample_y = np.zeros(0, np.str_)
    seen = 0
    names: list[str] = []
    for chunk_names, x, labels in _chunks(config):
        names = chunk_names
        where = row_buckets(x)
        counts.update(zip(where.tolist(), labels.tolist(), strict=True))
        train_x, train_y = x[where == "train"], labels[where == "train"]
        if sample_x is None:
            sample_x = np.zeros((0, x.shape[1]), np.float32)
        # reservoir sampling, a chunk at a time: each training row kept with p = SAMPLE / seen
        keys = rng.random(len(train_x)) * (seen + np.arange(1, len(train_x) + 1)) / SAMPLE_ROWS
        seen += len(train_x)
        take = keys < 1.0
        sample_x = np.concatenate([sample_x, train_x[take]])
        sample_y = np.concatenate([sample_y, train_y[take]])
        if len(sample_x) > SAMPLE_ROWS:
            keep = rng.choice(len(sample_x), SAMPLE_ROWS, replace=False)
            sample_x, sample_y = sample_x[keep], sample_y[keep]
    if sample_x is None or not len(sample_x):
        raise ConfigError(f"train.path: no usable rows in {config.path}")
    return names, counts, sample_x, sample_y


def _labels(counts: Counter[tuple[str, str]]) -> list[str]:
    """Class names, benign first."""
    names = sorted({label for _, label in counts})
    return [n for n in names if n.lower() in BENIGN_NAMES] + [
        n for n in names if n.lower() not in BENIGN_NAMES
    ]


def _scaled(
    config: TrainConfig, scaler: Scaler, index: dict[str, int], which: str
) -> Iterator[tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
    """Pass 2: scaled ``which``-split rows and class indexes, a chunk at a time."""
    for _, x, labels in _chunks(config):
        mine = row_buckets(x) == which
        if mine.any():
            y = np.array([index[label] for label in labels[mine].tolist()], np.int64)
            yield scaler.transform(x[mine]), y


def _dataset(
    config: TrainConfig,
    scaler: Scaler,
    index: dict[str, int],
    which: str,
    width: int,
    rows: int,
) -> Any:
    """A tf.data pipeline over the streamed split: unbatch, shuffle, batch, prefetch."""
    import tensorflow as tf

    data = tf.data.Dataset.from_generator(
        lambda: _scaled(config, scaler, index, which),
        output_signature=(
            tf.TensorSpec((None, width), tf.float32),
            tf.TensorSpec((None,), tf.int64),
        ),
    ).unbatch()
    if which == "train":
        data = data.shuffle(10_000, seed=config.seed)
    batches = -(-rows // config.batch_size)  # known from the survey: Keras sees epoch ends
    data = data.batch(config.batch_size)
    return data.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(tf.data.AUTOTUNE)


def train_streaming(config: TrainConfig) -> dict[str, Any]:
    """``--stream`` training of a dnn on a CSV kind; writes the same model directory."""
    import json
    from pathlib import Path

    import keras

    from training.evaluate import classification_metrics
    from training.fit import training_callbacks
    from training.train import Prepared, check_classes, classifier_thresholds, save

    if config.model != "dnn":
        raise ConfigError("train.model: --stream trains the dnn (tables of independent rows)")
    keras.utils.set_random_seed(config.seed)
    Path(config.out, "data").mkdir(parents=True, exist_ok=True)
    names, counts, sample_x, sample_y = survey(config)
    labels = _labels(counts)
    check_classes(labels, classifier=True)
    index = {label: i for i, label in enumerate(labels)}
    scaler = Scaler.fit(sample_x, kind=config.scaler)
    spec = ModelSpec("dnn", 1, len(names), len(labels), config.units, config.dropout)
    per_split = {s: {label: counts[(s, label)] for label in labels} for s in split.SPLITS}
    y_train_counts = np.repeat(np.arange(len(labels)), [per_split["train"][n] for n in labels])
    model = build(spec)
    model.compile(
        keras.optimizers.Adam(config.learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    history = model.fit(
        _dataset(config, scaler, index, "train", len(names), sum(per_split["train"].values())),
        validation_data=_dataset(
            config, scaler, index, "val", len(names), sum(per_split["val"].values())
        ),
        shuffle=False,  # tf.data shuffles the training stream itself
        epochs=config.epochs,
        class_weight=class_weights(y_train_counts, len(labels)),
        callbacks=training_callbacks(config, "val_loss"),
        verbose=0,
    )
    train_seconds = time.perf_counter() - started
    forest_x = scaler.transform(sample_x)
    forest_y = np.array([index[n] for n in sample_y.tolist()], np.int64)
    truth: list[npt.NDArray[np.int64]] = []
    predicted: list[npt.NDArray[np.int64]] = []
    forest_pred: list[npt.NDArray[np.int64]] = []
    kept_x: list[npt.NDArray[np.float32]] = []
    kept_y: list[npt.NDArray[np.int64]] = []
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        config.baseline_trees, random_state=config.seed, n_jobs=1, class_weight="balanced"
    )
    forest.fit(forest_x[:50_000], forest_y[:50_000])
    for x, y in _scaled(config, scaler, index, "test"):
        truth.append(y)
        predicted.append(model.predict(x, batch_size=1024, verbose=0).argmax(axis=1))
        forest_pred.append(forest.predict(x))
        if sum(k.shape[0] for k in kept_y) < TEST_KEEP:
            kept_x.append(x)
            kept_y.append(y)
    y_true = np.concatenate(truth)
    benign = 0 if labels[0].lower() in BENIGN_NAMES else None
    metrics = classification_metrics(
        y_true, np.concatenate(predicted).astype(np.int64), labels, benign
    )
    baseline = classification_metrics(
        y_true, np.concatenate(forest_pred).astype(np.int64), labels, benign
    )
    baseline.update(
        {
            "model": "RandomForest",
            "trees": config.baseline_trees,
            "train_rows": min(50_000, len(forest_x)),
        }
    )
    test_x = np.concatenate(kept_x)[:TEST_KEEP]
    test_y = np.concatenate(kept_y)[:TEST_KEEP]
    the_split = split.Split("hash-of-row (streamed)", removed={"cross_split": 0})
    dataset = Dataset(
        config.dataset, config.dataset, names, sample_x, sample_y, options=_options(config)
    )
    prepared = Prepared(dataset, spec, labels, benign, scaler, the_split)
    prepared.x = {"train": forest_x, "val": forest_x[:0], "test": test_x}
    prepared.y = {"train": forest_y, "val": forest_y[:0], "test": test_y}
    prepared.counts = per_split
    prepared.too_few = split.warn_small(per_split)
    thresholds, calibration = classifier_thresholds(prepared)
    curves = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    attack = (
        1.0 - model.predict(test_x, verbose=0)[:, 0]
        if benign is not None
        else np.zeros(len(test_y))
    )
    save(config, prepared, model, curves, thresholds, calibration, metrics, baseline, attack)
    summary = {
        "model": metrics,
        "baseline": {k: baseline[k] for k in ("accuracy", "macro_f1", "weighted_f1")},
        "history": curves,
        "train_seconds": round(train_seconds, 2),
        "parameters": int(model.count_params()),
        "windows": {s: sum(per_split[s].values()) for s in split.SPLITS},
        "scaler_fit_rows": len(sample_x),
    }
    Path(config.out, "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _options(config: TrainConfig) -> dict[str, Any]:
    """Loader options recorded for ``iotids evaluate``."""
    options = config.loader_options()
    options.pop("max_rows", None)
    return options

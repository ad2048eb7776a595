"""Training end to end: load, split, scale, fit, calibrate, evaluate, and write the model dir.

``iotids train ... --out DIR`` writes what the converters read:
``model.keras``, ``export.keras`` (recurrent models, batch 1, unrolled), ``preprocess.json``,
``metrics.json``, ``baseline.json``, ``report.md`` with plots, ``data/representative.npz`` and
``data/test.npz`` (scaled inputs in the model's input shape).

Training across TensorFlow workers (``--cluster-spec``) is ``training/multiworker.py``: Keras
3's ``fit`` cannot run under MultiWorkerMirroredStrategy, so it has its own loop.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training import evaluate, partial, shortfall, split
from training.config import ConfigError, TrainConfig
from training.datasets import Dataset, load
from training.datasets.base import check_label
from training.fit import MIN_CALIBRATION_NORMALS, fit_anomaly, fit_classifier, stop_monitor
from training.models import (
    RECURRENT,
    Knots,
    ModelSpec,
    build,
    encoding_knots,
    encoding_width,
    export_model,
    fit_encoding,
)
from training.preprocess import Scaler

logger = logging.getLogger(__name__)

# models that read the piecewise-linear input encoding (models.py); measured on the shared
# data (benchmarks/training_quality.py): dnn on CICIoT2023, gru on TON_IoT telemetry
ENCODE_MODELS = ("dnn", "gru")


@dataclass
class Prepared:
    """Model-ready inputs per split, and everything needed to explain how they were made."""

    dataset: Dataset
    spec: ModelSpec
    labels: list[str]  # the model's output classes
    benign: int | None
    scaler: Scaler
    split: split.Split
    x: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    y: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    block: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)  # window -> class run
    block_label: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)  # run -> class
    # window -> steps since its last step's class run began (-1: independent rows)
    position: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    too_few: list[str] = field(default_factory=list)
    knots: Knots = field(default_factory=list)  # input encoding, fit on training rows
    padding: str = "none"  # "zeros": each recording's first windows padded (stream start)
    partial: dict[str, Any] = field(default_factory=dict)  # padded copies added to training


def window_for(config: TrainConfig, dataset: Dataset) -> int:
    """The window length: 1 for dnn and for independent rows, else the configured T."""
    return 1 if config.model == "dnn" or not dataset.sequential else config.window


def make_split(config: TrainConfig, dataset: Dataset) -> split.Split:
    """Time blocks (or whole files) for time-ordered data, stratified rows otherwise."""
    assert dataset.groups is not None
    method = config.split
    window = window_for(config, dataset)
    if method == "auto" and dataset.sequential:
        # per-class-run cuts need runs several windows long; short bursts go by blocks
        long_runs = split.median_run(dataset.groups, dataset.label_names) >= 5 * window
        method = "time-block" if long_runs else "blocks"
    elif method == "auto":
        method = "stratified"
    if method == "stratified" and dataset.sequential:
        raise ConfigError(
            "train.split: time-ordered data must not be split by shuffled rows "
            "(windows overlap and scores inflate); use time-block or by-file"
        )
    if method == "by-file":
        ids = {name: g for g, name in enumerate(dataset.group_names)}
        missing = set(config.test_files + config.val_files) - set(ids)
        if missing:
            raise ConfigError(f"train.test_files: {sorted(missing)} not in {sorted(ids)}")
        return split.file_split(
            dataset.groups,
            [ids[n] for n in config.test_files],
            [ids[n] for n in config.val_files],
        )
    if method == "time-block":
        return split.time_block_split(dataset.groups, dataset.label_names)
    if method == "blocks":
        return split.block_split(dataset.groups, config.blocks, seed=config.seed)
    return split.stratified_split(dataset.x, dataset.label_names, seed=config.seed)


def to_model_input(spec: ModelSpec, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(N, T, F) windows reshaped to the model's input: add a channel or take the one step."""
    if spec.model_type == "cnn":
        return windows[..., None]
    if spec.model_type == "dnn":
        return windows[:, -1, :]
    return windows


def _encode(dataset: Dataset, labels: list[str], anomaly: bool) -> npt.NDArray[np.int64]:
    """Class indexes of every row (anomaly models: 0 benign, 1 attack)."""
    if anomaly:
        flags: npt.NDArray[np.int64] = (dataset.label_names != labels[0]).astype(np.int64)
        return flags
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[name] for name in dataset.label_names.tolist()], np.int64)


def check_classes(labels: list[str], classifier: bool) -> None:
    """Each class name one a report, the bundle and the gateway's events can hold, and a
    classifier two classes at least (the agent refuses a bundle of one): ConfigError."""
    try:
        for label in labels:
            check_label(label)
    except ValueError as exc:
        raise ConfigError(f"train.path: {exc}") from None
    if classifier and len(labels) < 2:
        raise ConfigError(
            f"train.path: one class only ({labels[0]!r}): a classifier needs two or more"
        )


def model_labels(dataset: Dataset, model_type: str) -> list[str]:
    """Output classes: the dataset's, or benign / attack for the anomaly model."""
    if not len(dataset.label_names):
        dropped = ", ".join(f"{n} {reason}" for reason, n in dataset.dropped.items())
        raise ConfigError(f"train.path: no rows to train on (dropped: {dropped or 'none'})")
    classifier = model_type not in ("gru-anomaly", "gru-forecast")
    check_classes(dataset.labels, classifier)
    if classifier:
        return dataset.labels
    if dataset.benign is None:
        raise ConfigError(f"train.model: {model_type} needs a benign/normal class to learn")
    return [dataset.benign, "attack"]


def windows_of(
    prepared: Prepared,
    x_scaled: npt.NDArray[np.float32],
    y_all: npt.NDArray[np.int64],
    ranges: list[tuple[int, int]],
    rows: npt.NDArray[np.int64],
    name: str,
) -> None:
    """Fill one split's model inputs, labels and per-window block ids."""
    spec, ds = prepared.spec, prepared.dataset
    if ds.sequential:
        assert ds.groups is not None
        padded = split.stream_starts(ds.groups) if prepared.padding == "zeros" else frozenset()
        fill = prepared.scaler.transform(np.zeros((1, x_scaled.shape[1]), np.float32))[0]
        w, y, last = split.windows(x_scaled, y_all, ranges, spec.window, padded, fill)
        run, starts = split.run_of_rows(last, ds.groups, ds.label_names)
        prepared.block[name], prepared.block_label[name] = run, y_all[starts]
        prepared.position[name] = last - starts[run] if len(last) else last
    else:
        w, y = x_scaled[rows][:, None, :], y_all[rows]
        prepared.block[name] = np.zeros(len(rows), np.int64)
        prepared.block_label[name] = np.zeros(0, np.int64)
        prepared.position[name] = np.full(len(rows), -1, np.int64)
    prepared.x[name] = to_model_input(spec, w)
    prepared.y[name] = y


def _sensors(config: TrainConfig, dataset: Dataset) -> tuple[int, ...]:
    """gru-forecast's cross-sensor heads: each column's sensor value column (else none)."""
    if config.model != "gru-forecast":
        return ()
    from training.forecast import value_columns

    return value_columns(dataset.columns)


def prepare(
    config: TrainConfig, dataset: Dataset, the_split: split.Split | None = None
) -> Prepared:
    """Split (``the_split`` when given: a cross-validation fold), fit the scaler on the training
    rows only, build the windows of every split."""
    labels = model_labels(dataset, config.model)
    the_split = the_split or make_split(config, dataset)
    scaler = Scaler.fit(dataset.x[the_split.rows["train"]], kind=config.scaler)
    x_scaled = scaler.transform(dataset.x)
    encode = config.model in ENCODE_MODELS
    knots = encoding_knots(x_scaled[the_split.rows["train"]]) if encode else []
    spec = ModelSpec(
        config.model,
        window_for(config, dataset),
        len(dataset.columns),
        len(labels),
        config.units,
        config.dropout,
        encoding_width(knots),
        config.members if config.model == "dnn" else 1,
        sensors=_sensors(config, dataset),
    )
    benign = 0 if labels[0] == dataset.benign else None
    padding = config.padding if dataset.sequential else "none"
    prepared = Prepared(
        dataset, spec, labels, benign, scaler, the_split, knots=knots, padding=padding
    )
    y_all = _encode(dataset, labels, spec.task == "anomaly")
    for name in split.SPLITS:
        ranges = the_split.ranges.get(name, [])
        windows_of(prepared, x_scaled, y_all, ranges, the_split.rows[name], name)
    prepared.counts = {n: split.per_class_counts(prepared.y[n], labels) for n in split.SPLITS}
    prepared.too_few = split.warn_small(prepared.counts)
    extra = config.partial_windows > 0 or config.transition_windows > 0
    if extra and dataset.sequential:  # after the counts: real windows only
        prepared.partial = partial.apply(
            prepared, config.partial_windows, config.seed, config.transition_windows
        ).to_dict()
    _log_split(prepared)
    return prepared


def _log_split(prepared: Prepared) -> None:
    """Say what was split how, and how many samples each class has in each split."""
    logger.info(
        "%s split of %s: removed %s; %s windows of %d step(s)",
        prepared.split.method,
        prepared.dataset.kind,
        prepared.split.removed,
        {n: len(prepared.y[n]) for n in split.SPLITS},
        prepared.spec.window,
    )
    for label in prepared.labels:
        logger.info(
            "  %-14s train %7d  val %6d  test %6d",
            label,
            *(prepared.counts[n][label] for n in split.SPLITS),
        )


def score(
    prepared: Prepared, model: Any, x: npt.NDArray[np.float32], thresholds: dict[str, float]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Predicted classes and an attack score per sample (1 - p(benign) for classifiers)."""
    if len(x) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    out = np.asarray(model.predict(x, batch_size=256, verbose=0), np.float64)
    if prepared.spec.task == "anomaly":
        attack_score = out.reshape(-1)
        return (attack_score > thresholds["anomaly"]).astype(np.int64), attack_score
    predicted = out.argmax(axis=1).astype(np.int64)
    attack_score = 1.0 - out[:, prepared.benign] if prepared.benign is not None else out.max(axis=1)
    return predicted, attack_score


def split_metrics(
    prepared: Prepared, predicted: npt.NDArray[np.int64], name: str = "test"
) -> dict[str, Any]:
    """The figures of one split, with detection delay for time-ordered data."""
    result = evaluate.classification_metrics(
        prepared.y[name], predicted, prepared.labels, prepared.benign
    )
    if prepared.dataset.sequential and prepared.benign is not None and len(predicted):
        result["detection_delay"] = evaluate.detection_delay(
            predicted != prepared.benign,
            prepared.block[name],
            prepared.block_label[name] != prepared.benign,
        )
    return result


def representative(
    prepared: Prepared, count: int, seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Up to ``count`` training inputs stratified by class, for int8 calibration."""
    rng = np.random.default_rng(seed)
    y = prepared.y["train"]
    classes = np.unique(y)
    per_class = max(1, count // max(1, len(classes)))
    picks = [rng.permutation(np.nonzero(y == c)[0])[:per_class] for c in classes]
    chosen = np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
    return prepared.x["train"][chosen].astype(np.float32), y[chosen]


def categories(labels: list[str], benign: int | None, mapping: str | None = None) -> dict[str, str]:
    """Each label's attack family (benign for the benign class): mapping file, then rules."""
    from training.label_families import label_families

    return label_families(labels, benign, mapping)


def preprocess_state(
    config: TrainConfig,
    prepared: Prepared,
    thresholds: dict[str, float],
    calibration: dict[str, Any],
) -> dict[str, Any]:
    """The preprocess.json document (the converters' and the agent's contract)."""
    ds = prepared.dataset
    fs = ds.feature_set
    return {
        "feature_set": fs.id,
        "schema_id": fs.schema_id,
        "columns": list(fs.columns),
        "step": ds.step,
        "window": prepared.spec.window,
        "padding": prepared.padding,
        "partial_windows": prepared.partial or {"share": 0.0, "copies": 0},
        "input_shape": list(prepared.spec.input_shape),
        "model_type": prepared.spec.model_type,
        "task": prepared.spec.task,
        "scaler": prepared.scaler.to_dict(),
        "labels": prepared.labels,
        "categories": categories(prepared.labels, prepared.benign, config.mapping),
        "thresholds": thresholds,
        # the agent's accumulator is fitted with the threshold (gru-forecast) but signed once,
        # in the manifest's extra: its cross-check weights would otherwise be carried twice
        "threshold_calibration": {k: v for k, v in calibration.items() if k != "accumulator"},
        **({"accumulator": calibration["accumulator"]} if "accumulator" in calibration else {}),
        "encoders": ds.encoders,
        "split": {
            **prepared.split.summary(),
            "counts": prepared.counts,
            "too_few": prepared.too_few,
        },
        "dataset": {
            "kind": ds.kind,
            "path": config.path,
            "options": ds.options,
            "dropped": ds.dropped,
        },
    }


def classifier_thresholds(
    prepared: Prepared, config: TrainConfig | None = None, model: Any = None
) -> tuple[dict[str, float], dict[str, Any]]:
    """0.5 per attack label, or per-label quantiles of benign validation windows' scores.

    Calibrated: a label's threshold is the ``1 - target_fpr`` quantile of its softmax score on
    held-out benign windows, never below ``threshold_floor`` — a label benign traffic resembles
    gets a stricter threshold (fewer false alarms), a distinct one a looser one (earlier calls).
    Without ``config`` and ``model`` (the streamed trainer) the thresholds are the fixed 0.5.
    """
    attacks = [i for i in range(len(prepared.labels)) if i != prepared.benign]
    fixed = (
        {prepared.labels[i]: 0.5 for i in attacks},
        {
            "method": "argmax of the softmax (fixed 0.5 per attack label)",
            "target_fpr": None,
            "n_normal": int(prepared.counts["val"][prepared.labels[prepared.benign]])
            if prepared.benign is not None
            else 0,
        },
    )
    if config is None or not config.calibrate_thresholds or model is None:
        return fixed
    normal = prepared.x["val"][prepared.y["val"] == prepared.benign]
    if prepared.benign is None or len(normal) < MIN_CALIBRATION_NORMALS:
        logger.warning("only %d benign validation windows: fixed 0.5 thresholds", len(normal))
        return fixed
    scores = np.asarray(model.predict(normal, batch_size=256, verbose=0), np.float64)
    thresholds = {
        prepared.labels[i]: round(
            max(config.threshold_floor, float(np.quantile(scores[:, i], 1.0 - config.target_fpr))),
            4,
        )
        for i in attacks
    }
    logger.info("calibrated thresholds: %s", thresholds)
    return thresholds, {
        "method": "per-label quantile of benign validation scores, floored",
        "target_fpr": config.target_fpr,
        "floor": config.threshold_floor,
        "n_normal": len(normal),
        "split": "val",
    }


def train(config: TrainConfig) -> dict[str, Any]:
    """Run the whole training and write the model directory; returns metrics.json's content."""
    import keras

    keras.utils.set_random_seed(config.seed)
    out = Path(config.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    dataset = load(config.dataset, config.path, **config.loader_options())
    logger.info(
        "loaded %s: %d rows, %d features, classes %s",
        dataset.kind,
        len(dataset.x),
        len(dataset.columns),
        dataset.class_counts(),
    )
    prepared = prepare(config, dataset)
    warnings = shortfall.shortfalls(
        dataset, prepared.counts, prepared.spec.window, prepared.padding
    )
    for message in warnings:
        logger.warning("%s", message)
    if warnings and config.strict:
        raise ConfigError("train --strict: " + "; ".join(warnings))
    if len(prepared.y["train"]) == 0 or len(prepared.y["test"]) == 0:
        raise ConfigError("train: the split left no training or no test windows (window too long?)")
    model = build(prepared.spec)
    if prepared.spec.encoding:
        fit_encoding(model, prepared.knots)
        logger.info(
            "input encoding: %d piecewise-linear bins over %d features",
            prepared.spec.encoding,
            prepared.spec.features,
        )
    started = time.perf_counter()
    stopped_on = "val_loss" if prepared.spec.task == "anomaly" else stop_monitor(prepared)
    if prepared.spec.model_type == "gru-forecast":
        from training.forecast import fit_forecast

        history, thresholds, calibration = fit_forecast(config, prepared, model)
    elif prepared.spec.task == "anomaly":
        history, thresholds, calibration = fit_anomaly(config, prepared, model)
    else:
        history = fit_classifier(config, prepared, model)
        thresholds, calibration = classifier_thresholds(prepared, config, model)
    train_seconds = time.perf_counter() - started
    predicted, attack_score = score(prepared, model, prepared.x["test"], thresholds)
    metrics = split_metrics(prepared, predicted)
    absent = shortfall.absent_from_test(metrics, prepared.counts)
    for message in absent:
        logger.warning("%s", message)
    warnings += absent
    baseline = _baseline(config, prepared)
    save(config, prepared, model, history, thresholds, calibration, metrics, baseline, attack_score)
    summary = {
        "model": metrics,
        "baseline": {k: baseline[k] for k in ("accuracy", "macro_f1", "weighted_f1")},
        "history": history,
        "early_stopping": stopped_on,
        "train_seconds": round(train_seconds, 2),
        "parameters": int(model.count_params()),
        "windows": {n: len(prepared.y[n]) for n in split.SPLITS},
        "thresholds": thresholds,
        "warnings": warnings,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary


def _baseline(config: TrainConfig, prepared: Prepared) -> dict[str, Any]:
    """The RandomForest on the same training windows and test windows."""
    from training.baseline import random_forest

    return random_forest(
        prepared.x["train"],
        prepared.y["train"],
        prepared.x["test"],
        prepared.y["test"],
        prepared.labels,
        prepared.benign,
        trees=config.baseline_trees,
        seed=config.seed,
    )


def save(
    config: TrainConfig,
    prepared: Prepared,
    model: Any,
    history: dict[str, list[float]],
    thresholds: dict[str, float],
    calibration: dict[str, Any],
    metrics: dict[str, Any],
    baseline: dict[str, Any],
    attack_score: npt.NDArray[np.float64],
) -> None:
    """Write the model directory (every file of the converters' contract)."""
    from training import report

    out = Path(config.out)
    model.save(out / "model.keras")
    if prepared.spec.model_type in RECURRENT:
        export_model(prepared.spec, model).save(out / "export.keras")
    state = preprocess_state(config, prepared, thresholds, calibration)
    (out / "preprocess.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    (out / "baseline.json").write_text(json.dumps(baseline, indent=2), encoding="utf-8")
    rep_x, rep_y = representative(prepared, config.representative, config.seed)
    np.savez_compressed(out / "data" / "representative.npz", x=rep_x, y=rep_y)
    np.savez_compressed(
        out / "data" / "test.npz", x=prepared.x["test"].astype(np.float32), y=prepared.y["test"]
    )
    if prepared.spec.task == "classify" and len(prepared.y["test"]):
        from training.report_compare import write_calibration

        probabilities = np.asarray(
            model.predict(prepared.x["test"], batch_size=256, verbose=0), np.float64
        )
        metrics["calibration"] = write_calibration(
            probabilities, prepared.y["test"], prepared.benign, out
        )
    report.plot_history(history, out / "training_curves.png")
    report.plot_confusion(
        metrics["confusion_matrix"], prepared.labels, out / "confusion_matrix.png"
    )
    if prepared.benign is not None and (
        len(prepared.labels) == 2 or prepared.spec.task == "anomaly"
    ):
        metrics["curves"] = report.plot_roc_pr(
            prepared.y["test"] != prepared.benign, attack_score, out
        )
    elif prepared.spec.task != "anomaly" and len(prepared.y["test"]):
        probs = np.asarray(model.predict(prepared.x["test"], batch_size=1024, verbose=0))
        metrics["curves"] = report.plot_roc_pr_ovr(prepared.y["test"], probs, prepared.labels, out)
    summary = {
        "model_type": prepared.spec.model_type,
        "dataset": prepared.dataset.kind,
        "path": config.path,
        "dropped": prepared.dataset.dropped,
        **{k: state[k] for k in ("feature_set", "schema_id", "columns", "window", "split")},
        "counts": prepared.counts,
        "too_few": prepared.too_few,
        "thresholds": thresholds,
        "threshold_calibration": calibration,
        "hyperparameters": report.hyperparameters(config),
    }
    report.write_report(out, summary, metrics, baseline)

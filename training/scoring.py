"""Score a trained model directory on other data of the same kind, with its saved preprocessing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training import evaluate, split
from training.datasets import Dataset, load
from training.models import ModelSpec
from training.preprocess import Scaler
from training.train import to_model_input

logger = logging.getLogger(__name__)

ENCODED_KINDS = ("nsl-kdd", "csv", "ton-iot")


class SchemaMismatch(ValueError):
    """The data's feature columns are not the ones the model was trained on."""


def read_state(model_dir: Path) -> dict[str, Any]:
    """preprocess.json of a model directory; FileNotFoundError naming the fix without one."""
    path = model_dir / "preprocess.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"--model {model_dir}: no preprocess.json in it; give the folder iotids train -o wrote"
        )
    state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return state


def load_like(state: dict[str, Any], kind: str | None, path: str) -> Dataset:
    """Load ``path`` the way the model's training data was loaded (same options, encoders)."""
    trained_on = state["dataset"]["kind"]
    kind = kind or trained_on
    options = dict(state["dataset"]["options"])
    if kind != trained_on:  # another loader: only the options it shares (a capture's step)
        options = {k: v for k, v in options.items() if k in _loader_options(kind)}
    if kind in ENCODED_KINDS:
        options["encoders"] = state["encoders"]
    dataset = load(kind, path, **options)
    if dataset.columns != state["columns"] or dataset.feature_set.schema_id != state["schema_id"]:
        raise SchemaMismatch(
            f"{path}: feature set {dataset.feature_set.id} schema {dataset.feature_set.schema_id} "
            f"does not match the model's {state['feature_set']} schema {state['schema_id']}"
        )
    return dataset


def _loader_options(kind: str) -> set[str]:
    """The keyword options the loader of ``kind`` takes (none for an unknown kind)."""
    import importlib
    import inspect

    from training.datasets import LOADERS

    if kind not in LOADERS:
        return set()
    module, _, name = LOADERS[kind].partition(":")
    return set(inspect.signature(getattr(importlib.import_module(module), name)).parameters)


def targets(dataset: Dataset, state: dict[str, Any]) -> tuple[npt.NDArray[np.int64], int]:
    """Each row's class index in the model's labels (-1 unknown) and how many are unknown."""
    labels: list[str] = state["labels"]
    if state["task"] == "anomaly":
        return (dataset.label_names != labels[0]).astype(np.int64), 0
    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index.get(n, -1) for n in dataset.label_names.tolist()], np.int64)
    return y, int((y < 0).sum())


def evaluate_model(model_dir: str | Path, kind: str | None, path: str) -> dict[str, Any]:
    """Metrics of the model in ``model_dir`` on the whole of ``path``."""
    import keras

    model_dir = Path(model_dir)
    state = read_state(model_dir)
    dataset = load_like(state, kind, path)
    assert dataset.groups is not None
    y_all, unknown = targets(dataset, state)
    if unknown:
        logger.warning("%d rows have classes the model does not know; not scored", unknown)
    x_scaled = Scaler.from_dict(state["scaler"]).transform(dataset.x)
    labels: list[str] = state["labels"]
    spec = ModelSpec(state["model_type"], state["window"], len(state["columns"]), len(labels))
    if dataset.sequential:
        groups = split.runs(dataset.groups, np.zeros(len(y_all), np.str_))
        padded = split.stream_starts(dataset.groups) if state.get("padding") == "zeros" else None
        fill = Scaler.from_dict(state["scaler"]).transform(
            np.zeros((1, len(state["columns"])), np.float32)
        )
        w, y, last = split.windows(
            x_scaled, y_all, groups, spec.window, padded or frozenset(), fill[0]
        )
        block, starts = split.run_of_rows(last, dataset.groups, dataset.label_names)
        block_label = y_all[starts]
    else:
        w, y = x_scaled[:, None, :], y_all
        block, block_label = np.zeros(len(y), np.int64), np.zeros(0, np.int64)
    known = y >= 0
    if not known.any():
        found = sorted(set(dataset.label_names.tolist()))[:5]
        raise ValueError(
            f"--path {path}: no window has a class the model knows (found {', '.join(found)}; "
            f"the model's: {', '.join(labels)}); name captures by class (benign-a.pcap) or "
            "label them with --mapping when training"
        )
    x_in = to_model_input(spec, w[known])
    model = keras.saving.load_model(model_dir / "model.keras")
    out = np.asarray(model.predict(x_in, batch_size=256, verbose=0), np.float64)
    if state["task"] == "anomaly":
        predicted = (out.reshape(-1) > state["thresholds"]["anomaly"]).astype(np.int64)
    else:
        predicted = out.argmax(axis=1).astype(np.int64)
    benign = 0 if state["categories"].get(labels[0]) == "benign" else None
    result = evaluate.classification_metrics(y[known], predicted, labels, benign)
    if dataset.sequential and benign is not None:
        result["detection_delay"] = evaluate.detection_delay(
            predicted != benign, block[known], block_label != benign
        )
    result.update({"model_dir": str(model_dir), "path": path, "unknown_class_rows": unknown})
    result["dropped_at_load"] = dataset.dropped
    return result

"""Classification figures of a bundle's outputs, in numpy only.

``iotids verify`` runs on a gateway install, which has no scikit-learn; the converter (which
records the quantized figures in the manifest) and training's ``evaluate --bundle`` use the same
functions so every figure of a bundle is computed one way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.bundle import Manifest
from agent.runtime import Model

Array = npt.NDArray[Any]
# Scaled inputs (N, ...) -> model outputs (N, ...): a model run over a set of rows.
Predict = Callable[[Array], Array]
NO_FLOAT_ON_DATA = (
    "not run on --data: give --float-model MODEL.tflite, MODEL.keras or the training folder"
)


def classification_metrics(y_true: Array, y_pred: Array, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 over the classes present, and per-class precision / recall / F1."""
    per_class: dict[str, dict[str, float]] = {}
    f1s: list[float] = []
    for index in sorted(set(np.unique(y_true)) | set(np.unique(y_pred))):
        tp = int(np.sum((y_true == index) & (y_pred == index)))
        fp = int(np.sum((y_true != index) & (y_pred == index)))
        fn = int(np.sum((y_true == index) & (y_pred != index)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        name = labels[int(index)] if 0 <= int(index) < len(labels) else str(int(index))
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(np.sum(y_true == index)),
        }
        f1s.append(f1)
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "n": len(y_true),
    }


def score(
    task: str,
    labels: Sequence[str],
    thresholds: Mapping[str, float],
    outputs: Array,
    y: Array,
) -> dict[str, Any]:
    """Metrics of model outputs: argmax for classifiers, score > threshold for anomaly models."""
    if task == "anomaly":
        flagged = (outputs.reshape(len(outputs)) > thresholds["anomaly"]).astype(np.int64)
        result = classification_metrics((y != 0).astype(np.int64), flagged, ["normal", "anomaly"])
        anomaly = result["per_class"].get("anomaly", {"precision": 0.0, "recall": 0.0})
        result["precision"] = anomaly["precision"]
        result["recall"] = anomaly["recall"]
        result["threshold"] = thresholds["anomaly"]
        return result
    predicted = np.argmax(outputs.reshape(len(outputs), -1), axis=1)
    return classification_metrics(y, predicted, labels)


def metrics_section(
    manifest: Manifest,
    model: Model,
    data: tuple[Array, Array] | None,
    float_model: Predict | None,
    where: str = "--data",
) -> dict[str, Any]:
    """Float vs quantized metrics on one set of rows, and the per-class recall change.

    With data and no float model, only the quantized side is measured: the manifest's float
    figures come from the converter's test set, and comparing them with new data would charge
    the quantizer for a change of data.
    """
    metrics = dict(manifest.metrics)
    quantized: Any
    if data is not None:
        x, y = data

        def run(predict: Predict) -> dict[str, Any]:
            return score(manifest.task, manifest.labels, manifest.thresholds, predict(x), y)

        quantized, quant_source = run(bundle_predict(model)), f"measured on {where}"
        if float_model is not None:
            floated, float_source = run(float_model), f"float model measured on {where}"
        else:
            floated, float_source = None, NO_FLOAT_ON_DATA.replace("--data", where)
    else:
        quantized, quant_source = metrics.get("quantized"), "manifest (converter's test set)"
        floated, float_source = manifest_float(metrics)
    section: dict[str, Any] = {
        "float": floated,
        "float_source": float_source,
        "quantized": quantized,
        "quantized_source": quant_source,
    }
    if isinstance(floated, dict) and isinstance(quantized, dict) and "macro_f1" in floated:
        section["macro_f1_drop"] = float(floated["macro_f1"]) - float(quantized["macro_f1"])
        section["recall_change"] = {
            name: values["recall"] - floated["per_class"][name]["recall"]
            for name, values in quantized.get("per_class", {}).items()
            if name in floated.get("per_class", {}) and "recall" in floated["per_class"][name]
        }
    return section


def bundle_predict(model: Model) -> Predict:
    """The bundle's model over a batch of scaled inputs in any compatible shape."""
    return lambda x: model.predict(x.reshape((len(x), *model.input_shape)))


def manifest_float(metrics: Mapping[str, Any]) -> tuple[Any, str]:
    """The float reference the converter recorded, else training's own metrics."""
    if isinstance(metrics.get("float"), dict):
        return metrics["float"], "manifest (float TFLite on the converter's test set)"
    if isinstance(metrics.get("training"), dict) and "macro_f1" in metrics["training"]:
        return metrics["training"], "manifest (training metrics)"
    return None, "none"

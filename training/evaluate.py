"""Metrics in numpy: what every model and the RandomForest reference report.

Accuracy, macro- and weighted-F1, per-class precision / recall / F1, one-vs-rest false-positive
and false-negative rates, benign-vs-attack rates, the confusion matrix, and for time-ordered
data the detection delay in steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def _ratio(num: float, den: float) -> float:
    """``num / den``, 0 when the denominator is 0."""
    return float(num / den) if den else 0.0


def confusion(
    y_true: npt.NDArray[np.int64], y_pred: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.int64]:
    """Rows are true classes, columns predicted ones."""
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_metrics(
    y_true: npt.NDArray[np.int64],
    y_pred: npt.NDArray[np.int64],
    labels: list[str],
    benign: int | None = 0,
) -> dict[str, Any]:
    """Every figure of the report for one set of predictions (``benign``: index or None)."""
    n = len(labels)
    matrix = confusion(y_true, y_pred, n)
    total = int(matrix.sum())
    per_class: dict[str, dict[str, Any]] = {}
    f1s, supports = [], []
    for c, label in enumerate(labels):
        tp = matrix[c, c]
        fp = matrix[:, c].sum() - tp
        fn = matrix[c, :].sum() - tp
        tn = total - tp - fp - fn
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_class[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "fpr": _ratio(fp, fp + tn),
            "fnr": _ratio(fn, fn + tp),
            "support": int(tp + fn),
            "predicted": int(tp + fp),
        }
        f1s.append(f1)
        supports.append(int(tp + fn))
    # A class in the truth or in the predictions counts in macro-F1 (a class only predicted
    # is all false alarms: F1 0). One in neither cannot be scored: it is named in ``absent``
    # and flagged per class, so no report shows its zeros as if they were measured.
    predicted = matrix.sum(axis=0)
    present = (np.array(supports) > 0) | (predicted > 0)
    absent = [label for label, p in zip(labels, present.tolist(), strict=True) if not p]
    for label in absent:
        per_class[label]["absent"] = True
    result: dict[str, Any] = {
        "n": total,
        "accuracy": _ratio(np.trace(matrix), total),
        "macro_f1": float(np.mean(np.array(f1s)[present])) if present.any() else 0.0,
        "macro_f1_classes": int(present.sum()),
        "absent": absent,
        "weighted_f1": _ratio(float(np.dot(f1s, supports)), float(sum(supports))),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "labels": list(labels),
    }
    if benign is not None:
        result["benign_vs_attack"] = binary_rates(y_true != benign, y_pred != benign)
    return result


def binary_rates(truth: npt.NDArray[np.bool_], flagged: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Attack-vs-benign false-positive and false-negative rates, precision and recall."""
    tp = int((truth & flagged).sum())
    fp = int((~truth & flagged).sum())
    fn = int((truth & ~flagged).sum())
    tn = int((~truth & ~flagged).sum())
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "fpr": _ratio(fp, fp + tn),
        "fnr": _ratio(fn, fn + tp),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "attacks": tp + fn,
        "benign": fp + tn,
    }


def detection_delay(
    flagged: npt.NDArray[np.bool_],
    block: npt.NDArray[np.int64],
    block_is_attack: npt.NDArray[np.bool_],
) -> dict[str, Any]:
    """Steps from the start of each attack block to its first flagged window.

    ``flagged`` and ``block`` are per window, in time order within a block; a block is a
    contiguous run of one class (its windows sliding by one step). Missed blocks count apart.
    """
    delays, missed = [], 0
    for b in np.nonzero(block_is_attack)[0]:
        hits = np.nonzero(flagged[block == b])[0]
        if not np.any(block == b):
            continue
        if len(hits):
            delays.append(int(hits[0]))
        else:
            missed += 1
    return {
        "blocks": len(delays) + missed,
        "missed": missed,
        "mean_steps": float(np.mean(delays)) if delays else None,
        "median_steps": float(np.median(delays)) if delays else None,
        "max_steps": int(max(delays)) if delays else None,
    }

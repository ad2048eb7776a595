"""Metrics against hand-counted examples."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import classification_metrics, detection_delay


def test_per_class_rates_and_benign_vs_attack() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2], np.int64)
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2], np.int64)
    m = classification_metrics(y_true, y_pred, ["benign", "scan", "flood"], benign=0)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 1, 1], [0, 0, 2]]
    assert m["per_class"]["scan"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["benign"]["fnr"] == pytest.approx(0.25)
    assert m["per_class"]["flood"]["fpr"] == pytest.approx(1 / 6)
    assert m["benign_vs_attack"]["fpr"] == pytest.approx(0.25)
    assert m["benign_vs_attack"]["fnr"] == 0.0
    f1 = [m["per_class"][c]["f1"] for c in ("benign", "scan", "flood")]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))


def test_detection_delay_counts_steps_to_first_alarm() -> None:
    flagged = np.array([False, False, True, False, False, False, True], bool)
    block = np.array([0, 0, 0, 1, 1, 2, 2], np.int64)
    d = detection_delay(flagged, block, np.array([True, True, False]))
    assert d == {"blocks": 2, "missed": 1, "mean_steps": 2.0, "median_steps": 2.0, "max_steps": 2}

"""Report plots and report.md: one-vs-rest curves, a normalised confusion matrix, whole epochs,
and settings written as tables (never a Python dict repr)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from training import report


def _three_classes() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 60)
    logits = rng.normal(0, 1, (180, 3))
    logits[np.arange(180), truth] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, probs


def test_one_vs_rest_curves_for_every_class(tmp_path: Path) -> None:
    truth, probs = _three_classes()
    areas = report.plot_roc_pr_ovr(truth, probs, ["benign", "flood", "scan"], tmp_path)
    assert set(areas) == {"benign", "flood", "scan"}
    for area in areas.values():
        assert 0.8 < area["roc_auc"] <= 1.0  # separable by construction, not by chance
        assert 0.5 < area["pr_auc"] <= 1.0
    assert (tmp_path / "roc.png").stat().st_size > 5000
    assert (tmp_path / "pr.png").stat().st_size > 5000


def test_a_class_absent_from_the_test_split_gets_no_curve(tmp_path: Path) -> None:
    truth, probs = _three_classes()
    keep = truth != 2
    areas = report.plot_roc_pr_ovr(truth[keep], probs[keep], ["benign", "flood", "scan"], tmp_path)
    assert set(areas) == {"benign", "flood"}


def test_confusion_and_history_plots(tmp_path: Path) -> None:
    report.plot_confusion([[50, 2, 0], [5, 40, 1], [0, 0, 3]], ["a", "b", "c"], tmp_path / "c.png")
    history = {
        "loss": [0.9, 0.5, 0.4],
        "val_loss": [1.0, 0.6, 0.5],
        "val_macro_f1": [0.3, 0.6, 0.7],
    }
    report.plot_history(history, tmp_path / "h.png")
    assert (tmp_path / "c.png").stat().st_size > 3000
    assert (tmp_path / "h.png").stat().st_size > 3000


def test_report_md_has_settings_tables_not_reprs(tmp_path: Path) -> None:
    config = SimpleNamespace(model="cnn", window=8, step="20p/1s", epochs=30, learning_rate=1e-3)
    per_class = {
        "benign": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "fpr": 0, "fnr": 0, "support": 5},
    }
    metrics = {"accuracy": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0, "per_class": per_class}
    metrics["detection_delay"] = {"syn_flood": 1.5}
    metrics["curves"] = {"benign": {"roc_auc": 0.99, "pr_auc": 0.98}}
    summary = {
        "model_type": "cnn",
        "dataset": "captures",
        "path": "captures/",
        "feature_set": "traffic-v1",
        "schema_id": "abc",
        "columns": ["a", "b"],
        "window": 8,
        "split": {"method": "files", "removed": {"overlap": 3}},
        "dropped": {},
        "counts": {"train": {"benign": 5}, "val": {"benign": 1}, "test": {"benign": 5}},
        "thresholds": {"syn_flood": 0.5},
        "threshold_calibration": {"method": "fixed"},
        "hyperparameters": report.hyperparameters(config),
    }
    text = report.write_report(tmp_path, summary, metrics, metrics).read_text()
    assert "## Hyper-parameters" in text
    assert "| learning rate | 0.001 |" in text
    assert "| step | 20p/1s |" in text
    assert "| removed by the split | overlap 3 |" in text
    assert "| dropped at load | none |" in text
    assert "Thresholds: syn_flood 0.5 (calibration: method fixed)" in text
    assert "| benign | 0.990 | 0.980 |" in text
    assert "{" not in text
    assert "}" not in text

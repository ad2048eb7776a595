"""Calibration figures and the model-beside-forest table of report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.report_compare import calibration, reliability, side_by_side, write_calibration


def test_a_calibrated_score_has_an_ece_near_zero_and_an_overconfident_one_does_not() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.random(20_000)
    correct = rng.random(20_000) < confidence  # right exactly as often as it claims
    assert reliability(confidence, correct)["ece"] < 0.02
    overconfident = reliability(np.full(1000, 0.95), np.arange(1000) < 600)
    assert abs(overconfident["ece"] - 0.35) < 1e-9
    (only,) = overconfident["bins"]
    assert only["n"] == 1000
    assert abs(only["low"] - 0.9) < 1e-9
    assert only["accuracy"] == 0.6


def test_calibration_covers_the_top_label_and_the_attack_score(tmp_path: Path) -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    truth = np.array([0, 1, 1, 1])
    figures = calibration(probabilities, truth, benign=0)
    assert set(figures) == {"top_label", "attack_score"}
    assert figures["top_label"]["n"] == 4
    assert "attack_score" not in calibration(probabilities, truth, benign=None)
    assert calibration(np.zeros((0, 2)), np.zeros(0, np.int64), 0) == {}
    write_calibration(probabilities, truth, 0, tmp_path)
    assert (tmp_path / "reliability.png").stat().st_size > 0


def test_per_class_table_puts_the_forest_beside_the_model() -> None:
    model = {
        "per_class": {
            "normal": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 10},
            "dos": {"absent": True, "support": 0},
        }
    }
    forest = {"per_class": {"normal": {"precision": 0.8, "recall": 0.8, "f1": 0.8}}}
    lines = side_by_side("dnn", model, forest)
    assert "| normal | 10 | 0.900 | 0.800 | 0.850 | 0.800 | 0.800 | 0.800 | +0.050 |" in lines
    assert any(line.startswith("| dos | 0 | absent") for line in lines)

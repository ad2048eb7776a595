"""The report's model-beside-forest table and the calibration of the predicted scores.

Thresholds, the open-set gate and the agent's alarms read the softmax (or the anomaly score) as
a probability; a reliability diagram and the expected calibration error (ECE) show how far that
holds on the test split: per bin of predicted confidence, the fraction that was right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.markdown import cell

BINS = 10


def reliability(
    confidence: npt.NDArray[np.float64], correct: npt.NDArray[np.bool_], bins: int = BINS
) -> dict[str, Any]:
    """Per equal-width confidence bin: count, mean confidence, accuracy; and the ECE.

    ECE = sum over bins of (bin count / N) * |accuracy - mean confidence|.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        if n == 0:
            continue
        conf, acc = float(confidence[members].mean()), float(correct[members].mean())
        ece += n / len(confidence) * abs(acc - conf)
        rows.append({"low": float(edges[b]), "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": round(ece, 4), "bins": rows, "n": len(confidence)}


def calibration(
    probabilities: npt.NDArray[np.float64], truth: npt.NDArray[np.int64], benign: int | None
) -> dict[str, Any]:
    """Reliability of the top-label confidence and, with a benign class, of the attack score."""
    if len(truth) == 0:
        return {}
    predicted = probabilities.argmax(axis=1)
    result = {"top_label": reliability(probabilities.max(axis=1), predicted == truth)}
    if benign is not None:
        attack = 1.0 - probabilities[:, benign]
        result["attack_score"] = reliability(attack, truth != benign)
    return result


def plot_reliability(figures: dict[str, Any], path: Path) -> None:
    """Reliability diagram(s): accuracy against confidence per bin, the diagonal is perfect."""
    from training.report import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(figures), figsize=(4 * len(figures), 4), squeeze=False)
    for ax, (name, f) in zip(axes[0], figures.items(), strict=True):
        conf = [b["confidence"] for b in f["bins"]]
        acc = [b["accuracy"] for b in f["bins"]]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.plot(conf, acc, marker="o")
        ax.set_xlabel("predicted probability" if name == "attack_score" else "confidence")
        ax.set_ylabel("fraction attack" if name == "attack_score" else "accuracy")
        ax.set_title(f"{name.replace('_', ' ')}: ECE {f['ece']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def side_by_side(model_name: str, metrics: dict[str, Any], forest: dict[str, Any]) -> list[str]:
    """Per-class precision / recall / F1 of the model and the RandomForest, same test split."""
    lines = [
        f"### Per class: {model_name} beside the RandomForest (same test split)",
        "",
        f"| class | support | {model_name} P | R | F1 | forest P | R | F1 | ΔF1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in metrics["per_class"].items():
        f = forest.get("per_class", {}).get(label, {})
        if m.get("absent"):
            lines.append(f"| {cell(label)} | 0 | absent | | | | | | |")
            continue
        delta = m["f1"] - f.get("f1", float("nan"))
        lines.append(
            f"| {cell(label)} | {m['support']} | {m['precision']:.3f} | {m['recall']:.3f} "
            f"| {m['f1']:.3f} | {f.get('precision', float('nan')):.3f} "
            f"| {f.get('recall', float('nan')):.3f} | {f.get('f1', float('nan')):.3f} "
            f"| {delta:+.3f} |"
        )
    return lines


def calibration_lines(figures: dict[str, Any]) -> list[str]:
    """The calibration summary of report.md (the diagram is reliability.png)."""
    if not figures:
        return []
    lines = ["### Calibration of the predicted scores (test split)", ""]
    for name, f in figures.items():
        lines.append(
            f"- {name.replace('_', ' ')}: expected calibration error {f['ece']:.4f} "
            f"over {f['n']} windows, {BINS} bins"
        )
    return lines


def section(summary: dict[str, Any], metrics: dict[str, Any], forest: dict[str, Any]) -> list[str]:
    """Everything this module adds to report.md."""
    lines = ["", *side_by_side(summary["model_type"], metrics, forest), ""]
    if metrics.get("calibration"):
        lines += [*calibration_lines(metrics["calibration"]), ""]
    return lines


def write_calibration(
    probabilities: npt.NDArray[np.float64],
    truth: npt.NDArray[np.int64],
    benign: int | None,
    out: Path,
) -> dict[str, Any]:
    """Compute the calibration figures and draw reliability.png; returns the figures."""
    figures = calibration(probabilities, truth, benign)
    if figures:
        plot_reliability(figures, out / "reliability.png")
    return figures

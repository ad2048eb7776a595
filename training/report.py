"""report.md and its PNG plots (matplotlib Agg): curves, confusion matrix, ROC / PR."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Loss, accuracy and validation macro-F1 (what early stopping watches) per epoch."""
    plt = _pyplot()
    keys = [k for k in ("loss", "accuracy", "macro_f1") if k in history or f"val_{k}" in history]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        if key in history:
            ax.plot(history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    """The confusion matrix, rows true and columns predicted, counts in the cells."""
    plt = _pyplot()
    data = np.asarray(matrix)
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(data):
        color = "white" if value > data.max() / 2 else "black"
        ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_roc_pr(
    truth: npt.NDArray[np.bool_], score: npt.NDArray[np.float64], out: Path
) -> dict[str, float]:
    """ROC and precision-recall curves of an attack score; returns their areas."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = _pyplot()
    if truth.all() or not truth.any():
        logger.warning("ROC/PR need both benign and attack samples; skipped")
        return {}
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    areas = {"roc_auc": float(auc(fpr, tpr)), "pr_auc": float(auc(recall, precision))}
    for name, (x, y, xl, yl) in {
        "roc": (fpr, tpr, "false-positive rate", "true-positive rate"),
        "pr": (recall, precision, "recall", "precision"),
    }.items():
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.plot(x, y)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{name.upper()} AUC {areas[name + '_auc']:.3f}")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)
    return areas


def _table(metrics: dict[str, Any]) -> list[str]:
    """Per-class rows of a markdown table."""
    lines = [
        "| class | precision | recall | F1 | FPR | FNR | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in metrics["per_class"].items():
        if m.get("absent"):
            lines.append(f"| {label} | absent from this split (not in macro-F1) | | | | | 0 |")
            continue
        lines.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
            f"| {m['fpr']:.4f} | {m['fnr']:.4f} | {m['support']} |"
        )
    return lines


def write_report(
    out: Path, summary: dict[str, Any], metrics: dict[str, Any], baseline: dict[str, Any]
) -> Path:
    """report.md: the data and split, the model's figures next to the RandomForest's."""
    lines = [
        f"# {summary['model_type']} on {summary['dataset']} ({summary['path']})",
        "",
        f"- feature set `{summary['feature_set']}` schema `{summary['schema_id']}`, "
        f"{len(summary['columns'])} features, window {summary['window']}",
        f"- split: {summary['split']['method']}, removed {summary['split']['removed']}, "
        f"dropped at load {summary['dropped']}",
        "",
        "## Samples per class per split",
        "",
        "| class | train | val | test |",
        "|---|---|---|---|",
    ]
    counts = summary["counts"]
    for label in counts["train"]:
        row = " | ".join(str(counts[name][label]) for name in ("train", "val", "test"))
        lines.append(f"| {label} | {row} |")
    if summary.get("too_few"):
        lines += ["", f"**Too few samples to measure:** {', '.join(summary['too_few'])}"]
    lines += [
        "",
        "## Results on the test split",
        "",
        "| model | accuracy | macro-F1 | weighted-F1 |",
    ]
    lines.append("|---|---|---|---|")
    for name, m in ((summary["model_type"], metrics), ("RandomForest", baseline)):
        lines.append(
            f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} |"
        )
    if metrics.get("absent"):
        lines += [
            "",
            f"**Absent from the test split** (macro-F1 is over {metrics['macro_f1_classes']} of "
            f"{len(metrics['per_class'])} classes): {', '.join(metrics['absent'])}",
        ]
    if "benign_vs_attack" in metrics:
        b = metrics["benign_vs_attack"]
        lines += ["", f"Benign vs attack: FPR {b['fpr']:.4f}, FNR {b['fnr']:.4f}, F1 {b['f1']:.4f}"]
    if metrics.get("detection_delay"):
        lines += ["", f"Detection delay (steps): {metrics['detection_delay']}"]
    if summary.get("thresholds"):
        lines += ["", f"Thresholds: {summary['thresholds']} ({summary['threshold_calibration']})"]
    from training.report_compare import section

    lines += section(summary, metrics, baseline)
    lines += ["", f"### {summary['model_type']} per class", "", *_table(metrics)]
    lines += ["", "### RandomForest per class", "", *_table(baseline), ""]
    plots = sorted(p.name for p in out.glob("*.png"))
    lines += [f"![{p}]({p})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

"""report.md and its PNG plots (matplotlib Agg): curves, confusion matrix, ROC / PR."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.markdown import cell

logger = logging.getLogger(__name__)


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_epochs(ax: Any, epochs: int) -> None:
    """Epochs 1..N on the x axis, whole numbers only (never ``2.5``)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, max(epochs, 1) + 0.5)


def plot_history(history: dict[str, list[float]], path: Path) -> None:
    """Loss, accuracy and validation macro-F1 (what early stopping watches) per epoch."""
    plt = _pyplot()
    keys = [k for k in ("loss", "accuracy", "macro_f1") if k in history or f"val_{k}" in history]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    epochs = 0
    for ax, key in zip(axes[0], keys, strict=True):
        top = 0.0
        for name, label in ((key, "train"), (f"val_{key}", "validation")):
            if name in history:
                values = np.asarray(history[name], np.float64)
                epochs = max(epochs, len(values))
                ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=label)
                if np.isfinite(values).any():
                    top = max(top, float(np.nanmax(values)))
        _integer_epochs(ax, epochs)
        # Scores live in 0..1; a loss starts at 0 so its fall is seen at its true scale.
        ax.set_ylim(0.0, 1.02 if key != "loss" else max(top * 1.05, 1e-3))
        ax.set_xlabel("epoch")
        ax.set_title(key.replace("_", "-"))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: Path) -> None:
    """The confusion matrix normalised per true class (rows sum to 1), with a colour bar.

    Each cell shows the share of its row and the count, so a small class's misses are as
    visible as a large one's; rows are true classes, columns predictions.
    """
    plt = _pyplot()
    counts = np.asarray(matrix, np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = max(4.5, 0.65 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    small = len(labels) > 8
    for (i, j), share in np.ndenumerate(shares):
        if counts[i, j] == 0:
            continue
        color = "white" if share > 0.5 else "black"
        text = f"{share:.2f}" if small else f"{share:.2f}\n{counts[i, j]}"
        ax.text(j, i, text, ha="center", va="center", color=color, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_roc_pr_ovr(
    truth: npt.NDArray[np.int64],
    probs: npt.NDArray[np.float64],
    labels: list[str],
    out: Path,
) -> dict[str, dict[str, float]]:
    """One-vs-rest ROC and precision-recall curves of a classifier, one line per class.

    Writes ``roc.png`` and ``pr.png``; returns ``{label: {"roc_auc", "pr_auc"}}`` for every
    class with both positive and negative test samples (the others have no curve).
    """
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = _pyplot()
    areas: dict[str, dict[str, float]] = {}
    fig_roc, ax_roc = plt.subplots(figsize=(5.5, 5))
    fig_pr, ax_pr = plt.subplots(figsize=(5.5, 5))
    for c, label in enumerate(labels):
        positive = truth == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        precision, recall, _ = precision_recall_curve(positive, probs[:, c])
        roc_auc = float(auc(fpr, tpr))
        pr_auc = float(average_precision_score(positive, probs[:, c]))
        areas[label] = {"roc_auc": roc_auc, "pr_auc": pr_auc}
        ax_roc.plot(fpr, tpr, lw=1.2, label=f"{label} ({roc_auc:.3f})")
        ax_pr.step(recall, precision, where="post", lw=1.2, label=f"{label} ({pr_auc:.3f})")
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    for ax, title, xl, yl in (
        (ax_roc, "ROC, one class vs rest (AUC)", "false-positive rate", "true-positive rate"),
        (ax_pr, "precision-recall, one vs rest (AP)", "recall", "precision"),
    ):
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if areas:
            ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
    for fig, name in ((fig_roc, "roc.png"), (fig_pr, "pr.png")):
        fig.tight_layout()
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
    return areas


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
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{name.upper()} AUC {areas[name + '_auc']:.3f}")
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)
    return areas


# The settings that decide what a model learned, in the order a reader looks for them.
HYPERPARAMETERS = (
    "model",
    "window",
    "step",
    "padding",
    "partial_windows",
    "epochs",
    "batch_size",
    "patience",
    "learning_rate",
    "units",
    "dropout",
    "seed",
    "seeds",
    "split",
    "onset_weight",
    "onset_steps",
    "target_fpr",
    "calibrate_thresholds",
    "baseline_trees",
    "members",
    "class_weight_power",
    "distill",
    "distill_augment",
)


def hyperparameters(config: Any) -> dict[str, Any]:
    """The training settings worth a row in report.md (a TrainConfig, or anything alike)."""
    return {name: getattr(config, name) for name in HYPERPARAMETERS if hasattr(config, name)}


def _plain(value: Any) -> str:
    """A value for a markdown cell: ``a 3, b 5`` for a mapping, never a Python repr."""
    if isinstance(value, dict):
        if not value:
            return "none"
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def _settings(summary: dict[str, Any]) -> list[str]:
    """Hyper-parameters and the data summary as two-column tables."""
    lines: list[str] = []
    params = summary.get("hyperparameters") or {}
    if params:
        lines += ["## Hyper-parameters", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {_plain(v)} |" for k, v in params.items()]
        lines.append("")
    split = summary["split"]
    rows = {
        "dataset": f"{summary['dataset']} ({summary['path']})",
        "feature set": f"`{summary['feature_set']}` (schema `{summary['schema_id']}`)",
        "features": len(summary["columns"]),
        "window (steps)": summary["window"],
        "split": split.get("method", "-") if isinstance(split, dict) else split,
        "removed by the split": split.get("removed", {}) if isinstance(split, dict) else "-",
        "dropped at load": summary["dropped"],
    }
    lines += ["## Data", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {_plain(v)} |" for k, v in rows.items()]
    return lines


def _table(metrics: dict[str, Any]) -> list[str]:
    """Per-class rows of a markdown table."""
    lines = [
        "| class | precision | recall | F1 | FPR | FNR | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, m in metrics["per_class"].items():
        if m.get("absent"):
            lines.append(
                f"| {cell(label)} | absent from this split (not in macro-F1) | | | | | 0 |"
            )
            continue
        lines.append(
            f"| {cell(label)} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
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
        *_settings(summary),
        "",
        "## Samples per class per split",
        "",
        "| class | train | val | test |",
        "|---|---|---|---|",
    ]
    counts = summary["counts"]
    for label in counts["train"]:
        row = " | ".join(str(counts[name][label]) for name in ("train", "val", "test"))
        lines.append(f"| {cell(label)} | {row} |")
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
        lines += ["", f"Detection delay (steps): {_plain(metrics['detection_delay'])}"]
    if summary.get("thresholds"):
        lines += [
            "",
            f"Thresholds: {_plain(summary['thresholds'])} "
            f"(calibration: {_plain(summary['threshold_calibration'])})",
        ]
    curves = metrics.get("curves") or {}
    if curves and all(isinstance(v, dict) for v in curves.values()):
        lines += ["", "### One-vs-rest curves (test split)", "", "| class | ROC AUC | PR AP |"]
        lines.append("|---|---|---|")
        for label, area in curves.items():
            lines.append(f"| {cell(label)} | {area['roc_auc']:.3f} | {area['pr_auc']:.3f} |")
    from training.report_compare import section

    lines += section(summary, metrics, baseline)
    lines += ["", f"### {summary['model_type']} per class", "", *_table(metrics)]
    lines += ["", "### RandomForest per class", "", *_table(baseline), ""]
    plots = sorted(p.name for p in out.glob("*.png"))
    lines += [f"![{p}]({p})" for p in plots]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path

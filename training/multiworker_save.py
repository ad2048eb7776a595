"""What the chief of a multi-worker run writes: the model directory ``iotids convert`` reads.

The same files as ``iotids train`` (model.keras, export.keras for recurrent models,
preprocess.json, metrics.json, report.md, the curves and the confusion matrix, and
data/representative.npz and data/test.npz for int8 calibration and verification) except the
RandomForest reference and the score curves, which need every test window in one place; the
two .npz files hold windows of the chief's own shard, streamed and capped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training import feature_shards as shards
from training import split
from training.markdown import cell

if TYPE_CHECKING:
    from training.multiworker import Run

TEST_KEEP = 20_000


def save_chief(
    run: Run, model: Any, summary: dict[str, Any], counts: npt.NDArray[np.float64]
) -> None:
    """Write ``run.config.out`` (the chief only; the other workers write nothing)."""
    from training import report
    from training.models import RECURRENT, export_model
    from training.multiworker import _counts, _to_input

    out = Path(run.config.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    if run.spec.model_type in RECURRENT:
        export_model(run.spec, model).save(out / "export.keras")
    per_split = _counts(counts, run.labels)
    state = _preprocess(run, per_split)
    (out / "preprocess.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
    to_input = _to_input(run)
    rep_x, rep_y = _first(
        run, "train", to_input, max(1, run.config.representative // len(run.labels))
    )
    np.savez_compressed(out / "data" / "representative.npz", x=rep_x, y=rep_y)
    test_x, test_y = _first(run, "test", to_input, TEST_KEEP)
    np.savez_compressed(out / "data" / "test.npz", x=test_x, y=test_y)
    report.plot_history(summary["history"], out / "training_curves.png")
    report.plot_confusion(
        summary["model"]["confusion_matrix"], run.labels, out / "confusion_matrix.png"
    )
    (out / "metrics.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_report(run, summary, per_split), encoding="utf-8")


def _first(
    run: Run, which: str, to_input: Any, per_class: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Up to ``per_class`` windows of each class of one split of the chief's shard."""
    xs, ys = [], []
    taken = dict.fromkeys(range(len(run.labels)), 0)
    for x, y in shards.batches(
        run.mine, which, run.labels, run.window, run.padding, run.scaler, to_input
    ):
        room = per_class - taken[int(y[0])]
        if room > 0:
            xs.append(x[:room])
            ys.append(y[:room])
            taken[int(y[0])] += len(y[:room])
    if not xs:
        return np.zeros((0, *run.spec.input_shape), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def _preprocess(run: Run, per_split: dict[str, dict[str, int]]) -> dict[str, Any]:
    """preprocess.json: the converters' and the agent's contract, as ``iotids train`` writes it."""
    from training.train import categories

    assert run.scaler is not None
    first = shards.read_steps(run.mine[0])[1]
    attacks = [label for i, label in enumerate(run.labels) if i != run.benign]
    return {
        "feature_set": first.feature_set.id,
        "schema_id": first.feature_set.schema_id,
        "columns": list(first.feature_set.columns),
        "step": first.step.to_dict(),
        "window": run.window,
        "padding": run.padding,
        "input_shape": list(run.spec.input_shape),
        "model_type": run.spec.model_type,
        "task": run.spec.task,
        "scaler": run.scaler.to_dict(),
        "labels": run.labels,
        "categories": categories(run.labels, run.benign, run.config.mapping),
        "thresholds": dict.fromkeys(attacks, 0.5),
        "threshold_calibration": {
            "method": "argmax of the softmax (fixed 0.5 per attack label)",
            "target_fpr": None,
            "n_normal": per_split["val"][run.labels[run.benign]] if run.benign is not None else 0,
        },
        "encoders": {},
        "split": {
            "method": "time-block per recording (multi-worker)",
            "fractions": [0.7, 0.1, 0.2],
            "counts": per_split,
            "too_few": split.warn_small(per_split),
        },
        "dataset": {
            "kind": "features",
            "path": run.config.path,
            "options": {},
            "dropped": {},
        },
    }


def _report(run: Run, summary: dict[str, Any], per_split: dict[str, dict[str, int]]) -> str:
    """report.md: settings, the workers, windows per class and split, the test figures."""
    m = summary["model"]
    lines = [
        f"# {run.config.model} on features ({run.config.path}), {run.cluster.size} worker(s)",
        "",
        f"MultiWorkerMirroredStrategy, global batch {run.config.batch_size}, "
        f"{len(summary['history']['loss'])} epochs "
        f"(early stopping on {summary['early_stopping']}), "
        f"{summary['train_seconds']} s. No RandomForest reference and no ROC/PR curves: those "
        "need every test window on one machine.",
        "",
        "| worker | recordings | steps read | train | val | test windows | peak RSS (KiB) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {w['index']} | {w['recordings']} | {w['steps_read']} | {w['train']} | "
            f"{w['val']} | {w['test']} | {w['peak_rss_kb']} |"
            for w in summary["workers"]
        ),
        "",
        "| class | train | val | test | test precision | recall | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in run.labels:
        c = m["per_class"].get(label, {})
        lines.append(
            f"| {cell(label)} | {per_split['train'][label]} | {per_split['val'][label]} | "
            f"{per_split['test'][label]} | {c.get('precision', 0):.4f} | "
            f"{c.get('recall', 0):.4f} | {c.get('f1', 0):.4f} |"
        )
    lines += ["", f"Accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}.", ""]
    return "\n".join(lines)

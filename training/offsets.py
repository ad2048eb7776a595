"""Per-class logit offsets for the dnn, fitted to maximise macro-F1, folded into its biases.

Cross-entropy with tempered class weights puts the boundaries between a big class and a
class of a few hundred (or a dozen) rows where the weighted likelihood wants them, not where
macro-F1 does. Adding an offset ``b_c`` to every member's class-``c`` logit moves them; since
``softmax(z + b) ∝ p · exp(b)``, the offsets are found from the members' probabilities alone
and then added to each member's final Dense bias: still one model.keras and one int8 TFLite,
the agent sees nothing new.

The offsets are fitted by coordinate ascent on a grid (one class, the largest, stays at 0:
softmax ignores a common shift). Of the grid values that score best for a class, the current value
stays when it is among them (no move without a gain), else the middle of the best run nearest
to it is kept: an edge is where a fitting row flips, the middle leaves room either side.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

STEP = 0.1  # grid step of an offset, in logits
PASSES = 3  # coordinate-ascent sweeps over the classes
FLOOR = 1e-12  # probabilities are clipped here before the log


def member_heads(model: Any) -> list[Any]:
    """The final softmax Dense layers of a dnn: one per member (or the one ``probabilities``)."""
    heads = [layer for layer in model.layers if layer.name.startswith("member_probabilities")]
    return heads or [model.get_layer("probabilities")]


def member_probabilities(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Each member's softmax on ``x``: shape (members, rows, classes)."""
    import keras

    heads = member_heads(model)
    probe = keras.Model(model.inputs, [h.output for h in heads])
    out = probe.predict(x, batch_size=1024, verbose=0)
    stacked = np.stack(out if isinstance(out, list) else [out])
    return stacked.astype(np.float64)


def shifted(members: npt.NDArray[np.float64], offsets: npt.NDArray[np.float64]) -> Any:
    """The model's output with ``offsets`` added to every member's logits: (rows, classes)."""
    logits = np.log(np.clip(members, FLOOR, None)) + offsets
    logits -= logits.max(axis=-1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=-1, keepdims=True)).mean(axis=0)


def macro_f1(y: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], n_classes: int) -> float:
    """Macro-F1 over the classes ``y`` holds (as sklearn's over the labels present)."""
    confusion = np.bincount(y * n_classes + predicted, minlength=n_classes**2).reshape(
        n_classes, n_classes
    )
    tp = np.diag(confusion).astype(np.float64)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)
    f1 = np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)
    present = (confusion.sum(axis=1) + confusion.sum(axis=0)) > 0
    return float(f1[present].mean()) if present.any() else 0.0


def _best_value(
    grid: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], now: float
) -> float:
    """``now`` when it scores best (no move without a gain), else the middle of the run of
    best-scoring grid values nearest to it."""
    best = np.isclose(scores, scores.max(), rtol=0, atol=1e-12)
    current = int(np.abs(grid - now).argmin())
    if best[current]:
        return now
    runs: list[tuple[int, int]] = []
    for i in np.flatnonzero(best):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], int(i))
        else:
            runs.append((int(i), int(i)))
    start, end = min(runs, key=lambda r: min(abs(r[0] - current), abs(r[1] - current)))
    return float(grid[(start + end) // 2])


def fit_offsets(
    members: npt.NDArray[np.float64], y: npt.NDArray[np.int64], limit: float
) -> npt.NDArray[np.float64]:
    """Per-class offsets within ±``limit`` that maximise macro-F1 of the shifted output on ``y``."""
    n_classes = members.shape[-1]
    offsets = np.zeros(n_classes)
    grid = np.round(np.arange(-limit, limit + STEP / 2, STEP), 6)
    reference = int(np.bincount(y, minlength=n_classes).argmax())
    for _ in range(PASSES):
        before = offsets.copy()
        for c in (c for c in range(n_classes) if c != reference):
            now = float(offsets[c])
            scores = np.empty(len(grid))
            for i, value in enumerate(grid):
                offsets[c] = value
                scores[i] = macro_f1(y, shifted(members, offsets).argmax(axis=1), n_classes)
            offsets[c] = _best_value(grid, scores, now)
        if np.array_equal(before, offsets):
            break
    return offsets


def fold_offsets(model: Any, offsets: npt.NDArray[np.float64]) -> None:
    """Add ``offsets`` to every member head's bias (the model then outputs ``shifted``)."""
    for head in member_heads(model):
        head.bias.assign(np.asarray(head.bias) + offsets.astype(np.float32))


def apply_offsets(
    model: Any, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], limit: float
) -> npt.NDArray[np.float64]:
    """Fit offsets on ``(x, y)`` (held-out rows), fold them into ``model``; the offsets."""
    offsets = fit_offsets(member_probabilities(model, x), y, limit)
    fold_offsets(model, offsets)
    logger.info("per-class logit offsets: %s", np.round(offsets, 2).tolist())
    return offsets

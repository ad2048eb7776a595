"""Honest splits: contiguous time blocks for time-ordered data, stratified for independent rows.

Time-ordered data (capture steps, telemetry rows) is never split by shuffled rows: that puts
overlapping windows of the same moment on both sides and inflates scores. Each contiguous run
of one class within one group is cut chronologically into a train, a validation and a test
piece, and windows are built inside a piece only, so no two
windows of different splits share a step.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.features.steps import stream_windows

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_TO_MEASURE = 10  # fewer test samples of a class than this make its figures noise


@dataclass
class Split:
    """Which rows go where: contiguous ``ranges`` (time-ordered) or ``rows`` (independent)."""

    method: str
    ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    rows: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)  # reason -> rows removed
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)

    def summary(self) -> dict[str, Any]:
        """The JSON-able account of the split saved in preprocess.json."""
        return {
            "method": self.method,
            "fractions": list(self.fractions),
            "removed": dict(self.removed),
            "pieces": {name: len(self.ranges.get(name, [])) for name in SPLITS}
            if self.ranges
            else None,
        }


def _cut(length: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """Where a run of ``length`` ends its train and validation pieces."""
    a = round(length * fractions[0])
    b = round(length * (fractions[0] + fractions[1]))
    return a, b


def runs(groups: npt.NDArray[np.int64], labels: npt.NDArray[np.str_]) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` row ranges of one group and one class each."""
    if len(labels) == 0:
        return []
    change = np.nonzero((groups[1:] != groups[:-1]) | (labels[1:] != labels[:-1]))[0] + 1
    bounds = np.concatenate(([0], change, [len(labels)]))
    return [(int(s), int(e)) for s, e in itertools.pairwise(bounds)]


def rows_of(ranges: list[tuple[int, int]]) -> npt.NDArray[np.int64]:
    """Every row index inside the ranges, in order."""
    if not ranges:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in ranges])


def time_block_split(
    groups: npt.NDArray[np.int64],
    labels: npt.NDArray[np.str_],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
) -> Split:
    """Cut every class run of every group chronologically into train / val / test pieces."""
    split = Split("time-block", {name: [] for name in SPLITS}, fractions=fractions)
    for start, end in runs(groups, labels):
        a, b = _cut(end - start, fractions)
        for name, (s, e) in zip(SPLITS, ((0, a), (a, b), (b, end - start)), strict=True):
            if e > s:
                split.ranges[name].append((start + s, start + e))
    split.rows = {name: rows_of(split.ranges[name]) for name in SPLITS}
    return split


def block_split(
    groups: npt.NDArray[np.int64],
    n_blocks: int = 10,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> Split:
    """Cut every group's timeline into ``n_blocks`` equal contiguous blocks and deal them out.

    For data whose class runs are shorter than a window (attack bursts of a few steps), the
    per-run cut would leave no whole window; here windows may span a class change inside a
    block (labelled by their last step, as on the gateway) but never a block boundary.
    """
    split = Split("blocks", {name: [] for name in SPLITS}, fractions=fractions)
    rng = np.random.default_rng(seed)
    n_train = round(n_blocks * fractions[0])
    n_val = round(n_blocks * fractions[1])
    for start, end in runs(groups, np.zeros(len(groups), np.str_)):
        edges = np.linspace(start, end, n_blocks + 1).round().astype(int)
        order = rng.permutation(n_blocks)
        for rank, block in enumerate(order):
            name = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
            if edges[block + 1] > edges[block]:
                split.ranges[name].append((int(edges[block]), int(edges[block + 1])))
    for name in SPLITS:
        split.ranges[name].sort()
    split.rows = {name: rows_of(split.ranges[name]) for name in SPLITS}
    return split


def median_run(groups: npt.NDArray[np.int64], labels: npt.NDArray[np.str_]) -> float:
    """Median length of the class runs (steps of one class in a row, within a group)."""
    lengths = [e - s for s, e in runs(groups, labels)]
    return float(np.median(lengths)) if lengths else 0.0


def file_split(
    groups: npt.NDArray[np.int64], test_groups: list[int], val_groups: list[int]
) -> Split:
    """Whole groups (capture files, devices) to test and validation; the rest train."""
    split = Split("by-file", {name: [] for name in SPLITS})
    for start, end in runs(groups, np.zeros(len(groups), np.str_)):
        g = int(groups[start])
        name = "test" if g in test_groups else "val" if g in val_groups else "train"
        split.ranges[name].append((start, end))
    split.rows = {name: rows_of(split.ranges[name]) for name in SPLITS}
    return split


def _row_keys(x: npt.NDArray[np.float32]) -> npt.NDArray[np.void]:
    """One hashable byte string per row, for exact-duplicate checks."""
    contiguous = np.ascontiguousarray(x)
    return contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * x.shape[1]))).ravel()


def stratified_split(
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[np.str_],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> Split:
    """Independent rows: drop exact duplicates, stratify by class, drop cross-split repeats."""
    keys = _row_keys(np.concatenate([x, _label_codes(labels)[:, None]], axis=1))
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(first)
    split = Split("stratified", fractions=fractions)
    split.removed["duplicate_rows"] = len(x) - len(keep)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[npt.NDArray[np.int64]]] = {name: [] for name in SPLITS}
    for label in np.unique(labels[keep]):
        members = rng.permutation(keep[labels[keep] == label])
        n = len(members)
        n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
        n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    split.rows = {name: np.sort(np.concatenate(parts[name])).astype(np.int64) for name in SPLITS}
    _drop_cross_split(x, split)
    logger.info("removed duplicates: %s", split.removed)
    return split


def fold_split(
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[np.str_],
    fold: int,
    folds: int = 5,
    seed: int = 0,
    val_share: float = 0.125,
) -> Split:
    """Fold ``fold`` of a stratified ``folds``-fold cut: that fold is the test part.

    Over ``fold = 0..folds-1`` with one ``seed`` every deduplicated row is a test row exactly
    once (out-of-fold scoring): with a class of a dozen rows, one stratified test part holds
    two of them and decides several points of macro-F1, whereas out of fold every one counts.
    ``val_share`` of each class's other rows (at least one when it has 3) is the validation
    part early stopping watches; the rest train. Duplicates and cross-split repeats go as in
    ``stratified_split``.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"fold {fold} is not in 0..{folds - 1}")
    keys = _row_keys(np.concatenate([x, _label_codes(labels)[:, None]], axis=1))
    _, first = np.unique(keys, return_index=True)
    keep = np.sort(first)
    test = 1 / folds
    val = val_share * (1 - test)
    split = Split("stratified-fold", fractions=(1 - test - val, val, test))
    split.removed["duplicate_rows"] = len(x) - len(keep)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[npt.NDArray[np.int64]]] = {name: [] for name in SPLITS}
    for label in np.unique(labels[keep]):
        members = rng.permutation(keep[labels[keep] == label])
        in_test = np.arange(len(members)) % folds == fold
        rest = members[~in_test]
        n_val = max(1, round(len(rest) * val_share)) if len(members) >= 3 else 0
        # the validation rows rotate with the fold too, so no row is always held back
        rest = np.roll(rest, -fold * n_val) if len(rest) else rest
        parts["test"].append(members[in_test])
        parts["val"].append(rest[:n_val])
        parts["train"].append(rest[n_val:])
    split.rows = {name: np.sort(np.concatenate(parts[name])).astype(np.int64) for name in SPLITS}
    _drop_cross_split(x, split)
    return split


def _drop_cross_split(x: npt.NDArray[np.float32], split: Split) -> None:
    """Drop validation and test rows whose features are a training row's (another label)."""
    train_keys = set(_row_keys(x[split.rows["train"]]).tolist())
    for name in ("val", "test"):
        rows = split.rows[name]
        clash = np.array([k in train_keys for k in _row_keys(x[rows]).tolist()], dtype=bool)
        split.removed[f"cross_split_{name}"] = int(clash.sum())
        split.rows[name] = rows[~clash] if len(rows) else rows


def _label_codes(labels: npt.NDArray[np.str_]) -> npt.NDArray[np.float32]:
    """Labels as numbers, so a duplicate means the same features AND the same class."""
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.float32)


def windows(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    ranges: list[tuple[int, int]],
    length: int,
    padded: frozenset[int] = frozenset(),
    fill: npt.NDArray[np.float32] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Windows of ``length`` steps inside each range, labelled by their LAST step.

    A range starting at a row in ``padded`` (a recording's first step) is a stream start: its
    first windows are padded with ``fill`` rows the way the gateway pads a new stream.
    Returns (N, T, F) windows, (N,) labels, and (N,) the row index of each window's last step.
    """
    xs, lasts = [], []
    for start, end in ranges:
        pad = "zeros" if start in padded else "none"
        w = stream_windows(x[start:end], length, pad, fill)
        if len(w):
            xs.append(np.ascontiguousarray(w))
            lasts.append(np.arange(end - len(w), end, dtype=np.int64))
    if not xs:
        return (
            np.zeros((0, length, x.shape[1]), np.float32),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
    last = np.concatenate(lasts)
    return np.concatenate(xs), y[last], last


def stream_starts(groups: npt.NDArray[np.int64]) -> frozenset[int]:
    """The first row of every group: where a recording's stream starts (padded windows)."""
    if len(groups) == 0:
        return frozenset()
    change = np.nonzero(groups[1:] != groups[:-1])[0] + 1
    return frozenset([0, *change.tolist()])


def run_of_rows(
    rows: npt.NDArray[np.int64], groups: npt.NDArray[np.int64], labels: npt.NDArray[np.str_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The class run each row falls in, and each run's first row (for detection delay)."""
    starts = np.array([s for s, _ in runs(groups, labels)], np.int64)
    return np.searchsorted(starts, rows, side="right") - 1, starts


def per_class_counts(y: npt.NDArray[np.int64], labels: list[str]) -> dict[str, int]:
    """Samples per class name (every class listed, 0 when absent)."""
    counts = np.bincount(y, minlength=len(labels)) if len(y) else np.zeros(len(labels), int)
    return {label: int(c) for label, c in zip(labels, counts, strict=True)}


def warn_small(counts: dict[str, dict[str, int]]) -> list[str]:
    """Warn (and return the classes) with too few test or train samples to measure."""
    small = []
    for label in counts["train"]:
        if counts["train"][label] < MIN_TO_MEASURE or counts["test"][label] < MIN_TO_MEASURE:
            small.append(label)
            logger.warning(
                "class %s has too few samples to measure: train %d, val %d, test %d",
                label,
                counts["train"][label],
                counts["val"][label],
                counts["test"][label],
            )
    return small

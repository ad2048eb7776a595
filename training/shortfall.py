"""Classes with too few windows to learn or to measure: which recordings, and what step fits.

A class whose recordings are shorter than a window gets no window at all, and one with a few
windows gets a test figure that is noise. Neither may pass silently behind a macro-F1 of the
other classes: each becomes a warning naming the recordings (packets, seconds, steps) and a
step that would give them enough steps, or an error with ``--strict``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from training.datasets import Dataset
from training.split import MIN_TO_MEASURE

logger = logging.getLogger(__name__)

# Steps a recording needs so that its test piece (a fifth) still holds MIN_TO_MEASURE windows.
TARGET_STEPS = 5 * MIN_TO_MEASURE


def recordings_of(dataset: Dataset, label: str) -> list[str]:
    """Names of the groups (recordings) holding rows of ``label``."""
    assert dataset.groups is not None
    groups = np.unique(dataset.groups[dataset.label_names == label])
    return [dataset.group_names[int(g)] for g in groups if int(g) < len(dataset.group_names)]


def fitting_step(info: dict[str, float], need: int) -> str:
    """A step giving a recording about ``need`` steps: packets per step and seconds per step."""
    packets, seconds = int(info.get("packets", 0)), float(info.get("seconds", 0.0))
    if packets < need:
        return f"none fits ({packets} packets < {need} steps of one packet: record longer)"
    per_step = packets // need
    text = f"{per_step}p"
    if seconds > 0:
        text += f" or {seconds / need:.3g}s (or {per_step}p/{seconds / need:.3g}s)"
    return text


def describe(dataset: Dataset, label: str, need: int) -> str:
    """The recordings of ``label`` with their size, and the step that would fit them."""
    parts = []
    for name in recordings_of(dataset, label):
        info = dataset.recordings.get(name)
        if info is None:
            parts.append(name)
            continue
        parts.append(
            f"{name} ({int(info['packets'])} packets over {info['seconds']:g} s -> "
            f"{int(info['steps'])} steps; a step of {fitting_step(info, need)} would fit)"
        )
    return ", ".join(parts) if parts else "no recording"


def shortfalls(
    dataset: Dataset, counts: dict[str, dict[str, int]], window: int, padding: str
) -> list[str]:
    """One message per class with fewer than MIN_TO_MEASURE training or test windows."""
    step = dataset.options.get("step", "the step")
    need = TARGET_STEPS + (0 if padding == "zeros" else window - 1)
    messages = []
    for label in counts["train"]:
        train, val, test = (counts[name][label] for name in ("train", "val", "test"))
        if train >= MIN_TO_MEASURE and test >= MIN_TO_MEASURE:
            continue
        messages.append(
            f"class {label!r} has too few windows (train {train}, val {val}, test {test}; "
            f"at least {MIN_TO_MEASURE} each needed) with step {step} and window {window}: "
            f"{describe(dataset, label, need)}"
        )
    return messages


def absent_from_test(metrics: dict[str, Any], counts: dict[str, dict[str, int]]) -> list[str]:
    """Classes the test split has none of: unscored, or scored only by false predictions."""
    n = metrics.get("macro_f1_classes", len(counts["test"]))
    unscored = set(metrics.get("absent", []))
    return [
        f"class {label!r} is absent from the test split"
        + (
            " and never predicted: not scored"
            if label in unscored
            else " but predicted: it scores F1 0 (false predictions only)"
        )
        + f"; macro-F1 {metrics['macro_f1']:.4f} is over {n} of {len(counts['test'])} classes"
        for label, c in counts["test"].items()
        if c == 0
    ]

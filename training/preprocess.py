"""Scaling fitted on the training split only, saved with the model, applied the device's way.

Device-side scaling (the converters' and the agent's contract) is ``agent.scaling``: ``minmax``,
``x = clip((clip(raw, clip_low, clip_high) - min) / (max - min), 0, 1)`` and 0 where
``max == min``, or ``quantile``, each feature through its training quantiles. The scaler below
is that class with a ``fit``, so training sees what the gateway feeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from agent.scaling import KINDS, MINMAX
from agent.scaling import Scaler as DeviceScaler

QUANTILES = (0.001, 0.999)
QUANTILE_KNOTS = 129  # quantile scaling: knots per feature (distinct values kept)


class Scaler(DeviceScaler):
    """The gateway's scaler (``agent.scaling``: its transform and its ``preprocess.json`` /
    manifest entry), fitted here on the training rows."""

    @classmethod
    def fit(
        cls,
        x: npt.NDArray[np.float32],
        quantiles: tuple[float, float] = QUANTILES,
        kind: str = MINMAX,
    ) -> Scaler:
        """Fit on training rows (N, F): clip bounds at the quantiles, min/max of the clipped;
        for ``quantile`` also each feature's knots."""
        if len(x) == 0:
            raise ValueError("cannot fit a scaler on zero training rows")
        if kind not in KINDS:
            raise ValueError(f"scaler: must be one of {', '.join(KINDS)}, got {kind!r}")
        data = x.astype(np.float64)
        low = np.quantile(data, quantiles[0], axis=0)
        high = np.quantile(data, quantiles[1], axis=0)
        clipped = np.clip(data, low, high)
        bounds = (_floats(low), _floats(high))
        if kind == MINMAX:
            return cls(kind, _floats(clipped.min(axis=0)), _floats(clipped.max(axis=0)), *bounds)
        knots, levels = quantile_knots(data)
        return cls(
            kind, _floats(data.min(axis=0)), _floats(data.max(axis=0)), *bounds, knots, levels
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        """Read the ``scaler`` entry back (the agent's checks); a bad entry names the key."""
        device = DeviceScaler.from_preprocess(data)
        return cls(**{f: getattr(device, f) for f in device.__dataclass_fields__})


def _floats(values: npt.NDArray[np.float64]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def quantile_knots(
    data: npt.NDArray[np.float64], count: int = QUANTILE_KNOTS
) -> tuple[tuple[tuple[float, ...], ...], tuple[tuple[float, ...], ...]]:
    """Per feature, its distinct quantile values at ``count`` even levels and the level of each
    (a value many rows share, such as 0 in a sparse feature, sits mid-way up its run of levels)."""
    grid = np.linspace(0.0, 1.0, count)
    values = np.quantile(data, grid, axis=0)
    knots, levels = [], []
    for j in range(data.shape[1]):
        distinct, which = np.unique(values[:, j], return_inverse=True)
        knots.append(tuple(float(v) for v in distinct))
        levels.append(tuple(float(grid[which == i].mean()) for i in range(len(distinct))))
    return tuple(knots), tuple(levels)


def class_weights(y: npt.NDArray[np.int64], n_classes: int) -> dict[int, float]:
    """Balanced weights ``n / (k · count)`` for the classes present in training."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    return {
        int(c): float(len(y) / (k * counts[c])) if present[c] else 0.0 for c in range(n_classes)
    }

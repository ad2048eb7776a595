"""Scaling fitted on the training split only, saved with the model, applied the device's way.

Device-side scaling (the converters' and the agent's contract) is
``x = clip((clip(raw, clip_low, clip_high) - min) / (max - min), 0, 1)`` and 0 where
``max == min``; ``transform`` below is exactly that, so training sees what the gateway feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

QUANTILES = (0.001, 0.999)


@dataclass(frozen=True)
class Scaler:
    """Per-feature quantile clipping then min-max to 0..1."""

    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    clip_low: npt.NDArray[np.float64]
    clip_high: npt.NDArray[np.float64]

    @classmethod
    def fit(cls, x: npt.NDArray[np.float32], quantiles: tuple[float, float] = QUANTILES) -> Scaler:
        """Fit on training rows (N, F): clip bounds at the quantiles, min/max of the clipped."""
        if len(x) == 0:
            raise ValueError("cannot fit a scaler on zero training rows")
        data = x.astype(np.float64)
        low = np.quantile(data, quantiles[0], axis=0)
        high = np.quantile(data, quantiles[1], axis=0)
        clipped = np.clip(data, low, high)
        return cls(clipped.min(axis=0), clipped.max(axis=0), low, high)

    def transform(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scale raw features (..., F) to 0..1 the way the device does."""
        span = self.max - self.min
        safe = np.where(span > 0, span, 1.0)
        scaled = (np.clip(x.astype(np.float64), self.clip_low, self.clip_high) - self.min) / safe
        scaled = np.where(span > 0, np.clip(scaled, 0.0, 1.0), 0.0)
        return scaled.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """The ``scaler`` entry of preprocess.json."""
        return {
            "kind": "minmax",
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "clip_low": self.clip_low.tolist(),
            "clip_high": self.clip_high.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        """Read the ``scaler`` entry back; a wrong kind or length names the key."""
        if data.get("kind") != "minmax":
            raise ValueError(f"scaler.kind: expected 'minmax', got {data.get('kind')!r}")
        arrays = {
            k: np.asarray(data[k], np.float64) for k in ("min", "max", "clip_low", "clip_high")
        }
        widths = {k: len(v) for k, v in arrays.items()}
        if len(set(widths.values())) != 1:
            raise ValueError(f"scaler: arrays differ in length {widths}")
        return cls(**arrays)


def class_weights(y: npt.NDArray[np.int64], n_classes: int) -> dict[int, float]:
    """Balanced weights ``n / (k · count)`` for the classes present in training."""
    counts = np.bincount(y, minlength=n_classes)
    present = counts > 0
    k = int(present.sum())
    return {
        int(c): float(len(y) / (k * counts[c])) if present[c] else 0.0 for c in range(n_classes)
    }

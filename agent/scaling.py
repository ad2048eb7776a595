"""Raw features to the model's 0..1 inputs, the way the bundle's manifest says.

``minmax``: clip to ``[clip_low, clip_high]``, then min-max to 0..1 (0 where ``max == min``).
``quantile``: each feature through its training rows' quantiles, piecewise linear between them
(``knots``: per feature the distinct quantile values, increasing; ``levels``: the share of
training rows at each, 0..1), clamped outside. An int8 model's input has one scale for all its
features, 1/255 over 0..1: min-max left most rows of a heavy-tailed feature (a flow table's
rates and counts) in its lowest two steps, and the int8 model then answered differently from
the float one on ~5 % of rows; by quantiles a feature's rows spread over the whole range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

MINMAX = "minmax"
QUANTILE = "quantile"
KINDS = (MINMAX, QUANTILE)
MAX_KNOTS = 1025  # per feature: a hostile manifest must not make the transform unbounded


@dataclass(frozen=True)
class Scaler:
    """A manifest's scaling; ``knots`` and ``levels`` only for ``quantile``."""

    kind: str
    min: tuple[float, ...]
    max: tuple[float, ...]
    clip_low: tuple[float, ...]
    clip_high: tuple[float, ...]
    knots: tuple[tuple[float, ...], ...] = ()
    levels: tuple[tuple[float, ...], ...] = ()

    def transform(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Scaled features, same shape as ``raw`` (last axis = features)."""
        if self.kind == QUANTILE:
            return by_quantiles(raw, self.knots, self.levels)
        return minmax(raw, self.min, self.max, self.clip_low, self.clip_high)

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``scaler`` (a minmax one as it always was: no empty knot lists)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "min": list(self.min),
            "max": list(self.max),
            "clip_low": list(self.clip_low),
            "clip_high": list(self.clip_high),
        }
        if self.kind == QUANTILE:
            out["knots"] = [list(k) for k in self.knots]
            out["levels"] = [list(v) for v in self.levels]
        return out

    @classmethod
    def parse(cls, raw: Mapping[str, Any], width: int) -> Scaler:
        """Validate a manifest's ``scaler`` for ``width`` features; ValueError names the key."""
        kind = raw.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
        low, high, clip_low, clip_high = (
            _numbers(raw, k, width) for k in ("min", "max", "clip_low", "clip_high")
        )
        if kind == MINMAX:
            return cls(kind, low, high, clip_low, clip_high)
        knots = _lists(raw, "knots", width)
        levels = _lists(raw, "levels", width)
        for j, (k, v) in enumerate(zip(knots, levels, strict=True)):
            if not 1 <= len(k) <= MAX_KNOTS or len(v) != len(k):
                raise ValueError(f"knots[{j}]: 1..{MAX_KNOTS} knots, as many levels, got {len(k)}")
            if any(b <= a for a, b in pairwise(k)):
                raise ValueError(f"knots[{j}]: must increase")
            if any(not 0 <= x <= 1 for x in v) or any(b < a for a, b in pairwise(v)):
                raise ValueError(f"levels[{j}]: must be 0..1 and not decrease")
        return cls(kind, low, high, clip_low, clip_high, knots, levels)

    @classmethod
    def from_preprocess(cls, raw: Mapping[str, Any], width: int | None = None) -> Scaler:
        """A training folder's ``preprocess.json`` scaler (older ones carry no kind: min-max);
        ``width`` features, or as many as it has ``min`` values."""
        if width is None:
            low = raw.get("min")
            width = len(low) if isinstance(low, list) else 0
        return cls.parse({"kind": MINMAX, **raw}, width)


def minmax(
    raw: npt.NDArray[Any],
    low: npt.ArrayLike,
    high: npt.ArrayLike,
    clip_low: npt.ArrayLike,
    clip_high: npt.ArrayLike,
) -> npt.NDArray[np.float32]:
    """Clip, then min-max to 0..1; 0 where ``high == low``."""
    lo = np.asarray(low, dtype=np.float64)
    span = np.asarray(high, dtype=np.float64) - lo
    x = np.clip(np.asarray(raw, dtype=np.float64), clip_low, clip_high)
    safe = np.where(span > 0, span, 1.0)
    scaled = np.where(span > 0, (x - lo) / safe, 0.0)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def by_quantiles(
    raw: npt.NDArray[Any],
    knots: tuple[tuple[float, ...], ...],
    levels: tuple[tuple[float, ...], ...],
) -> npt.NDArray[np.float32]:
    """Each feature piecewise linear through its (knot, level) points, clamped at the ends.

    A feature with one knot (constant in training) is its level; NaN stays NaN.
    """
    x = np.asarray(raw, dtype=np.float64)
    out = np.empty(x.shape, np.float32)
    for j, (k, v) in enumerate(zip(knots, levels, strict=True)):
        out[..., j] = np.interp(x[..., j], k, v) if len(k) > 1 else v[0]
    return out


def _numbers(raw: Mapping[str, Any], key: str, width: int) -> tuple[float, ...]:
    values = raw.get(key)
    if not isinstance(values, list):
        raise ValueError(f"{key}: expected list, got {type(values).__name__}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{key}: expected a list of numbers")
    if len(values) != width:
        raise ValueError(f"{key}: expected {width} values, got {len(values)}")
    return tuple(float(v) for v in values)


def _lists(raw: Mapping[str, Any], key: str, width: int) -> tuple[tuple[float, ...], ...]:
    values = raw.get(key)
    if not isinstance(values, list) or len(values) != width:
        raise ValueError(f"{key}: expected one list per feature ({width})")
    out = []
    for j, row in enumerate(values):
        ok = isinstance(row, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in row
        )
        if not ok:
            raise ValueError(f"{key}[{j}]: expected a list of finite numbers")
        out.append(tuple(float(v) for v in row))
    return tuple(out)

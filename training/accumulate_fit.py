"""Fit the agent's accumulator (agent/accumulate.py) on validation normals.

The false-alarm budget is split in two: half to a per-window ``threshold`` (set like the
bundle's, on all the normal time), half to the CUSUM. ``level`` is an upper quantile of the
model's normal scores, so a normal window adds to the CUSUM only rarely; ``limit`` is the
lowest CUSUM whose alarms on the normal stretches (each accumulated from zero, alarms counted
as the agent raises them) stay within its half, times a margin; each sensor value column's
allowed run is its longest run of one value on the same normals, times a margin. Everything is
chosen on validation data only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.accumulate import AccumulatorSpec, cusum, run_lengths
from training.forecast import threshold_for_rate

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FitSettings:
    """The knobs of the fit (chosen on tuning seeds, never on the reported ones)."""

    level_quantile: float = 0.95
    limit_margin: float = 1.5
    run_margin: float = 2.0
    cap: float = 2.0


def segments(clean: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in ``clean``."""
    edges = np.diff(np.concatenate([[0], clean.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


@dataclass(frozen=True)
class Stretch:
    """One recording's validation windows: scores, raw last steps (S, width), fault-free flags."""

    scores: F64
    steps: npt.NDArray[np.floating[Any]]
    clean: npt.NDArray[np.bool_]

    def normal_parts(self) -> list[tuple[F64, F64]]:
        """(scores, raw last steps) of every run of fault-free windows."""
        return [
            (self.scores[a:b], np.asarray(self.steps[a:b], np.float64))
            for a, b in segments(np.asarray(self.clean, bool))
        ]


def fit_accumulator(
    stretches: Sequence[Stretch],
    value_columns: Sequence[int],
    steps_per_day: float,
    false_alarms_per_day: float,
    settings: FitSettings | None = None,
) -> AccumulatorSpec:
    """The accumulator for a model whose normal validation windows score as in ``stretches``.

    Each fault-free run of windows is accumulated from zero, as after a restart; a fault
    splits a recording into such runs.
    """
    s = settings or FitSettings()
    parts = [part for stretch in stretches for part in stretch.normal_parts()]
    if not parts:
        raise ValueError("no normal windows to fit the accumulator on")
    normal = np.concatenate([scores for scores, _ in parts])
    level = float(np.quantile(normal, s.level_quantile))
    # without a cap (cap · limit only ever lowers the sum, so it cannot add alarms)
    sums = np.concatenate([cusum(scores, level, 1.0, np.inf) for scores, _ in parts])
    share = false_alarms_per_day / 2
    # a model whose normal scores never exceed the level still needs a positive limit
    limit = max(threshold_for_rate(sums, steps_per_day, share), 1e-6)
    threshold = max(threshold_for_rate(normal, steps_per_day, share), 1e-6)
    runs = []
    for column in value_columns:
        longest = 1
        for _, steps in parts:
            values = steps[:, [column]]
            start = np.zeros(1, np.int64)
            longest = max(longest, int(run_lengths(values, values[0], start).max()))
        runs.append(int(np.ceil(longest * s.run_margin)))
    return AccumulatorSpec(
        level=level,
        limit=limit * s.limit_margin,
        cap=s.cap,
        threshold=threshold,
        stuck_columns=tuple(int(c) for c in value_columns),
        stuck_runs=tuple(runs),
    )

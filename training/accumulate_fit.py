"""Fit the agent's accumulator (agent/accumulate.py) on validation normals.

The false-alarm budget is split in two: half to a per-window ``threshold`` (set like the
bundle's, on all the normal time), half to the CUSUM; a third each when the cross-sensor check
is on (``FitSettings.cross``), the last to its limit. ``level`` is an upper quantile of the
model's normal scores, so a normal window adds to the CUSUM only rarely; ``limit`` is the
lowest CUSUM whose alarms on the normal stretches (each accumulated from zero, alarms counted
as the agent raises them) stay within its half, times a margin; each sensor value column's
allowed run is its longest run of one value on the same normals, times a margin. The cross
check's linear estimates are least squares (with an intercept) on the normals' raw steps, its
spreads the residuals' standard deviations, its limit placed like the CUSUM's. The variability
check's band (``FitSettings.flat``) spans the lowest to the highest mean absolute change over its
span on the normal runs, widened by a margin. Everything is chosen on validation data only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.accumulate import (
    AccumulatorSpec,
    CrossSpec,
    FlatSpec,
    cross_design,
    cross_residuals,
    cusum,
    moving_averages,
    run_lengths,
    two_sided_cusum,
)
from agent.accumulate_flat import mean_changes
from training.forecast import threshold_for_rate

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FitSettings:
    """The knobs of the fit (chosen on tuning seeds, never on the reported ones)."""

    level_quantile: float = 0.95
    limit_margin: float = 1.5
    run_margin: float = 2.0
    cap: float = 2.0
    # the cross-sensor residual check (off: bundles carry none unless asked). Chosen on tuning
    # seeds as the best lowest recall over fault kinds among settings within the false-alarm
    # target: spans to 300 steps found more but a fault's readings then linger in the averages
    # for minutes after it and the other sensors' estimates alarm
    cross: bool = False
    cross_spans: tuple[int, ...] = (1, 10, 60, 180)
    cross_slack: float = 3.5  # residual spreads ignored per step
    cross_margin: float = 1.5
    # the variability check (off: bundles carry none unless asked): the band is the lowest
    # and highest mean absolute change over ``flat_span`` steps on the normals, each widened by
    # ``flat_margin``. Chosen on tuning seeds as the cross check was; the calm side alone found
    # no spoofing there (the generator's spoofed value is redrawn each step, rougher than the
    # process), the rough side most of it
    flat: bool = False
    flat_span: int = 600
    flat_margin: float = 1.1


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
    cross_runs: Sequence[npt.NDArray[np.floating[Any]]] | None = None,
) -> AccumulatorSpec:
    """The accumulator for a model whose normal validation windows score as in ``stretches``.

    Each fault-free run of windows is accumulated from zero, as after a restart; a fault
    splits a recording into such runs. The cross and variability checks (``settings.cross``,
    ``settings.flat``) are fitted on ``cross_runs`` (runs of consecutive normal raw steps)
    when given, else on the stretches' steps, which must then be raw.
    """
    s = settings or FitSettings()
    parts = [part for stretch in stretches for part in stretch.normal_parts()]
    if not parts:
        raise ValueError("no normal windows to fit the accumulator on")
    normal = np.concatenate([scores for scores, _ in parts])
    level = float(np.quantile(normal, s.level_quantile))
    # without a cap (cap · limit only ever lowers the sum, so it cannot add alarms)
    sums = np.concatenate([cusum(scores, level, 1.0, np.inf) for scores, _ in parts])
    share = false_alarms_per_day / (3 if s.cross else 2)
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
        cross=(
            fit_cross(
                [steps for _, steps in parts] if cross_runs is None else cross_runs,
                value_columns,
                steps_per_day,
                share,
                s,
            )
            if s.cross
            else None
        ),
        flat=_flat_spec(
            [steps for _, steps in parts] if cross_runs is None else cross_runs, value_columns, s
        )
        if s.flat
        else None,
    )


def _flat_spec(
    parts: Sequence[npt.NDArray[np.floating[Any]]], columns: Sequence[int], s: FitSettings
) -> FlatSpec:
    low, high = fit_flat(parts, columns, s)
    return FlatSpec(tuple(int(c) for c in columns), s.flat_span, low, high)


def fit_flat(
    parts: Sequence[npt.NDArray[np.floating[Any]]],
    columns: Sequence[int],
    settings: FitSettings | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per column the band (low, high) of the mean absolute change over the span.

    Each run of normal raw steps is taken from its start, as after a restart; low is the
    lowest mean over them divided by the margin (0 when a column's readings ever hold still for
    a whole span), high the highest times the margin.
    """
    s = settings or FitSettings()
    cols = list(columns)
    means = []
    for part in parts:
        values = _valid(np.asarray(part, np.float64)[:, cols])
        start = np.full(len(cols), np.nan)
        m = mean_changes(values, start, np.zeros((0, len(cols))), s.flat_span)
        means.append(m[~np.isnan(m).any(axis=1)])
    seen = np.vstack([np.zeros((0, len(cols))), *means])
    if not len(seen):
        raise ValueError("no normal run longer than the variability check's span")
    low = seen.min(axis=0) / s.flat_margin
    high = seen.max(axis=0) * s.flat_margin
    return tuple(float(v) for v in low), tuple(float(v) for v in high)


def _valid(values: F64) -> F64:
    """The rows with every value present: the agent's check skips the others."""
    return values[np.isfinite(values).all(axis=1)]


def fit_cross(
    parts: Sequence[npt.NDArray[np.floating[Any]]],
    columns: Sequence[int],
    steps_per_day: float,
    false_alarms_per_day: float,
    settings: FitSettings | None = None,
) -> CrossSpec:
    """The cross check fitted on runs of normal raw steps, each averaged from its start.

    Its limit keeps its alarms on these runs within ``false_alarms_per_day``, times a margin.
    """
    s = settings or FitSettings()
    cols = list(columns)
    spans = tuple(s.cross_spans)
    values = [_valid(np.asarray(p, np.float64)[:, cols]) for p in parts]
    averages = [moving_averages(v, v[:0], spans) for v in values]
    warm = [~np.isnan(a).any(axis=(1, 2)) for a in averages]
    if sum(int(w.sum()) for w in warm) <= len(cols) * len(spans) + 1:
        raise ValueError("too few normal steps past the warm-up to fit the cross check")
    weights = []
    for i in range(len(cols)):
        x = np.vstack([cross_design(a[w], i) for a, w in zip(averages, warm, strict=True)])
        y = np.concatenate([v[w, i] for v, w in zip(values, warm, strict=True)])
        weights.append(tuple(float(b) for b in np.linalg.lstsq(x, y, rcond=None)[0]))
    draft = CrossSpec(tuple(cols), spans, tuple(weights), (1.0,) * len(cols), s.cross_slack, 1.0)
    residuals = [cross_residuals(draft, v, v[:0]) for v in values]
    spread = np.nanstd(np.vstack(residuals), axis=0)
    spread = np.maximum(spread, 1e-9 * (1.0 + np.abs(np.vstack(values)).max(axis=0)))
    start = np.zeros((2, len(cols)))
    # without a cap, as for the CUSUM: a cap only ever lowers the sums
    sums = np.concatenate(
        [two_sided_cusum(r / spread, s.cross_slack, np.inf, start)[0] for r in residuals]
    )
    limit = max(threshold_for_rate(sums, steps_per_day, false_alarms_per_day), 1e-6)
    return CrossSpec(
        draft.columns,
        spans,
        draft.weights,
        tuple(float(v) for v in spread),
        s.cross_slack,
        limit * s.cross_margin,
    )

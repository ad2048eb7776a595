"""The accumulator's variability check: a sensor too calm (flat line) or too rough for its span.

A frozen, replaced or replayed reading can keep a plausible level while its step-to-step
changes stop looking like the sensor's: a value held with a little noise changes less than the
process ever moves it, a value drawn afresh each step around a plausible level changes more
than the process and the sensor's own noise ever do. Per watched column, the mean absolute
change between consecutive readings over the last ``span`` steps is compared with a band
(``low``, ``high``) fitted on normal data; outside it the step is anomalous. A column whose
normal readings often repeat exactly (a state, a coarse sensor) gets ``low`` 0 and only its
upper side can fire. numpy only: it runs on the gateway.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
# a column whose changes stopped entirely (low > 0, mean change 0) or overflowed to inf: a
# finite ratio far over 1, so the decision and anything published stay numbers
RATIO_CEILING = 1e6


def step_changes(values: F64, last: F64) -> tuple[F64, npt.NDArray[np.bool_]]:
    """|each row - the row before| of ``values`` (finite rows), and which rows have one.

    ``last`` (C,) is the row before these (NaN: none yet, so the first row has no change).
    """
    previous = np.vstack([last[None, :], values[:-1]]) if len(values) else values
    with np.errstate(over="ignore", invalid="ignore"):
        changes = np.abs(values - previous)
    fresh = np.logical_not(np.isnan(changes).any(axis=1))
    return np.asarray(changes[fresh], np.float64), fresh


def mean_changes(values: F64, last: F64, history: F64, span: int) -> F64:
    """(S, C): each column's mean absolute change over the ``span`` changes ending at each row.

    ``last`` (C,) is the row before these (NaN: none yet) and ``history`` the changes before
    them (the state of the previous call, at most span - 1); NaN where fewer than ``span``
    changes have been seen (the warm-up).
    """
    changes, fresh = step_changes(values, last)
    rows = np.vstack([history, changes])
    out = np.full(values.shape, np.nan)
    if len(rows) < span:
        return out
    # each window summed afresh, not as a difference of running sums: a huge change (or an
    # overflow to inf) then spoils only the windows that hold it
    windows = np.lib.stride_tricks.sliding_window_view(rows, span, axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        means = windows.sum(axis=-1) / span  # the window ending at change span - 1 + i
    ends = np.flatnonzero(fresh)  # the row each new change belongs to
    out[ends[len(ends) - len(means) :]] = means
    return out


def band_ratios(means: F64, low: F64, high: F64) -> F64:
    """(S,) per row the largest of low / mean and mean / high over columns (NaN: 0)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        calm = np.where(means > 0, low / means, np.where(low > 0, RATIO_CEILING, 0.0))
        rough = means / high
    ratios = np.nan_to_num(np.maximum(calm, rough), nan=0.0, posinf=RATIO_CEILING)
    if ratios.shape[1] == 0:
        return np.zeros(len(means), np.float64)
    return np.asarray(np.minimum(ratios.max(axis=1), RATIO_CEILING), np.float64)


class FlatCheck:
    """The variability check's running state: each watched column's last reading and changes."""

    def __init__(
        self, columns: tuple[int, ...], span: int, low: tuple[float, ...], high: tuple[float, ...]
    ) -> None:
        self._columns = np.asarray(columns, np.intp)
        self._span = span
        self._low = np.asarray(low, np.float64)
        self._high = np.asarray(high, np.float64)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen: ``span`` changes are needed again before any decision."""
        self._last = np.full(len(self._columns), np.nan)
        self._history = np.zeros((0, len(self._columns)), np.float64)
        self._ratio = 0.0

    def ratios(self, steps: npt.NDArray[np.floating[Any]]) -> F64:
        """Per step (raw values, (S, width)) how far the columns' variability is outside the band.

        A step missing any watched reading (NaN, inf) is skipped: the change is taken between
        the readings around it, and it keeps the previous step's ratio.
        """
        values = np.asarray(steps, np.float64)[:, self._columns]
        valid = np.isfinite(values).all(axis=1)
        good = values[valid]
        means = mean_changes(good, self._last, self._history, self._span)
        ratios = band_ratios(means, self._low, self._high)
        if len(good):
            changes, _ = step_changes(good, self._last)
            self._history = np.vstack([self._history, changes])[1 - self._span :]
            self._last = good[-1].copy()
        index = np.maximum.accumulate(np.where(valid, np.cumsum(valid) - 1, -1))
        before = self._ratio
        out = np.where(index >= 0, ratios[np.maximum(index, 0)] if len(ratios) else 0.0, before)
        if len(out):
            self._ratio = float(out[-1])
        return np.asarray(out, np.float64)

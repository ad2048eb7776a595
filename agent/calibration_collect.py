"""What a live calibration period keeps: a bounded reservoir of window scores (agent/site.py).

The statistics that turn them into thresholds are ``agent.calibration``'s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from agent.calibration import MAX_WINDOWS
from agent.stream_start import START_LIMIT, START_WINDOWS


class Collector:
    """Bounded memory for a calibration period: a uniform reservoir of window scores."""

    def __init__(
        self, labels: int, capacity: int = MAX_WINDOWS, seed: int = 0, max_gap_ns: int = 0
    ) -> None:
        self.capacity = capacity
        # The most one gap between two windows adds to the period (0: no bound). A live
        # source's clock is the wall clock, which NTP or an admin may step by hours or months:
        # the period counts the windows' own steps, not the distance between the first and
        # the last window (a day's step forward ended a 24-h calibration at once, one back
        # held it for as long as the step).
        self.max_gap_ns = max_gap_ns
        self._spanned_ns = 0
        self.probabilities = np.zeros((capacity, labels), np.float32)
        self.anomaly: npt.NDArray[np.floating[Any]] = np.zeros(capacity, np.float64)
        self.in_detection = np.zeros(capacity, bool)
        self.steady = np.ones(capacity, bool)  # past the stream's start period
        self.seen = 0
        # benign-model scores of the stream's start period and probabilities of its first
        # START_WINDOWS windows, by number (NaN: not seen during collection)
        self.start_anomaly = np.full(START_LIMIT, np.nan)
        self.start_probabilities = np.full((START_WINDOWS, labels), np.nan)
        self.start_ends = np.zeros(START_LIMIT, np.int64)
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._rng = np.random.default_rng(seed)

    def add(
        self,
        ends_ns: npt.NDArray[np.int64],
        probabilities: npt.NDArray[np.float64],
        anomaly: npt.NDArray[np.float64] | None,
        in_detection: npt.NDArray[np.bool_],
        numbers: npt.NDArray[np.int64] | None = None,
        early: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Windows ending at ``ends_ns``: probabilities (N, labels), raw anomaly (N,).

        ``numbers`` are the windows' numbers in the stream and ``early`` which of them are in
        its start period (None: its first ``START_WINDOWS``): they are kept apart as well, for
        the stream start's edge and quiet.
        """
        if len(ends_ns) == 0:
            return
        if anomaly is not None and np.ndim(anomaly) == 2 and self.anomaly.ndim == 1:
            # a grouped benign model: one score per group (allocated on its first windows)
            groups = int(np.shape(anomaly)[1])
            self.anomaly = np.zeros((self.capacity, groups), np.float32)  # 4 B a group
            self.start_anomaly = np.full((START_LIMIT, groups), np.nan)
        steady = np.ones(len(ends_ns), bool)
        if numbers is not None:
            at = np.asarray(numbers, np.int64)
            first = (at >= 0) & (at < START_WINDOWS)
            self.start_probabilities[at[first]] = np.asarray(probabilities, np.float64)[first]
            starting = first if early is None else np.asarray(early, bool)
            held = (at >= 0) & (at < START_LIMIT) & starting
            steady = ~starting
            if anomaly is not None:
                self.start_anomaly[at[held]] = np.asarray(anomaly, np.float64)[held]
                self.start_ends[at[held]] = np.asarray(ends_ns, np.int64)[held]
        ends = np.asarray(ends_ns, np.int64)
        gaps = np.maximum(
            np.diff(ends, prepend=ends[0] if self.last_ns is None else self.last_ns), 0
        )
        if self.max_gap_ns > 0:
            gaps = np.minimum(gaps, self.max_gap_ns)
        self._spanned_ns += int(gaps.sum())
        if self.first_ns is None:
            self.first_ns = int(ends[0])
        self.last_ns = int(ends[-1])
        for j in range(len(probabilities)):
            slot = self.seen
            if slot >= self.capacity:
                slot = int(self._rng.integers(0, self.seen + 1))
            self.seen += 1
            if slot < self.capacity:
                self.probabilities[slot] = probabilities[j]
                self.anomaly[slot] = anomaly[j] if anomaly is not None else 0.0
                self.in_detection[slot] = in_detection[j]
                self.steady[slot] = steady[j]

    @property
    def kept(self) -> int:
        """Windows held."""
        return min(self.seen, self.capacity)

    @property
    def seconds(self) -> float:
        """Traffic time spanned so far: the gaps between consecutive windows, none negative
        and each at most ``max_gap_ns``."""
        return self._spanned_ns / 1e9

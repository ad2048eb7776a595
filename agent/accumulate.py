"""Evidence accumulated across windows: a CUSUM of the anomaly score and a stuck-sensor test.

A per-window threshold must sit above every normal window, so a fault that raises the score a
little for many windows (a slow drift, a jump the forecast has caught up with) never crosses it.
The CUSUM adds each window's score over the normal ``level`` and raises while the sum is at or
above ``limit``; clipped at ``cap`` times the limit, it drains within a bounded number of normal
windows once a fault ends. A sensor whose value stays exactly the same for more steps than its
normal maximum run (``stuck_runs``) is stuck: a frozen reading can look so plausible to a
forecast that its score never rises at all.

Both feed one number per window, ``ratio`` = max(score / threshold, CUSUM / limit, run /
(max run + 1)), where ``threshold`` is a per-window one fitted with the rest, so a window loud
enough alone (a replay's splice) still alarms at once: 1.0 or more is an anomaly, and the
decision rule (k of n windows) thresholds it at 1.0. Parameters come
from a bundle's signed manifest (``extra.accumulator``), fitted on validation normals by
``training/accumulate_fit.py``; a bundle without them is thresholded per window as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
SECTION = "accumulator"
# bounds on manifest values: a limit of 1e300 or a run of 2**62 steps is no detector at all
MAX_LIMIT = 1e6
MAX_CAP = 1e3
MAX_RUN = 10_000_000
MAX_COLUMNS = 4096


class AccumulatorError(ValueError):
    """A manifest's accumulator section that cannot be run (the message names the field)."""


@dataclass(frozen=True)
class AccumulatorSpec:
    """What the accumulator subtracts, where it raises, and which columns it watches for runs."""

    level: float  # the score a normal window stays under nearly always
    limit: float  # CUSUM at which a window is anomalous
    cap: float = 2.0  # the CUSUM never exceeds cap · limit
    threshold: float = math.inf  # a window scoring this alone is anomalous (inf: none)
    stuck_columns: tuple[int, ...] = ()  # raw (unscaled) step columns watched for runs
    stuck_runs: tuple[int, ...] = ()  # per watched column, the longest normal run of one value

    def __post_init__(self) -> None:
        where = f"bundle manifest: extra.{SECTION}"
        if not (math.isfinite(self.level) and self.level >= 0):
            raise AccumulatorError(f"{where}.level: must be a finite number >= 0")
        if not (math.isfinite(self.limit) and 0 < self.limit <= MAX_LIMIT):
            raise AccumulatorError(f"{where}.limit: must be > 0 and <= {MAX_LIMIT:g}")
        if not (math.isfinite(self.cap) and 1 <= self.cap <= MAX_CAP):
            raise AccumulatorError(f"{where}.cap: must be 1..{MAX_CAP:g}")
        if not (self.threshold > 0):  # NaN fails too; inf means no per-window test
            raise AccumulatorError(f"{where}.threshold: must be > 0")
        if len(self.stuck_columns) != len(self.stuck_runs):
            raise AccumulatorError(f"{where}.stuck_runs: one per stuck column")
        if len(self.stuck_columns) > MAX_COLUMNS or len(set(self.stuck_columns)) != len(
            self.stuck_columns
        ):
            raise AccumulatorError(f"{where}.stuck_columns: at most {MAX_COLUMNS}, no repeats")
        if any(not 0 <= c < MAX_COLUMNS for c in self.stuck_columns):
            raise AccumulatorError(f"{where}.stuck_columns: column indices 0..{MAX_COLUMNS - 1}")
        if any(not 1 <= r <= MAX_RUN for r in self.stuck_runs):
            raise AccumulatorError(f"{where}.stuck_runs: run lengths 1..{MAX_RUN}")

    @classmethod
    def from_manifest(cls, section: object) -> AccumulatorSpec:
        """The spec from a manifest's ``extra.accumulator``; AccumulatorError names a bad field."""
        where = f"bundle manifest: extra.{SECTION}"
        if not isinstance(section, Mapping):
            raise AccumulatorError(f"{where}: must be a table")
        unknown = sorted(
            set(section) - {"level", "limit", "cap", "threshold", "stuck_columns", "stuck_runs"}
        )
        if unknown:
            raise AccumulatorError(f"{where}.{unknown[0]}: unknown key")
        return cls(
            level=_number(section, "level", None),
            limit=_number(section, "limit", None),
            cap=_number(section, "cap", 2.0),
            threshold=_number(section, "threshold", math.inf),
            stuck_columns=_integers(section, "stuck_columns"),
            stuck_runs=_integers(section, "stuck_runs"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``extra.accumulator`` section."""
        return {
            "level": self.level,
            "limit": self.limit,
            "cap": self.cap,
            **({"threshold": self.threshold} if math.isfinite(self.threshold) else {}),
            "stuck_columns": list(self.stuck_columns),
            "stuck_runs": list(self.stuck_runs),
        }

    def check_width(self, width: int) -> None:
        """AccumulatorError unless every watched column exists in steps ``width`` wide."""
        if any(c >= width for c in self.stuck_columns):
            raise AccumulatorError(
                f"bundle manifest: extra.{SECTION}.stuck_columns: beyond the {width} step columns"
            )


def _number(section: Mapping[str, Any], key: str, default: float | None) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AccumulatorError(f"bundle manifest: extra.{SECTION}.{key}: must be a number")
    return float(value)


def _integers(section: Mapping[str, Any], key: str) -> tuple[int, ...]:
    value = section.get(key, [])
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise AccumulatorError(f"bundle manifest: extra.{SECTION}.{key}: must be a list")
    if len(value) > MAX_COLUMNS or any(
        isinstance(v, bool) or not isinstance(v, int) for v in value
    ):
        raise AccumulatorError(f"bundle manifest: extra.{SECTION}.{key}: must be integers")
    return tuple(int(v) for v in value)


def cusum(scores: F64, level: float, limit: float, cap: float, start: float = 0.0) -> F64:
    """The CUSUM after each score: max(0, previous + score - level), at most cap · limit.

    NaN scores add nothing (a window the model could not score is no evidence either way).
    """
    steps = np.nan_to_num(np.asarray(scores, np.float64) - level, nan=0.0, posinf=cap * limit)
    out = np.empty(len(steps), np.float64)
    total = start
    ceiling = cap * limit
    # the clip makes it a recursion; telemetry windows come one a second, so a loop is cheap
    for i, step in enumerate(steps.tolist()):
        total = min(max(total + step, 0.0), ceiling)
        out[i] = total
    return out


def run_lengths(values: F64, last: F64, runs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """(S, C) length of the run of equal values ending at each step, continuing ``runs``.

    ``last`` and ``runs`` are the step before these and its runs (the state of the previous call).

    A NaN never equals anything, so it starts a new run of 1.
    """
    if len(values) == 0:
        return np.zeros((0, values.shape[1]), np.int64)
    previous = np.vstack([last[None, :], values[:-1]])
    same = values == previous
    index = np.arange(len(values))[:, None]
    # the last step at or before each one that started a new run (-1: none in this batch)
    started = np.maximum.accumulate(np.where(same, -1, index), axis=0)
    return np.where(started >= 0, index - started + 1, runs[None, :] + index + 1).astype(np.int64)


class Accumulator:
    """The running state of one slot: the CUSUM and each watched column's current run."""

    def __init__(self, spec: AccumulatorSpec) -> None:
        self.spec = spec
        self._columns = np.asarray(spec.stuck_columns, np.intp)
        self._allowed = np.asarray(spec.stuck_runs, np.float64) + 1.0
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a new bundle, a restarted stream)."""
        self.total = 0.0
        self._last = np.full(len(self._columns), np.nan)
        self._runs = np.zeros(len(self._columns), np.int64)

    def stuck(self, steps: npt.NDArray[np.floating[Any]]) -> F64:
        """Per step (raw values, (S, width)) the largest run over its column's allowed run."""
        if len(self._columns) == 0:
            return np.zeros(len(steps), np.float64)
        values = np.asarray(steps, np.float64)[:, self._columns]
        runs = run_lengths(values, self._last, self._runs)
        if len(values):
            self._last, self._runs = values[-1].copy(), runs[-1].copy()
        return np.asarray((runs / self._allowed).max(axis=1), np.float64)

    def scores(self, scores: npt.NDArray[np.floating[Any]]) -> F64:
        """Per window score, the larger of it over the threshold and the CUSUM over the limit."""
        spec = self.spec
        x = np.asarray(scores, np.float64)
        sums = cusum(x, spec.level, spec.limit, spec.cap, self.total)
        if len(sums):
            self.total = float(sums[-1])
        instant = np.nan_to_num(x / spec.threshold, nan=0.0)
        return np.asarray(np.maximum(sums / spec.limit, instant), np.float64)

    def ratios(
        self, scores: npt.NDArray[np.floating[Any]], last_steps: npt.NDArray[np.floating[Any]]
    ) -> F64:
        """One ratio per window (>= 1: anomalous) from its score and its last step's raw values."""
        return np.maximum(self.scores(scores), self.stuck(last_steps))


def spec_of(extra: Mapping[str, Any]) -> AccumulatorSpec | None:
    """A manifest's accumulator, None when its ``extra`` carries none."""
    section = extra.get(SECTION)
    return None if section is None else AccumulatorSpec.from_manifest(section)

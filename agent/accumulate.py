"""Evidence accumulated across windows: a CUSUM of the anomaly score and a stuck-sensor test.

A per-window threshold must sit above every normal window, so a fault that raises the score a
little for many windows (a slow drift, a jump the forecast has caught up with) never crosses it.
The CUSUM adds each window's score over the normal ``level`` and raises while the sum is at or
above ``limit``; clipped at ``cap`` times the limit, it drains within a bounded number of normal
windows once a fault ends. A sensor whose value stays exactly the same for more steps than its
normal maximum run (``stuck_runs``) is stuck: a frozen reading can look so plausible to a
forecast that its score never rises at all.

A fault that moves one sensor slowly (a calibration drift) or to a plausible level (a jump, a
spoofed calm value) fools a forecast of that sensor's own past, yet breaks its coupling with the
others: the optional cross check (``cross_*`` keys) estimates each watched sensor linearly from
the OTHER sensors' moving averages over a few spans and runs a two-sided CUSUM of the residual,
in units of its normal spread minus a ``cross_slack`` of spreads, against ``cross_limit``.

A plausible reading that no longer follows the process can also change too little or too much
from step to step: the optional variability check (``flat_*`` keys, agent/accumulate_flat.py)
compares each watched sensor's mean absolute change over a span with a band fitted on normals.

All feed one number per window, ``ratio`` = max(score / threshold, CUSUM / limit, run /
(max run + 1), cross CUSUM / cross limit, how far the variability is outside its band), where
``threshold`` is a per-window one fitted with the rest, so a window loud enough alone (a
replay's splice) still alarms at once: 1.0 or more is an anomaly, and the decision rule (k of
n windows) thresholds it at 1.0. Parameters come from a bundle's signed manifest
(``extra.accumulator``), fitted on validation normals by ``training/accumulate_fit.py``; a
bundle without them is thresholded per window as before.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.accumulate_flat import FlatCheck

F64 = npt.NDArray[np.float64]
SECTION = "accumulator"
# bounds on manifest values: a limit of 1e300 or a run of 2**62 steps is no detector at all
MAX_LIMIT = 1e6
MAX_CAP = 1e3
MAX_RUN = 10_000_000
MAX_COLUMNS = 4096
# the cross check's averages keep MAX_SPAN steps per sensor and its weights grow with sensors²
MAX_CROSS_COLUMNS = 64
MAX_SPANS = 8
MAX_SPAN = 3600
MAX_WEIGHT = 1e12
MAX_SLACK = 1e3
CROSS_KEYS = (
    "cross_columns",
    "cross_spans",
    "cross_weights",
    "cross_spread",
    "cross_slack",
    "cross_limit",
)
FLAT_KEYS = ("flat_columns", "flat_span", "flat_low", "flat_high")
KEYS = (
    "level",
    "limit",
    "cap",
    "threshold",
    "stuck_columns",
    "stuck_runs",
    *CROSS_KEYS,
    *FLAT_KEYS,
)


class AccumulatorError(ValueError):
    """A manifest's accumulator section that cannot be run (the message names the field)."""


WHERE = f"bundle manifest: extra.{SECTION}"


@dataclass(frozen=True)
class CrossSpec:
    """Each watched sensor estimated from the other sensors' moving averages.

    ``weights[i]`` holds, for every other column in ``columns`` order and each span in
    ``spans`` order, the weight of that column's average over that span, then the intercept.
    """

    columns: tuple[int, ...]  # raw step columns (sensor values), each estimated from the rest
    spans: tuple[int, ...]  # moving-average lengths in steps
    weights: tuple[tuple[float, ...], ...]
    spread: tuple[float, ...]  # per column, the residual's normal spread
    slack: float  # spreads of residual the CUSUM ignores per step
    limit: float  # cross CUSUM at which a step is anomalous

    def __post_init__(self) -> None:
        columns, spans = self.columns, self.spans
        if not 2 <= len(columns) <= MAX_CROSS_COLUMNS or len(set(columns)) != len(columns):
            raise AccumulatorError(
                f"{WHERE}.cross_columns: 2..{MAX_CROSS_COLUMNS} columns, no repeats"
            )
        if any(not 0 <= c < MAX_COLUMNS for c in columns):
            raise AccumulatorError(f"{WHERE}.cross_columns: column indices 0..{MAX_COLUMNS - 1}")
        if not 1 <= len(spans) <= MAX_SPANS or len(set(spans)) != len(spans):
            raise AccumulatorError(f"{WHERE}.cross_spans: 1..{MAX_SPANS} spans, no repeats")
        if any(not 1 <= k <= MAX_SPAN for k in spans):
            raise AccumulatorError(f"{WHERE}.cross_spans: spans 1..{MAX_SPAN} steps")
        width = (len(columns) - 1) * len(spans) + 1
        if len(self.weights) != len(columns) or any(len(w) != width for w in self.weights):
            raise AccumulatorError(
                f"{WHERE}.cross_weights: one row of {width} per column "
                "(other columns × spans, then the intercept)"
            )
        if not all(math.isfinite(v) and abs(v) <= MAX_WEIGHT for w in self.weights for v in w):
            raise AccumulatorError(f"{WHERE}.cross_weights: finite numbers within ±{MAX_WEIGHT:g}")
        if len(self.spread) != len(columns) or not all(
            math.isfinite(v) and 0 < v <= MAX_WEIGHT for v in self.spread
        ):
            raise AccumulatorError(f"{WHERE}.cross_spread: one number > 0 per column")
        if not (math.isfinite(self.slack) and 0 <= self.slack <= MAX_SLACK):
            raise AccumulatorError(f"{WHERE}.cross_slack: must be 0..{MAX_SLACK:g}")
        if not (math.isfinite(self.limit) and 0 < self.limit <= MAX_LIMIT):
            raise AccumulatorError(f"{WHERE}.cross_limit: must be > 0 and <= {MAX_LIMIT:g}")

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any]) -> CrossSpec | None:
        """The cross check of an accumulator section, None when it has no ``cross_*`` key."""
        if not _all_or_none(section, CROSS_KEYS):
            return None
        rows = section["cross_weights"]
        if not _is_list(rows) or len(rows) > MAX_CROSS_COLUMNS:
            raise AccumulatorError(f"{WHERE}.cross_weights: must be a list of lists")
        return cls(
            columns=_integers(section, "cross_columns"),
            spans=_integers(section, "cross_spans"),
            weights=tuple(_numbers(row, "cross_weights") for row in rows),
            spread=_numbers(section["cross_spread"], "cross_spread"),
            slack=_number(section, "cross_slack", None),
            limit=_number(section, "cross_limit", None),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``cross_*`` keys of the manifest's accumulator section."""
        return {
            "cross_columns": list(self.columns),
            "cross_spans": list(self.spans),
            "cross_weights": [list(w) for w in self.weights],
            "cross_spread": list(self.spread),
            "cross_slack": self.slack,
            "cross_limit": self.limit,
        }


@dataclass(frozen=True)
class FlatSpec:
    """The variability check: per column the band of its mean absolute change over ``span``."""

    columns: tuple[int, ...]  # raw step columns (sensor values)
    span: int  # changes averaged, in steps
    low: tuple[float, ...]  # per column, calmer than this is anomalous (0: never)
    high: tuple[float, ...]  # per column, rougher than this is anomalous

    def __post_init__(self) -> None:
        columns = self.columns
        if not 1 <= len(columns) <= MAX_CROSS_COLUMNS or len(set(columns)) != len(columns):
            raise AccumulatorError(
                f"{WHERE}.flat_columns: 1..{MAX_CROSS_COLUMNS} columns, no repeats"
            )
        if any(not 0 <= c < MAX_COLUMNS for c in columns):
            raise AccumulatorError(f"{WHERE}.flat_columns: column indices 0..{MAX_COLUMNS - 1}")
        if not 2 <= self.span <= MAX_SPAN:
            raise AccumulatorError(f"{WHERE}.flat_span: must be 2..{MAX_SPAN} steps")
        if len(self.low) != len(columns) or not all(
            math.isfinite(v) and 0 <= v <= MAX_WEIGHT for v in self.low
        ):
            raise AccumulatorError(f"{WHERE}.flat_low: one number >= 0 per column")
        if len(self.high) != len(columns) or not all(
            math.isfinite(v) and 0 < v <= MAX_WEIGHT for v in self.high
        ):
            raise AccumulatorError(f"{WHERE}.flat_high: one number > 0 per column")
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise AccumulatorError(f"{WHERE}.flat_high: must be above flat_low, column by column")

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any]) -> FlatSpec | None:
        """The variability check of an accumulator section, None when it has no ``flat_*`` key."""
        if not _all_or_none(section, FLAT_KEYS):
            return None
        span = section["flat_span"]
        if isinstance(span, bool) or not isinstance(span, int):
            raise AccumulatorError(f"{WHERE}.flat_span: must be an integer")
        return cls(
            columns=_integers(section, "flat_columns"),
            span=span,
            low=_numbers(section["flat_low"], "flat_low"),
            high=_numbers(section["flat_high"], "flat_high"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``flat_*`` keys of the manifest's accumulator section."""
        return {
            "flat_columns": list(self.columns),
            "flat_span": self.span,
            "flat_low": list(self.low),
            "flat_high": list(self.high),
        }


@dataclass(frozen=True)
class AccumulatorSpec:
    """What the accumulator subtracts, where it raises, and which columns it watches for runs."""

    level: float  # the score a normal window stays under nearly always
    limit: float  # CUSUM at which a window is anomalous
    cap: float = 2.0  # the CUSUM never exceeds cap · limit
    threshold: float = math.inf  # a window scoring this alone is anomalous (inf: none)
    stuck_columns: tuple[int, ...] = ()  # raw (unscaled) step columns watched for runs
    stuck_runs: tuple[int, ...] = ()  # per watched column, the longest normal run of one value
    cross: CrossSpec | None = None  # the cross-sensor residual check (None: off)
    flat: FlatSpec | None = None  # the variability (flat-line) check (None: off)

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
        unknown = sorted(set(section) - set(KEYS))
        if unknown:
            raise AccumulatorError(f"{where}.{unknown[0]}: unknown key")
        return cls(
            level=_number(section, "level", None),
            limit=_number(section, "limit", None),
            cap=_number(section, "cap", 2.0),
            threshold=_number(section, "threshold", math.inf),
            stuck_columns=_integers(section, "stuck_columns"),
            stuck_runs=_integers(section, "stuck_runs"),
            cross=CrossSpec.from_manifest(section),
            flat=FlatSpec.from_manifest(section),
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
            **(self.cross.to_dict() if self.cross is not None else {}),
            **(self.flat.to_dict() if self.flat is not None else {}),
        }

    def check_width(self, width: int) -> None:
        """AccumulatorError unless every watched column exists in steps ``width`` wide."""
        if any(c >= width for c in self.stuck_columns):
            raise AccumulatorError(
                f"bundle manifest: extra.{SECTION}.stuck_columns: beyond the {width} step columns"
            )
        if self.cross is not None and any(c >= width for c in self.cross.columns):
            raise AccumulatorError(f"{WHERE}.cross_columns: beyond the {width} step columns")
        if self.flat is not None and any(c >= width for c in self.flat.columns):
            raise AccumulatorError(f"{WHERE}.flat_columns: beyond the {width} step columns")


def _all_or_none(section: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Whether an optional check's keys are in ``section``: all of them, or none (False)."""
    present = [k for k in keys if k in section]
    missing = [k for k in keys if k not in section]
    if present and missing:
        raise AccumulatorError(f"{WHERE}.{missing[0]}: needed with {present[0]}")
    return bool(present)


def _number(section: Mapping[str, Any], key: str, default: float | None) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AccumulatorError(f"bundle manifest: extra.{SECTION}.{key}: must be a number")
    return float(value)


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _numbers(value: object, key: str) -> tuple[float, ...]:
    """A bounded list of numbers (the cross check's weights and spreads)."""
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise AccumulatorError(f"{WHERE}.{key}: must be a list of numbers")
    items = list(value[: MAX_CROSS_COLUMNS * MAX_SPANS + 2])  # longer than any valid row
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in items):
        raise AccumulatorError(f"{WHERE}.{key}: must be numbers")
    return tuple(float(v) for v in items)


def _integers(section: Mapping[str, Any], key: str) -> tuple[int, ...]:
    value = section.get(key, [])
    if not _is_list(value):
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


def moving_averages(values: F64, history: F64, spans: Sequence[int]) -> F64:
    """(S, C, K): each column's mean over each span ending at each row of ``values``.

    ``history`` holds the rows before these (the state of the previous call); NaN where fewer
    rows than the span have been seen (the warm-up).
    """
    rows = np.vstack([history, values])
    out = np.full((len(values), rows.shape[1], len(spans)), np.nan)
    for j, span in enumerate(spans):
        # each window summed afresh, not as a difference of running sums: a huge reading
        # (or an overflow to inf) then spoils only the windows that hold it
        first = max(len(history) - span + 1, 0)
        if len(rows) - first < span:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(rows[first:], span, axis=0)
        sums = windows.sum(axis=-1)  # the window ending at row first + span - 1 + i
        out[len(values) - len(sums) :, :, j] = sums / span
    return out


def cross_design(averages: F64, column: int) -> F64:
    """(S, (C-1)·K + 1): the other columns' averages, then a 1 for the intercept."""
    n, c, k = averages.shape
    others = np.delete(averages, column, axis=1).reshape(n, (c - 1) * k)
    return np.hstack([others, np.ones((len(averages), 1))])


def cross_residuals(spec: CrossSpec, values: F64, history: F64) -> F64:
    """(S, C) each value minus its estimate from the other columns (NaN in the warm-up)."""
    averages = moving_averages(values, history, spec.spans)
    estimates = np.stack(
        [cross_design(averages, i) @ np.asarray(w) for i, w in enumerate(spec.weights)], axis=1
    )
    return np.asarray(values - estimates, np.float64)


def two_sided_cusum(z: F64, slack: float, ceiling: float, start: F64) -> tuple[F64, F64]:
    """Per row of ``z`` (S, C) the largest CUSUM over columns and sides, and the end state.

    ``start`` (2, C) is the upward and downward sums before these rows; a NaN adds nothing.
    """
    state = start.copy()
    out = np.zeros(len(z), np.float64)
    # the clip makes it a recursion per column; a few sensors a second keep the loop cheap
    for c in range(z.shape[1]):
        up, down = float(state[0, c]), float(state[1, c])
        column = np.empty(len(z), np.float64)
        for i, x in enumerate(z[:, c].tolist()):
            if x == x:
                up = min(max(up + x - slack, 0.0), ceiling)
                down = min(max(down - x - slack, 0.0), ceiling)
            column[i] = max(up, down)
        out = np.maximum(out, column)
        state[:, c] = (up, down)
    return out, state


class CrossCheck:
    """The cross check's running state: recent sensor values and the residual CUSUMs."""

    def __init__(self, spec: CrossSpec, cap: float) -> None:
        self.spec = spec
        self._columns = np.asarray(spec.columns, np.intp)
        self._spread = np.asarray(spec.spread, np.float64)
        self._keep = max(spec.spans) - 1
        self._ceiling = cap * spec.limit
        self.reset()

    def reset(self) -> None:
        """Forget everything seen: the averages fill again before any decision."""
        self._history = np.zeros((0, len(self._columns)), np.float64)
        self._sums = np.zeros((2, len(self._columns)), np.float64)

    def ratios(self, steps: npt.NDArray[np.floating[Any]]) -> F64:
        """Per step (raw values, (S, width)) the largest residual CUSUM over the limit.

        A step missing any watched reading (NaN, inf) is skipped: it neither moves the averages
        nor the sums, and keeps the previous step's ratio.
        """
        values = np.asarray(steps, np.float64)[:, self._columns]
        valid = np.isfinite(values).all(axis=1)
        good = values[valid]
        # a huge finite reading may overflow an average to inf or NaN, which adds nothing
        with np.errstate(over="ignore", invalid="ignore"):
            z = cross_residuals(self.spec, good, self._history) / self._spread
        before = float(self._sums.max())
        sums, self._sums = two_sided_cusum(z, self.spec.slack, self._ceiling, self._sums)
        if self._keep:
            self._history = np.vstack([self._history, good])[-self._keep :]
        index = np.maximum.accumulate(np.where(valid, np.cumsum(valid) - 1, -1))
        carried = np.where(index >= 0, sums[np.maximum(index, 0)] if len(sums) else 0.0, before)
        return np.asarray(carried / self.spec.limit, np.float64)


class Accumulator:
    """The running state of one slot: the CUSUM and each watched column's current run."""

    def __init__(self, spec: AccumulatorSpec) -> None:
        self.spec = spec
        self._columns = np.asarray(spec.stuck_columns, np.intp)
        self._allowed = np.asarray(spec.stuck_runs, np.float64) + 1.0
        self._cross = CrossCheck(spec.cross, spec.cap) if spec.cross is not None else None
        flat = spec.flat
        self._flat = (
            FlatCheck(flat.columns, flat.span, flat.low, flat.high) if flat is not None else None
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (a new bundle, a restarted stream)."""
        self.total = 0.0
        if self._cross is not None:
            self._cross.reset()
        if self._flat is not None:
            self._flat.reset()
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

    def step_ratios(self, steps: npt.NDArray[np.floating[Any]]) -> F64:
        """Per step (raw values, (S, width)) the largest of the stuck run and the optional checks.

        Every step must come through here once, in order: each keeps state across calls.
        """
        out = self.stuck(steps)
        if self._cross is not None:
            out = np.maximum(out, self._cross.ratios(steps))
        if self._flat is not None:
            out = np.maximum(out, self._flat.ratios(steps))
        return np.asarray(out, np.float64)

    def scores(self, scores: npt.NDArray[np.floating[Any]]) -> F64:
        """Per window score, the larger of it over the threshold and the CUSUM over the limit."""
        spec = self.spec
        x = np.asarray(scores, np.float64)
        sums = cusum(x, spec.level, spec.limit, spec.cap, self.total)
        if len(sums):
            self.total = float(sums[-1])
        if math.isinf(spec.threshold):  # no per-window test (inf / inf would be NaN)
            instant = np.zeros(len(x), np.float64)
        else:
            instant = np.nan_to_num(x / spec.threshold, nan=0.0)
        return np.asarray(np.maximum(sums / spec.limit, instant), np.float64)

    def ratios(
        self, scores: npt.NDArray[np.floating[Any]], last_steps: npt.NDArray[np.floating[Any]]
    ) -> F64:
        """One ratio per window (>= 1: anomalous) from its score and its last step's raw values."""
        return np.maximum(self.scores(scores), self.step_ratios(last_steps))


def spec_of(extra: Mapping[str, Any]) -> AccumulatorSpec | None:
    """A manifest's accumulator, None when its ``extra`` carries none."""
    section = extra.get(SECTION)
    return None if section is None else AccumulatorSpec.from_manifest(section)

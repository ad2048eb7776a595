"""The telemetry-v1 feature set: sensor readings turned into fixed time steps.

Each configured sensor contributes three columns per step, so a model
sees a dead or frozen sensor as well as its reading:
its value forward-filled from the last real reading, the change since the previous step,
and the staleness (seconds since that reading). The agent feeds the featurizer from MQTT
sensor topics or a CSV replay; training feeds it TON_IoT / synthetic telemetry rows. Batch
and incremental use go through the same code, so both give identical steps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec

logger = logging.getLogger(__name__)

NAME = "telemetry"
VERSION = 1
SUFFIXES = ("value", "delta", "staleness_s")
# Steps without any reading emitted for one quiet stretch at most (as traffic does): a clock that
# jumps, or a recording with a gap of 1e8 s, would otherwise build one row per step of the gap
# at once (gigabytes). A longer stretch is shortened to this many, with true ``start_ns`` values.
MAX_IDLE_STEPS = 3600
# Readings beyond this magnitude are refused like NaN: no sensor reads 1e30, and a larger value
# (or the change between two of them) would overflow the float32 features to inf.
MAX_READING = 1e30


def telemetry_feature_set(sensors: Sequence[str]) -> FeatureSet:
    """The telemetry-v1 columns for these sensors, in order: value, delta, staleness each."""
    if not sensors:
        raise ValueError("telemetry needs at least one sensor")
    if len(set(sensors)) != len(sensors):
        raise ValueError(f"duplicate sensor names in {list(sensors)}")
    columns = tuple(f"{sensor}.{suffix}" for sensor in sensors for suffix in SUFFIXES)
    # Not registered by id: the columns depend on the deployment's sensors, so a bundle's
    # schema id is recomputed from its sensor list rather than looked up.
    return FeatureSet(NAME, VERSION, columns)


@dataclass(frozen=True)
class TelemetrySteps:
    """Steps produced by the featurizer: ``start_ns`` (S,) int64 and ``values`` (S, 3·sensors)."""

    start_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])

    @staticmethod
    def concat(parts: Sequence[TelemetrySteps], width: int) -> TelemetrySteps:
        """Steps of several results, in order (an empty list gives zero steps of ``width``)."""
        if not parts:
            return TelemetrySteps(np.zeros(0, np.int64), np.zeros((0, width), np.float32))
        return TelemetrySteps(
            np.concatenate([p.start_ns for p in parts]),
            np.concatenate([p.values for p in parts]),
        )


def sorted_distinct(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``np.unique(values)`` for a 1-D array, without the numpy.ma import (1.2 MB) it costs."""
    ordered = np.sort(values)
    return np.concatenate((ordered[:1], ordered[1:][ordered[1:] != ordered[:-1]]))


class TelemetryFeaturizer:
    """Turns timestamped sensor readings into telemetry-v1 steps, incrementally or in batch.

    Steps are aligned to multiples of the step size since the epoch, starting with the step
    that holds the oldest reading queued before the first ``advance``/``flush``. A step is
    emitted once ``advance(now_ns)`` passes its end; readings older than the last emitted
    step arrive too late and are counted in ``late``.
    NaN / inf readings (and any beyond ±MAX_READING) are skipped and counted in
    ``skipped_nonfinite``. A stretch of more than
    ``MAX_IDLE_STEPS`` steps without a reading is shortened to that many (their staleness still
    grows with the true time), so memory stays bounded whatever the timestamps.
    """

    def __init__(self, sensors: Sequence[str], step: StepSpec | None = None) -> None:
        self.feature_set = telemetry_feature_set(sensors)
        self.sensors = tuple(sensors)
        self.step = step if step is not None else StepSpec()
        if self.step.kind != "time":
            raise ValueError("telemetry steps must be time steps, not packet counts")
        self._size = self.step.size_ns
        self._origin: int | None = None  # start of the next step to emit
        self._last_value = np.zeros(len(self.sensors), np.float64)
        self._last_ts = np.full(len(self.sensors), -1, np.int64)  # -1: never seen
        self._stream_start = 0
        self._prev_value = np.zeros(len(self.sensors), np.float64)
        self._has_prev = np.zeros(len(self.sensors), bool)
        self._pending: list[tuple[npt.NDArray[np.int64], int, npt.NDArray[np.float64]]] = []
        self.skipped_nonfinite = 0
        self.late = 0

    def sensor_index(self, sensor: str | int) -> int:
        """Position of a sensor given by name or index; KeyError names the unknown sensor."""
        if isinstance(sensor, int):
            if not 0 <= sensor < len(self.sensors):
                raise KeyError(f"sensor index {sensor} out of range 0..{len(self.sensors) - 1}")
            return sensor
        try:
            return self.sensors.index(sensor)
        except ValueError:
            raise KeyError(f"unknown sensor {sensor!r} (known: {list(self.sensors)})") from None

    def push(
        self,
        timestamps_ns: npt.ArrayLike,
        sensor: str | int,
        values: npt.ArrayLike,
    ) -> None:
        """Queue readings of one sensor (integer-nanosecond timestamps, float values)."""
        ts = np.atleast_1d(np.asarray(timestamps_ns, dtype=np.int64))
        vals = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if ts.shape != vals.shape:
            raise ValueError(f"timestamps {ts.shape} and values {vals.shape} differ in shape")
        index = self.sensor_index(sensor)
        finite = np.isfinite(vals) & (np.abs(vals) <= MAX_READING)
        bad = int((~finite).sum())
        if bad:
            self.skipped_nonfinite += bad
            logger.debug("skipped %d non-finite readings of %s", bad, self.sensors[index])
        ts, vals = ts[finite], vals[finite]
        if ts.size == 0:
            return
        on_time = ts >= (self._origin if self._origin is not None else ts.min())
        if not on_time.all():
            self.late += int((~on_time).sum())
            ts, vals = ts[on_time], vals[on_time]
        if ts.size:
            self._pending.append((ts, index, vals))

    def advance(self, now_ns: int) -> TelemetrySteps:
        """Emit every step that ends at or before ``now_ns``."""
        if not self._start():
            return TelemetrySteps.concat([], self.feature_set.width)
        assert self._origin is not None
        count = max(0, (int(now_ns) - self._origin) // self._size)
        return self._emit(count)

    def flush(self) -> TelemetrySteps:
        """Emit every step up to the one holding the newest queued reading."""
        if not self._start() or not self._pending:
            return TelemetrySteps.concat([], self.feature_set.width)
        assert self._origin is not None
        newest = max(int(ts.max()) for ts, _, _ in self._pending)
        return self._emit((newest - self._origin) // self._size + 1)

    def _start(self) -> bool:
        """Fix the first step at the oldest queued reading; False while nothing has come."""
        if self._origin is None and self._pending:
            oldest = min(int(ts.min()) for ts, _, _ in self._pending)
            self._origin = oldest // self._size * self._size
            self._stream_start = self._origin
        return self._origin is not None

    def _emit(self, count: int) -> TelemetrySteps:
        """Build the steps of the next ``count`` (idle stretches capped); consume their readings."""
        assert self._origin is not None
        width = self.feature_set.width
        if count <= 0:
            return TelemetrySteps.concat([], width)
        horizon = self._origin + count * self._size
        starts = self._origin + self._kept_steps(count, horizon) * self._size
        ends = starts + self._size
        values = np.zeros((len(starts), width), np.float32)
        keep: list[tuple[npt.NDArray[np.int64], int, npt.NDArray[np.float64]]] = []
        for j in range(len(self.sensors)):
            ts, vals = self._take_sensor(j, horizon, keep)
            values[:, 3 * j : 3 * j + 3] = self._sensor_columns(j, ts, vals, ends)
        self._pending = keep
        self._origin = horizon
        return TelemetrySteps(starts, values)

    def _kept_steps(self, count: int, horizon: int) -> npt.NDArray[np.int64]:
        """Indexes (from the origin) of the steps to emit: every step holding a reading, and
        after each one (and after the previous emit) at most MAX_IDLE_STEPS empty ones."""
        assert self._origin is not None
        stamps = [ts[ts < horizon] for ts, _, _ in self._pending]
        occupied = sorted_distinct(
            (np.concatenate([np.zeros(0, np.int64), *stamps]) - self._origin) // self._size
        )
        anchors = np.concatenate(([-1], occupied))  # -1: the step before this emit
        following = np.append(occupied, count)
        idle = np.minimum(following - anchors - 1, MAX_IDLE_STEPS)
        lengths = 1 + idle  # each anchor, then its idle steps
        offsets = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
            np.cumsum(lengths) - lengths, lengths
        )
        kept: npt.NDArray[np.int64] = (np.repeat(anchors, lengths) + offsets)[1:]
        return kept

    def _take_sensor(
        self,
        j: int,
        horizon: int,
        keep: list[tuple[npt.NDArray[np.int64], int, npt.NDArray[np.float64]]],
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Sensor ``j``'s queued readings before ``horizon``, time-sorted; the rest stay queued."""
        chunks = [(ts, vals) for ts, index, vals in self._pending if index == j]
        if not chunks:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        ts = np.concatenate([c[0] for c in chunks])
        vals = np.concatenate([c[1] for c in chunks])
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
        inside = ts < horizon
        if not inside.all():
            keep.append((ts[~inside], j, vals[~inside]))
        return ts[inside], vals[inside]

    def _sensor_columns(
        self,
        j: int,
        ts: npt.NDArray[np.int64],
        vals: npt.NDArray[np.float64],
        ends: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.float32]:
        """Value, delta and staleness of sensor ``j`` at each step end (updates its state)."""
        last = np.searchsorted(ts, ends, side="left") - 1  # newest reading before each end
        seen = last >= 0
        pick = np.maximum(last, 0)
        value = (
            np.where(seen, vals[pick], self._last_value[j])
            if ts.size
            else np.full(len(ends), self._last_value[j])
        )
        last_ts = (
            np.where(seen, ts[pick], self._last_ts[j])
            if ts.size
            else np.full(len(ends), self._last_ts[j])
        )
        known = seen | (self._last_ts[j] >= 0)
        value = np.where(known, value, 0.0)
        previous = np.concatenate(([self._prev_value[j]], value[:-1]))
        prev_known = np.concatenate(([self._has_prev[j]], known[:-1]))
        delta = np.where(known & prev_known, value - previous, 0.0)
        since = np.where(known, last_ts, self._stream_start)
        staleness = (ends - since) / 1e9
        self._last_value[j], self._last_ts[j] = value[-1], last_ts[-1] if known[-1] else -1
        self._prev_value[j], self._has_prev[j] = value[-1], known[-1]
        return np.stack([value, delta, staleness], axis=1).astype(np.float32)


def featurize_telemetry(
    sensors: Sequence[str],
    readings: Sequence[tuple[npt.ArrayLike, str | int, npt.ArrayLike]],
    step: StepSpec | None = None,
) -> TelemetrySteps:
    """Batch form: every ``(timestamps_ns, sensor, values)`` group at once, all steps flushed."""
    featurizer = TelemetryFeaturizer(sensors, step)
    for timestamps, sensor, values in readings:
        featurizer.push(timestamps, sensor, values)
    return featurizer.flush()

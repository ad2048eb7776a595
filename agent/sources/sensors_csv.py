"""Sensor telemetry replayed from a CSV file (one row per reading time, a column per sensor).

For trying a telemetry model on recorded plant data, and for tests: the same telemetry-v1
featurizer as the live MQTT source, fed from rows instead of messages.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

import numpy as np

from agent.features.telemetry import TelemetryFeaturizer
from agent.sources import SourceStats, StepBatch, empty_batch

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig

logger = logging.getLogger(__name__)

CHUNK_ROWS = 4096


def parse_timestamp(text: str) -> int:
    """Integer ns since the epoch from Unix seconds (``1700000000.5``) or ISO 8601."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return round(moment.timestamp() * 1e9)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp {text!r} is not finite")
    return round(seconds * 1e9)


class CsvSensorSource:
    """Replays a CSV of sensor readings as telemetry-v1 steps (paced when ``realtime``)."""

    lossless = True

    def __init__(self, config: SourceConfig, agent: AgentConfig | None = None) -> None:
        from agent.config import CsvOptions

        options = config.options
        if not isinstance(options, CsvOptions):
            raise TypeError(f"{config.name}: csv source needs CsvOptions")
        self.name = config.name
        self.step = config.step_spec
        self.sensors = options.sensors
        self.timestamp = options.timestamp
        self.realtime = options.realtime
        self.speed = options.speed
        self._featurizer = TelemetryFeaturizer(self.sensors, self.step)
        self.feature_set = self._featurizer.feature_set
        self.stats = SourceStats()
        self._file: TextIO = open(options.path, newline="", encoding="utf-8")  # noqa: SIM115
        reader = csv.DictReader(self._file)
        missing = [c for c in (self.timestamp, *self.sensors) if c not in (reader.fieldnames or ())]
        if missing:
            self._file.close()
            raise ValueError(f"{options.path}: no column {missing[0]!r}")
        self._rows: Iterator[dict[str, str]] = iter(reader)
        self._finished = False
        self._first: tuple[int, float] | None = None  # (capture ns, wall monotonic) for pacing

    @property
    def finished(self) -> bool:
        """True once the last row (and the last step) has been delivered."""
        return self._finished

    def read(self, timeout: float) -> StepBatch | None:
        """Featurize the next chunk of rows; the file's end flushes the last step."""
        if self._finished:
            return None
        times: list[int] = []
        values: list[list[float]] = []
        limit = 1 if self.realtime else CHUNK_ROWS  # realtime: pace row by row
        for row in self._rows:
            parsed = self._parse(row)
            if parsed is not None:
                times.append(parsed[0])
                values.append(parsed[1])
            if len(times) >= limit:
                break
        else:
            self._finished = True
            self._file.close()
        if times:
            self._push(np.asarray(times, np.int64), np.asarray(values, np.float64))
        steps = (
            self._featurizer.flush()
            if self._finished
            else self._featurizer.advance(max(times) if times else 0)
        )
        self.stats.steps += len(steps)
        if not len(steps):
            return empty_batch(self.feature_set.width)
        return StepBatch(steps.start_ns, steps.values)

    def _parse(self, row: dict[str, str]) -> tuple[int, list[float]] | None:
        """One row's time and readings (NaN for a blank or non-numeric cell); None if unusable."""
        try:
            ts = parse_timestamp(row[self.timestamp])
        except (ValueError, TypeError):
            self.stats.malformed["bad_timestamp"] += 1
            logger.debug("bad timestamp %r", str(row.get(self.timestamp))[:40])
            return None
        readings = []
        for sensor in self.sensors:
            try:
                readings.append(float(row[sensor]))
            except (ValueError, TypeError):
                self.stats.malformed["bad_value"] += 1
                readings.append(math.nan)
        return ts, readings

    def _push(self, times: np.ndarray, values: np.ndarray) -> None:
        if self.realtime:
            self._pace(int(times[-1]))
        for j in range(len(self.sensors)):
            self._featurizer.push(times, j, values[:, j])  # NaN readings are skipped, counted
        self.stats.readings += int(np.isfinite(values).sum())

    def _pace(self, ts_ns: int) -> None:
        if self._first is None:
            self._first = (ts_ns, time.monotonic())
            return
        due = self._first[1] + (ts_ns - self._first[0]) / 1e9 / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
        self._finished = True

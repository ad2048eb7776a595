"""Sensor telemetry replayed from a CSV file (one row per reading time, a column per sensor).

For trying a telemetry model on recorded plant data, and for tests: the same telemetry-v1
featurizer as the live MQTT source, fed from rows instead of messages. The file is read as
hostile: UTF-8 with or without a BOM, LF or CRLF, lines longer than ``MAX_LINE_CHARS`` and
rows the ``csv`` module refuses are skipped and counted, timestamps outside 1970..2200 are
refused, and undecodable bytes make a cell unreadable rather than the file. A gap in time of
any size costs at most ``MAX_IDLE_STEPS`` steps (see ``agent.features.telemetry``).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

import numpy as np

from agent.features.telemetry import MAX_READING, TelemetryFeaturizer
from agent.sources import SourceStats, StepBatch, empty_batch, longest_wait_ns
from agent.sources.sensors_payload import DECIMAL

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig

logger = logging.getLogger(__name__)

CHUNK_ROWS = 4096
MAX_LINE_CHARS = 64 * 1024  # far below csv's own 128 KiB field limit, which raises instead
MAX_TIMESTAMP_S = 7_258_118_400  # 2200-01-01: int64 nanoseconds end in 2262


def parse_timestamp(text: str) -> int:
    """Integer ns since the epoch from Unix seconds (``1700000000.5``) or ISO 8601.

    ValueError for anything else, and for a time before 1970 or after 2199.
    """
    text = text.strip()
    if DECIMAL.fullmatch(text):
        seconds = float(text)
    else:
        try:
            seconds = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:  # its message would echo the whole cell
            raise ValueError(f"timestamp {text[:40]!r}: not a number or an ISO 8601 time") from None
        except (OverflowError, OSError) as exc:  # a date the platform's time_t cannot hold
            raise ValueError(f"timestamp {text[:40]!r}: {exc}") from None
    if not (math.isfinite(seconds) and 0 <= seconds < MAX_TIMESTAMP_S):
        raise ValueError(f"timestamp {text[:40]!r} is outside 1970..2199")
    return round(seconds * 1e9)


def _cell_value(text: str | None) -> float:
    """A plain decimal number, else NaN (a blank or unreadable cell is no reading)."""
    if text is None:
        return math.nan
    text = text.strip()
    if len(text) > 64 or DECIMAL.fullmatch(text) is None:
        return math.nan
    value = float(text)
    return value if math.isfinite(value) and abs(value) <= MAX_READING else math.nan


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
        # utf-8-sig drops a BOM; newline="" lets csv handle CRLF; bad bytes become U+FFFD.
        self._file: TextIO = open(  # noqa: SIM115 - closed by close() or at the file's end
            options.path, newline="", encoding="utf-8-sig", errors="replace"
        )
        self._reader = csv.reader(_bounded_lines(self._file, self.stats.malformed))
        header = next(self._safe_rows(), None) or []
        columns = {name.strip(): i for i, name in reversed(list(enumerate(header)))}
        missing = [c for c in (self.timestamp, *self.sensors) if c not in columns]
        if missing:
            self._file.close()
            raise ValueError(f"{options.path}: no column {missing[0]!r}")
        self._ts_col = columns[self.timestamp]
        self._cols = [columns[s] for s in self.sensors]
        self._rows = self._safe_rows()
        self._finished = False
        self._held: tuple[int, list[float]] | None = None  # realtime: a row not yet due
        self._first: tuple[int, float] | None = None  # (recorded ns, wall monotonic) for pacing
        self._late = 0

    @property
    def finished(self) -> bool:
        """True once the last row (and the last step) has been delivered."""
        return self._finished

    def read(self, timeout: float) -> StepBatch | None:
        """Featurize the next chunk of rows (paced when realtime); the end flushes the last step."""
        if self._finished:
            return None
        times: list[int] = []
        values: list[list[float]] = []
        ended = False
        while len(times) < (1 if self.realtime else CHUNK_ROWS):
            parsed = self._held or self._next_parsed()
            self._held = None
            if parsed is None:
                ended = True
                break
            if self.realtime and not self._due(parsed[0], timeout):
                self._held = parsed  # not due within this read: the thread stays responsive
                return None
            times.append(parsed[0])
            values.append(parsed[1])
        if times:
            self._push(np.asarray(times, np.int64), np.asarray(values, np.float64))
        if ended:
            self._finished = True
            self._file.close()
            steps = self._featurizer.flush()
        else:
            steps = self._featurizer.advance(max(times))
        self._count_late()
        self.stats.steps += len(steps)
        if not len(steps):
            return empty_batch(self.feature_set.width)
        return StepBatch(steps.start_ns, steps.values)

    def _safe_rows(self) -> Iterator[list[str]]:
        """The csv reader's rows; a row it refuses is counted and skipped, never raised."""
        while True:
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.stats.malformed["bad_row"] += 1
                logger.debug("csv row skipped: %s", exc)
                continue
            yield row

    def _next_parsed(self) -> tuple[int, list[float]] | None:
        """The next usable row's time and readings; None at the end of the file."""
        for row in self._rows:
            parsed = self._parse(row)
            if parsed is not None:
                return parsed
        return None

    def _parse(self, row: list[str]) -> tuple[int, list[float]] | None:
        """One row's time and readings (NaN for a blank or non-numeric cell); None if unusable."""
        if not any(cell.strip() for cell in row):
            return None  # a blank line
        try:
            ts = parse_timestamp(row[self._ts_col])
        except (ValueError, IndexError):
            self.stats.malformed["bad_timestamp"] += 1
            logger.debug("bad timestamp in row %r", str(row)[:80])
            return None
        readings = [_cell_value(row[c] if c < len(row) else None) for c in self._cols]
        bad = sum(
            1
            for c, v in zip(self._cols, readings, strict=True)
            if math.isnan(v) and _filled(row, c)
        )
        if bad:
            self.stats.malformed["bad_value"] += bad
        return ts, readings

    def _push(self, times: np.ndarray, values: np.ndarray) -> None:
        for j in range(len(self.sensors)):
            self._featurizer.push(times, j, values[:, j])  # NaN readings are skipped
        self.stats.readings += int(np.isfinite(values).sum())

    def _count_late(self) -> None:
        """Readings older than a step already emitted (time going backwards) are counted."""
        late = self._featurizer.late - self._late
        if late:
            self.stats.malformed["late_reading"] += late
            self._late = self._featurizer.late

    def _due(self, ts_ns: int, timeout: float) -> bool:
        """Sleep until the row is due if that is within ``timeout``; True when it is due."""
        if self._first is None:
            self._first = (ts_ns, time.monotonic())
            return True
        due = self._first[1] + (ts_ns - self._first[0]) / 1e9 / self.speed
        delay = due - time.monotonic()
        longest = longest_wait_ns(self.step) / 1e9 / self.speed
        if delay > longest:  # the pacing jumps the part of the gap no step would show
            self._first = (self._first[0], self._first[1] - (delay - longest))
            delay = longest
        if delay > timeout:
            time.sleep(max(timeout, 0.0))
            return False
        if delay > 0:
            time.sleep(delay)
        return True

    def close(self) -> None:
        """Close the file."""
        self._file.close()
        self._finished = True


def _filled(row: list[str], column: int) -> bool:
    return column < len(row) and row[column].strip() != ""


def _bounded_lines(file: TextIO, malformed: Counter[str]) -> Iterator[str]:
    """The file's lines, each at most MAX_LINE_CHARS; a longer one is skipped and counted."""
    while True:
        line = file.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        if len(line) <= MAX_LINE_CHARS:
            yield line
            continue
        malformed["line_too_long"] += 1
        while line and not line.endswith(("\n", "\r")):  # read the rest of it in bounded pieces
            line = file.readline(MAX_LINE_CHARS)

"""One progress renderer for every long ``iotids`` job (standard library only: the gateway too).

On a terminal it redraws one line in place: label, a bar when the total is known, counts, rate
and ETA. Anywhere else (a pipe, CI, journald) it logs a plain line at most every ``every_s``
seconds, so a log file gets a few readable lines instead of carriage returns. It follows the
logging level: ``iotids -q`` (warnings only) silences both, as does a library caller that never
configured logging.

The terminal's width comes from its descriptor; a pseudo-terminal that reports 0 columns (a
serial console, ``script``, ``docker exec -t``) gets 80, where a width-0 bar would draw nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import TextIO

logger = logging.getLogger(__name__)

DEFAULT_COLUMNS = 80
REDRAW_S = 0.1  # a terminal redraw at most ten times a second: drawing must not cost the job
BAR_CELLS = 24
MIN_BAR_CELLS = 8


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (a redrawn line renders, not piles up)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def columns(stream: TextIO) -> int:
    """The terminal's width: ``$COLUMNS``, else the descriptor's, else DEFAULT_COLUMNS."""
    try:
        wanted = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    try:
        width = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no descriptor (a test's stream)
        width = 0
    return width if width > 0 else DEFAULT_COLUMNS


def _count(value: float, unit: str, named: bool = True) -> str:
    """``12.5 MiB`` for bytes, ``1,200 packets`` otherwise; ``named=False`` drops the unit."""
    text = f"{value / 2**20:,.1f} MiB" if unit == "B" else f"{value:,.0f} {unit}"
    return (text if named else text.split(" ")[0]).rstrip()


def _rate(per_s: float, unit: str) -> str:
    """``1,200 packets/s``, or ``42.0 s/epoch`` when one takes longer than a second."""
    if 0 < per_s < 1:
        return f"{1 / per_s:.1f} s/{unit.removesuffix('s') or 'item'}"
    return f"{_count(per_s, unit)}/s"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class _ClearsBar(logging.Filter):
    """On the handlers writing to a bar's terminal: a log record first blanks the bar's line,
    so the record starts at column 0; the bar redraws below it at its next update."""

    def __init__(self, bar: Progress) -> None:
        super().__init__()
        self.bar = bar

    def filter(self, record: logging.LogRecord) -> bool:
        self.bar.clear()
        return True


class Progress:
    """Progress of one job: ``update`` as it goes, ``close`` (or ``with``) at the end."""

    def __init__(
        self,
        label: str,
        total: float | None = None,
        unit: str = "",
        *,
        stream: TextIO | None = None,
        every_s: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total if total is not None and total > 0 else None
        self.unit = unit
        self.done = 0.0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._every = every_s
        self._began = self._shown = time.monotonic()
        self._on = logger.isEnabledFor(logging.INFO)
        self._terminal = self._on and is_terminal(self._stream)
        self._drawn = False
        self._logged: float | None = None  # the count last logged
        self._closed = False
        self._filter = _ClearsBar(self)
        self._handlers: list[logging.Handler] = []
        if self._terminal:
            self._handlers = [
                h
                for h in logging.getLogger().handlers
                if getattr(h, "stream", None) is self._stream
            ]
            for handler in self._handlers:
                handler.addFilter(self._filter)
            self._draw(self._began)  # at once: the first step may take minutes (an epoch)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, done: float | None = None, *, advance: float = 0.0, note: str = "") -> None:
        """Set the count (``done``) or add to it (``advance``); ``note`` is shown after it."""
        self.done = done if done is not None else self.done + advance
        if note:
            self.note = note
        if not self._on:
            return
        now = time.monotonic()
        if self._terminal:
            if now - self._shown >= REDRAW_S or not self._drawn:
                self._draw(now)
        elif now - self._shown >= self._every:
            self._log(now)

    def close(self) -> None:
        """The final state: the bar's last draw and its newline, or a last line in a log that
        already had some (a job too short for a line stays silent)."""
        if self._closed:
            return
        self._closed = True
        for handler in self._handlers:
            handler.removeFilter(self._filter)
        if self._terminal:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()
        elif self._on and self._logged not in (None, self.done):
            self._log(time.monotonic())

    def clear(self) -> None:
        """Blank the bar's line (a log record is about to be written there)."""
        if self._terminal and self._drawn and not self._closed:
            self._stream.write("\r" + " " * (columns(self._stream) - 1) + "\r")
            self._drawn = False  # the next update draws again at once

    def line(self, now: float, width: int = 0) -> str:
        """The text shown: ``label: [bar] pct done/total unit, rate, ETA; note``.

        With ``width`` (a terminal), the bar takes what the counts leave of it, up to BAR_CELLS
        and none under MIN_BAR_CELLS (the counts matter more); the note is cut at the edge.
        """
        elapsed = max(now - self._began, 1e-9)
        rate = self.done / elapsed
        parts = []
        if self.total is not None:
            parts.append(f"{min(self.done / self.total, 1.0) * 100:3.0f}%")
            parts.append(f"{_count(self.done, self.unit, False)}/{_count(self.total, self.unit)},")
        else:
            parts.append(f"{_count(self.done, self.unit)},")
        if rate > 0:
            parts.append(_rate(rate, self.unit) + ",")
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        else:
            parts.append(_clock(elapsed))
        counts = " ".join(parts)
        text = counts + (f"; {self.note}" if self.note else "")
        cells = min(BAR_CELLS, width - len(self.label) - len(counts) - 5)
        if self.total is None or cells < MIN_BAR_CELLS:
            return f"{self.label}: {text}"
        filled = int(min(self.done / self.total, 1.0) * cells)
        return f"{self.label}: [{'#' * filled}{'-' * (cells - filled)}] {text}"

    def _draw(self, now: float) -> None:
        self._shown = now
        self._drawn = True
        width = columns(self._stream) - 1  # the last column would wrap on some terminals
        text = self.line(now, width)[:width]
        self._stream.write("\r" + text.ljust(width))
        self._stream.flush()

    def _log(self, now: float) -> None:
        self._shown = now
        self._logged = self.done
        logger.info("%s", self.line(now))

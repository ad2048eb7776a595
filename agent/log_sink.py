"""The agent's log: lines go through a bounded queue to one writer thread.

A stderr nobody drains (a paused terminal, a pipe whose reader stopped reading) must not stall
the agent: a blocking write would hold every thread that logs, paho's network thread included,
and with it all delivery. Lines beyond the queue's room are dropped and counted, and the count
is logged once there is room again.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from typing import Final, TextIO

from agent.printable import printable

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ROOM: Final = 10_000  # lines; a few MB at most


class _DroppingHandler(logging.Handler):
    """Formats in the caller's thread and hands the line over without ever blocking."""

    def __init__(self, lines: queue.Queue[str | None]) -> None:
        super().__init__()
        self.lines = lines
        self.dropped = 0
        self._reported = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a bad log call must not reach the caller
            self.handleError(record)
            return
        try:
            if self.dropped > self._reported:
                self.lines.put_nowait(
                    f"log: {self.dropped - self._reported} lines dropped (stderr not read)\n"
                )
                self._reported = self.dropped
            self.lines.put_nowait(line)
        except queue.Full:
            self.dropped += 1


class _OneLineFormatter(logging.Formatter):
    """A message is one line of printable text: a logged value from the network (a topic, a
    pushed bundle's claimed key) could otherwise forge a line in journald or act on a terminal.
    A traceback, appended after the message, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


_active: queue.Queue[str | None] | None = None  # the queue configure_logging set up


def _write(lines: queue.Queue[str | None], stream: TextIO) -> None:
    while (line := lines.get()) is not None:
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: nothing left to tell
            pass
        lines.task_done()


def drain(timeout: float = 2.0) -> bool:
    """Wait until every line queued so far is written (a command's last words come after its
    log), at most ``timeout`` s: a stderr that never drains cannot hold the caller. True when
    drained (or nothing is queued through here)."""
    lines = _active
    if lines is None:
        return True
    deadline = time.monotonic() + timeout
    while lines.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.002)
    return not lines.unfinished_tasks


def configure_logging(level: int) -> None:
    """As ``logging.basicConfig``, through the queue; a no-op when the root has handlers."""
    root = logging.getLogger()
    if root.handlers:
        return
    lines: queue.Queue[str | None] = queue.Queue(ROOM)
    handler = _DroppingHandler(lines)
    handler.setFormatter(_OneLineFormatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    global _active
    _active = lines
    writer = threading.Thread(target=_write, args=(lines, sys.stderr), name="log", daemon=True)
    writer.start()

    def flush() -> None:
        # what is queued is written at exit, but a stderr that never drains cannot hold it up
        try:
            lines.put_nowait(None)
        except queue.Full:
            return
        writer.join(timeout=2.0)

    atexit.register(flush)

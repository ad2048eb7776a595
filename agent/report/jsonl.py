"""A sink that writes events as JSON lines (``iotids agent replay --json``: no broker needed).

Each line is the same ``iotids.event/1`` payload the MQTT sink publishes (``schema``,
``device``, ``time``, ``id``, ``active_events`` ...), built by the same function. A replay
stamps ``time`` with the window's end on the capture's clock, so every time in its events
(``start``, ``window_end``, ``end``, ``time``) is capture time.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from typing import TextIO

from agent.report.detections import Detections, event_payload

logger = logging.getLogger(__name__)


class JsonLinesSink:
    """One JSON object per line on a text stream; stats and model state only when asked."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        stats: bool = False,
        models: bool = False,
        device: str = "replay",
        capture_clock: bool = True,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self._device = device
        self._capture_clock = capture_clock
        self._detections = Detections({}, None)
        self._stats = stats
        self._models = models
        self._lock = threading.Lock()
        self.written = 0

    def start(self) -> None:
        """Nothing to connect."""

    def publish_event(self, event: Mapping[str, object]) -> None:
        """Write a detection event as its ``iotids.event/1`` payload."""
        end = event.get("window_end")
        now = float(end) if self._capture_clock and isinstance(end, int | float) else None
        with self._lock:
            payload = event_payload(event, self._device, self._detections, now)[0]
        self._write(payload)

    def publish_stats(self, stats: Mapping[str, object]) -> None:
        """Write stats when this sink was asked to."""
        if self._stats:
            self._write({"stats": dict(stats)})

    def publish_model(self, state: Mapping[str, object]) -> None:
        """Write model state when this sink was asked to."""
        if self._models:
            self._write({"model": dict(state)})

    def close(self) -> None:
        """Flush the stream (it belongs to the caller)."""
        try:
            self._stream.flush()
        except (OSError, ValueError):
            logger.debug("jsonl sink: flush failed on close")

    def _write(self, payload: Mapping[str, object]) -> None:
        line = json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self.written += 1

"""A sink that keeps what it is given in memory: the fake tests and offline replays use first."""

from __future__ import annotations

import threading
from collections.abc import Mapping


class MemorySink:
    """Records every published payload (copied) in order; thread-safe, never blocks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[dict[str, object]] = []
        self.stats: list[dict[str, object]] = []
        self.models: list[dict[str, object]] = []
        self.started = False
        self.closed = False

    def start(self) -> None:
        """Mark the sink started."""
        self.started = True

    def publish_event(self, event: Mapping[str, object]) -> None:
        """Record a detection event."""
        with self._lock:
            self.events.append(dict(event))

    def publish_stats(self, stats: Mapping[str, object]) -> None:
        """Record a stats payload."""
        with self._lock:
            self.stats.append(dict(stats))

    def publish_model(self, state: Mapping[str, object]) -> None:
        """Record a model state payload (the last one is what a retained topic would hold)."""
        with self._lock:
            self.models.append(dict(state))

    def close(self) -> None:
        """Mark the sink closed."""
        self.closed = True

"""What happens to one batch of steps: every model slot on its source scores it, sinks hear.

Shared by the running agent (one inference thread) and the offline replay (one thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.decide import Event
from agent.inference import ModelSlot
from agent.report import Sink
from agent.sources import StepBatch

logger = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """What happens to one batch of steps: every model on that source scores it, sinks hear."""

    slots: dict[str, list[ModelSlot]]
    sinks: Sequence[Sink]
    sink_failures: dict[int, int] = field(default_factory=dict)
    events: int = 0
    windows_seen: int = 0
    windows_scored: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def process(self, source: str, batch: StepBatch, sample: int = 1) -> list[Event]:
        """Score ``batch`` with every slot on ``source``; publishes and returns the events."""
        events: list[Event] = []
        with self._lock:  # slots are not thread-safe; one inference thread normally owns them
            for slot in self.slots.get(source, ()):
                seen, scored = slot.windows_seen, slot.windows_scored
                events += slot.push(batch, sample)
                self.windows_seen += slot.windows_seen - seen
                self.windows_scored += slot.windows_scored - scored
        self.publish(events)
        return events

    def finish(self, time_ns: int | None = None) -> list[Event]:
        """End every open detection (shutdown or end of a replay) and publish the ends."""
        with self._lock:
            events = [e for slots in self.slots.values() for s in slots for e in s.close(time_ns)]
        self.publish(events)
        return events

    def publish(self, events: Iterable[Event]) -> None:
        """Hand events to every sink; a failing sink is logged and counted, never fatal."""
        for event in events:
            self.events += 1
            payload = event.to_dict()

            def send(sink: Sink, p: Mapping[str, object] = payload) -> None:
                sink.publish_event(p)

            self._each_sink(send)

    def publish_stats(self, stats: Mapping[str, object]) -> None:
        """Stats to every sink."""
        self._each_sink(lambda sink: sink.publish_stats(stats))

    def publish_model(self, state: Mapping[str, object]) -> None:
        """Model state to every sink."""
        self._each_sink(lambda sink: sink.publish_model(state))

    def _each_sink(self, call: Callable[[Sink], None]) -> None:
        for index, sink in enumerate(self.sinks):
            try:
                call(sink)
            except Exception:
                self.sink_failures[index] = self.sink_failures.get(index, 0) + 1
                logger.exception("sink %s failed", type(sink).__name__)

    @property
    def active_models(self) -> dict[str, str]:
        """Slot name -> bundle id."""
        return {s.name: s.bundle_id for slots in self.slots.values() for s in slots}

    def slot_list(self) -> list[ModelSlot]:
        return [s for slots in self.slots.values() for s in slots]

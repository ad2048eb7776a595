"""Which agent events count as alarms for an attack: new detections and relabelled ones."""

from __future__ import annotations

from agent.decide import Event
from training.events import alarm_events


def _event(kind: str, ident: str, label: str, t: int) -> Event:
    return Event(kind, ident, "m", "s", label, label, 0, t, 0.9, 0.9, 1)  # type: ignore[arg-type]


def test_new_and_relabelling_updates_are_alarms_plain_updates_are_not() -> None:
    events = [
        _event("new", "a", "syn_flood", 1),
        _event("update", "a", "syn_flood", 2),  # same attack goes on
        _event("update", "a", "udp_flood", 3),  # the open detection now reports another attack
        _event("update", "a", "udp_flood", 4),
        _event("end", "a", "udp_flood", 5),
        _event("new", "b", "scan", 6),
    ]
    assert [(e.kind, e.time_ns) for e in alarm_events(events)] == [
        ("new", 1),
        ("update", 3),
        ("new", 6),
    ]

"""From one MQTT message to one store row, or to the reason it was skipped.

Reading the payload is the contract's job (``agent.contract``: topics, size cap, JSON object,
schema name and major version, event id and type, de-duplication); this module only adds
what a database needs on top: bounded identifiers, finite numbers, no NUL characters
(PostgreSQL refuses them in text and JSONB, and a message the database refuses would be
redelivered forever), and the device in the payload matching the topic's (a gateway's broker
ACL covers its topic, not what it writes inside).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from agent.contract import (
    EVENT_SCHEMA,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    STATS_SCHEMA,
    Deduplicator,
    decode,
    event_key,
    incident_of,
    parse_status,
    schema_matches,
    split_topic,
)
from console.collector.store import EventRow, Row, StatsRow, StatusRow

CONSUMED: Final = ("events", "stats", "status")
# Figures from a stats payload kept as per-gateway gauges (metric key -> payload key path).
STATS_GAUGES: Final[Mapping[str, tuple[str, ...]]] = {
    "packets_per_s": ("packets_per_s",),
    "cpu_percent": ("cpu_percent",),
    "rss_bytes": ("rss_bytes",),
    "latency_ms_p99": ("latency_ms_p99",),
    "outbox_depth": ("outbox", "depth"),
}


@dataclass(frozen=True)
class Bad:
    """A message skipped: which topic kind and why (the reason becomes a metric label)."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Parsed:
    """A message ready to store, with the gauges it updates."""

    row: Row
    gauges: Mapping[str, float]


def _number(value: object) -> float | None:
    """A finite real number (bools are not numbers here), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _text(value: object, limit: int) -> str:
    """A string field, cut to ``limit`` characters; anything else becomes ''."""
    return value[:limit] if isinstance(value, str) else ""


def _json_text(body: Mapping[str, Any]) -> str | None:
    """The payload re-encoded as strict JSON (no NaN, no NUL), or None when it cannot be."""
    try:
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):
        return None
    return None if "\\u0000" in text else text


class Parser:
    """Turns messages under ``prefix`` into rows; remembers recent event ids (bounded)."""

    def __init__(self, prefix: str, seen: Deduplicator | None = None) -> None:
        self.prefix = prefix
        self.seen = seen if seen is not None else Deduplicator()

    def parse(self, topic: str, payload: bytes, now: float) -> Parsed | Bad:
        """The row for one message, or why it was skipped."""
        parts = split_topic(self.prefix, topic, CONSUMED)
        if parts is None:
            return Bad("other", "unexpected topic")
        device, kind = parts
        if len(device) > MAX_ID_CHARS or "\x00" in device:
            return Bad(kind, "device id")
        if kind == "status":
            status = parse_status(payload)
            if status not in ("online", "offline"):
                return Bad(kind, "status value")
            return Parsed(StatusRow(device, status, now), {})
        body = decode(payload)
        if body is None:
            return Bad(kind, "not a JSON object")
        if not schema_matches(body, EVENT_SCHEMA if kind == "events" else STATS_SCHEMA):
            return Bad(kind, "schema")
        if body.get("device", device) != device:
            return Bad(kind, "device differs from topic")
        stamp = _number(body.get("time"))
        if stamp is None:
            return Bad(kind, "time")
        text = _json_text(body)
        if text is None:
            return Bad(kind, "not storable JSON")
        if kind == "stats":
            return Parsed(StatsRow(device, stamp, now, text), _stats_gauges(body))
        return self._event(device, body, stamp, now, text)

    def _event(
        self, device: str, body: Mapping[str, Any], stamp: float, now: float, text: str
    ) -> Parsed | Bad:
        key = event_key(body)
        if key is None:
            return Bad("events", "id or type")
        event_id, event_type = key
        if len(event_id) > MAX_ID_CHARS:
            return Bad("events", "id too long")
        row = EventRow(
            id=event_id,
            device=device,
            type=event_type,
            detection=_text(body.get("detection"), MAX_ID_CHARS),
            incident=incident_of(body, MAX_ID_CHARS),
            label=_text(body.get("label"), MAX_NAME_CHARS),
            category=_text(body.get("category"), MAX_NAME_CHARS),
            score=_number(body.get("score")),
            time=stamp,
            received=now,
            payload=text,
        )
        active = _number(body.get("active_events"))
        return Parsed(row, {} if active is None else {"active_events": active})

    def first_time(self, event_id: str) -> bool:
        """False when this id was handled recently (the store's key is the real guarantee)."""
        return self.seen.first_time(event_id)


def _stats_gauges(body: Mapping[str, Any]) -> dict[str, float]:
    gauges: dict[str, float] = {}
    for name, path in STATS_GAUGES.items():
        value: object = body
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        number = _number(value)
        if number is not None:
            gauges[name] = number
    return gauges

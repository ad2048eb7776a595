"""Which detections are open, and the retained state that tells Home Assistant so.

The MQTT sink keeps one :class:`Detections` per device. It mirrors what the outbox persists
beside its queue (the last event of every open detection, and the last event of all), so that:

* the ``active_events`` of each event counts the detections open after it, across restarts;
* an agent that died with detections open (SIGKILL, power loss, OOM) closes them when it starts
  again, with an ``end`` whose ``end_reason`` is ``"agent-restart"``: the decider's windows are
  gone with the process, so the detection cannot be resumed honestly; if the attack goes on, the
  new process raises a new detection;
* the retained ``<p>/<d>/state`` payload (``iotids.state/1``) always reflects the open
  detections and the last attack, for consumers that subscribe late (Home Assistant after a
  restart reads it from the broker).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

from agent.contract import EVENT_SCHEMA, STATE_SCHEMA, stamp

logger = logging.getLogger(__name__)

RESTART_REASON: Final = "agent-restart"
# What an event contributes to the state payload (``labels`` and ``end_reason`` when present);
# ``category`` is the attack family.
_SUMMARY_KEYS: Final = (
    "detection",
    "incident",
    "recurrence",
    "type",
    "label",
    "category",
    "labels",
    "score",
    "peak_score",
    "threshold",
    "score_ratio",
    "peak_ratio",
    "model",
    "source",
    "start",
    "window_end",
    "end",
    "end_reason",
    "evidence",
)


def _decode(raw: bytes) -> dict[str, Any] | None:
    """A stored event payload, or None when it is not a JSON object (logged, skipped)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        logger.warning("detections: skipped an unreadable stored event (%d bytes)", len(raw))
        return None
    return value


def summary(event: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an event the state payload carries."""
    return {key: event[key] for key in _SUMMARY_KEYS if key in event}


class Detections:
    """Open detections by id and the last event; thread-safe."""

    def __init__(self, opened: Mapping[str, bytes], last: bytes | None) -> None:
        self._open: dict[str, dict[str, Any]] = {}
        for key, raw in opened.items():
            event = _decode(raw)
            if event is not None:
                self._open[key] = event
        self._last = _decode(last) if last is not None else None
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """How many detections are open."""
        with self._lock:
            return len(self._open)

    def record(self, key: str, event: dict[str, Any], opened: bool) -> int:
        """Note one event of detection ``key`` (``opened``: new/update); detections open after."""
        with self._lock:
            if opened:
                self._open[key] = event
            else:
                self._open.pop(key, None)
            self._last = event
            return len(self._open)

    def restart_ends(self) -> list[dict[str, Any]]:
        """``end`` events for the detections a previous process left open, oldest start first.

        Each repeats the detection's last known event, with ``type`` ``end``, ``end`` at the
        last moment the detection was seen active (its last ``window_end``, on the detection's
        own clock) and ``end_reason`` ``agent-restart``. ``id``, ``time`` and
        ``active_events`` are left for the sink to set.
        """
        with self._lock:
            stale = sorted(self._open.items(), key=lambda item: _number(item[1].get("start")))
        ends = []
        for key, last in stale:
            end = {k: v for k, v in last.items() if k not in ("id", "time", "active_events")}
            seen = last.get("window_end", last.get("start"))
            end.update(type="end", detection=key, end=seen, end_reason=RESTART_REASON)
            ends.append(end)
        return ends

    def state(self) -> dict[str, Any]:
        """The ``iotids.state/1`` body (the sink adds ``schema``, ``device`` and ``time``)."""
        with self._lock:
            detections = [summary(e) for e in self._open.values()]
            last = None if self._last is None else summary(self._last)
        detections.sort(key=lambda d: _number(d.get("start")))
        return {
            "schema": STATE_SCHEMA,
            "active_events": len(detections),
            "detections": detections,
            "last_attack": last,
        }


def _number(value: object) -> float:
    """A sortable number from a JSON value (missing or odd values sort first)."""
    return float(value) if isinstance(value, int | float) else float("-inf")


def event_payload(
    event: Mapping[str, object], device: str, detections: Detections, now: float | None = None
) -> tuple[dict[str, Any], str, bool | None]:
    """The ``iotids.event/1`` payload of one event, as every sink publishes it.

    Stamps it, gives it an ``id``, records it in ``detections`` and sets ``active_events`` to
    the detections open after it. Returns the payload, its detection key, and whether it
    leaves that detection open (None: not a lifecycle step, nothing recorded). Callers that
    need the count consistent with their own queue hold their lock around this call.
    """
    payload = stamp(event, EVENT_SCHEMA, device, time.time() if now is None else now)
    payload.setdefault("id", uuid.uuid4().hex)
    event_type = str(payload.get("type", ""))
    key = str(payload.get("detection", payload["id"]))
    opened: bool | None = event_type in ("new", "update")
    if opened or event_type == "end":
        active = detections.record(key, payload, bool(opened))
    else:
        opened = None
        active = detections.active
    payload.setdefault("active_events", active)
    return payload, key, opened

"""The MQTT contract between a gateway and its operators, written down once.

The sink (``agent.report.mqtt``), the sensor source, the operator console (monitor, demo view,
collector) and the test helpers all take topic names, schema names and payload handling from
here, so a change to the contract is one edit that every side sees.

Topics, with ``<p>`` = ``mqtt.topic_prefix`` (default ``iotids``) and ``<d>`` = the device id:

==========================  =========  ==============  ==========================================
topic                       direction  QoS / retain    payload
==========================  =========  ==============  ==========================================
``<p>/<d>/status``          agent ->   1, retained     ``online`` after a successful CONNACK;
                                                       ``offline`` as last will and on shutdown
``<p>/<d>/events``          agent ->   1               event JSON (``iotids.event/1``)
``<p>/<d>/stats``           agent ->   ``stats_qos``   stats JSON (``iotids.stats/1``)
``<p>/<d>/model``           agent ->   1, retained     model JSON (``iotids.model/1``)
``<p>/<d>/state``           agent ->   1, retained     state JSON (``iotids.state/1``)
``<p>/<d>/model/set``       -> agent   1               a bundle (raw bytes); the agent verifies it
``<discovery>/...``         agent ->   1, retained     Home Assistant discovery
                                                       (``agent.report.homeassistant``)
==========================  =========  ==============  ==========================================

Every JSON payload is an object carrying ``schema`` (name and major version: a consumer checks
both before reading further), ``device`` and ``time`` (Unix seconds when it was queued). Events
carry an ``id`` unique per message: QoS 1 is at-least-once and the outbox replays after a crash,
so consumers drop repeats by it (:class:`Deduplicator`). The full key list of each payload is in
``agent.report.mqtt`` (what the sink adds) and the README's "MQTT contract".
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent import json_bounded

DEFAULT_PREFIX: Final = "iotids"

EVENT_SCHEMA: Final = "iotids.event/1"
STATS_SCHEMA: Final = "iotids.stats/1"
MODEL_SCHEMA: Final = "iotids.model/1"
STATE_SCHEMA: Final = "iotids.state/1"
SCHEMAS: Final = (EVENT_SCHEMA, STATS_SCHEMA, MODEL_SCHEMA, STATE_SCHEMA)
# the model topic's ``kernels``: what runs the model on the gateway (agent.runtime picks one)
KERNELS: Final = ("xnnpack", "builtin")

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"

EVENT_TYPES: Final = ("new", "update", "end")

Kind = Literal["status", "events", "stats", "model", "state"]
# What a gateway publishes under its device topic (``model/set`` is the one it listens on).
PUBLISHED_KINDS: Final[tuple[Kind, ...]] = ("status", "events", "stats", "model", "state")

# A payload larger than this is not something the agent sends: refuse to parse it rather than
# let a hostile publisher make a consumer build a huge object.
MAX_PAYLOAD_BYTES: Final = 1 << 20
# Bounded memory for de-duplication: far more ids than a fleet sends between two replays.
SEEN_IDS: Final = 50_000
# What a consumer keeps of a publisher's strings: ids (device, event, detection, incident) and
# names (labels, categories). The agent's own are far shorter; a consumer refuses or cuts longer
# ones, so one payload cannot make it hold (or remember SEEN_IDS times) a megabyte.
MAX_ID_CHARS: Final = 128
MAX_NAME_CHARS: Final = 200
# Gateways a consumer keeps apart: far more than a fleet, few enough that a publisher inventing
# device ids (a broker without ACLs) cannot grow its memory without bound.
MAX_GATEWAYS: Final = 20_000


@dataclass(frozen=True)
class Topics:
    """One device's topics under a prefix."""

    status: str
    events: str
    stats: str
    model: str
    model_set: str
    state: str

    @classmethod
    def for_device(cls, prefix: str, device_id: str) -> Topics:
        """The topics of ``device_id`` under ``prefix``."""
        base = f"{prefix.rstrip('/')}/{device_id}"
        return cls(
            f"{base}/status",
            f"{base}/events",
            f"{base}/stats",
            f"{base}/model",
            f"{base}/model/set",
            f"{base}/state",
        )


def fleet_filters(
    prefix: str, kinds: Iterable[Kind] = PUBLISHED_KINDS, share: str | None = None
) -> list[str]:
    """Topic filters for ``kinds`` of every device under ``prefix``.

    With ``share`` each filter is an MQTT 5 shared subscription (``$share/<group>/...``): the
    broker hands each message to one member of the group, so several consumers split a fleet.
    """
    head = f"$share/{share}/" if share else ""
    return [f"{head}{prefix.rstrip('/')}/+/{kind}" for kind in kinds]


def split_topic(
    prefix: str, topic: str, kinds: Iterable[str] = PUBLISHED_KINDS
) -> tuple[str, str] | None:
    """``(device, kind)`` of a gateway topic under ``prefix``; None for anything else."""
    head = f"{prefix.rstrip('/')}/"
    if not topic.startswith(head):
        return None
    device, _, kind = topic[len(head) :].partition("/")
    if not device or kind not in kinds:
        return None
    return device, kind


def valid_prefix(prefix: str) -> bool:
    """True for a plain topic prefix (no wildcards, not empty)."""
    return bool(prefix.strip("/")) and not any(c in prefix for c in "+#")


def valid_share(group: str) -> bool:
    """True for a shared-subscription group name (MQTT 5: no ``/``, ``+`` or ``#``)."""
    return bool(group) and not any(c in group for c in "/+#")


# --- payloads -------------------------------------------------------------------------------


def stamp(data: Mapping[str, object], schema: str, device: str, now: float) -> dict[str, object]:
    """A copy of ``data`` with the ``schema``, ``device`` and ``time`` keys the contract promises.

    Keys the caller already set win: a replayed payload keeps its original time.
    """
    payload = dict(data)
    payload.setdefault("schema", schema)
    payload.setdefault("device", device)
    payload.setdefault("time", now)
    return payload


def _jsonable(value: object) -> object:
    """Make numpy scalars/arrays and other odd values JSON-serialisable without importing numpy."""
    for method in ("tolist", "item"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    return str(value)


def encode(payload: Mapping[str, object]) -> bytes:
    """Compact JSON bytes for one payload."""
    return json.dumps(payload, separators=(",", ":"), default=_jsonable).encode()


def decode(payload: bytes) -> dict[str, Any] | None:
    """A JSON object payload, or None for anything else (too big, not JSON, not an object).

    Also None for what JSON allows and no reader downstream survives: an integer wider than an
    int64 (no float holds it) and a lone surrogate escape such as ``"\\ud800"`` (a str that
    cannot be written as UTF-8 to a database, a terminal or a log).
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        body = json_bounded.loads(payload)
        if isinstance(body, dict) and b"\\u" in payload:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def schema_matches(body: Mapping[str, Any], expected: str) -> bool:
    """True when ``body`` names ``expected``'s schema with the same major version.

    A payload without a ``schema`` key passes: publishers older than the key still speak it.
    """
    found = body.get("schema")
    if found is None:
        return True
    if not isinstance(found, str):
        return False
    name, _, major = expected.partition("/")
    found_name, _, found_version = found.partition("/")
    return found_name == name and found_version.split(".")[0] == major


def parse_status(payload: bytes) -> str:
    """The availability string of a status payload (``online`` / ``offline`` / other)."""
    return payload[:64].decode("utf-8", "replace").strip().lower() or "unknown"


def event_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(message id, type)`` of a well-formed event, None when either is missing or unknown."""
    message_id, phase = body.get("id"), body.get("type")
    if not isinstance(message_id, str) or not message_id or phase not in EVENT_TYPES:
        return None
    return message_id, str(phase)


def incident_of(body: Mapping[str, Any], limit: int = 128) -> str:
    """The incident an event belongs to: its ``incident`` (the first detection of an attack that
    came back), else its own ``detection`` (an agent from before incidents); ids cut to ``limit``.
    """
    incident, detection = body.get("incident"), body.get("detection")
    if isinstance(incident, str) and incident:
        return incident[:limit]
    return detection[:limit] if isinstance(detection, str) else ""


class Deduplicator:
    """Remembers the last ``capacity`` ids: bounded memory whatever a publisher sends."""

    def __init__(self, capacity: int = SEEN_IDS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, message_id: str) -> bool:
        """True the first time ``message_id`` is offered; repeats are counted and return False."""
        if message_id in self._seen:
            self.duplicates += 1
            return False
        self._seen[message_id] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)

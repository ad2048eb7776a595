"""What the monitor knows about a fleet of gateways, updated message by message.

Per gateway: online/offline, when it was last heard, the active detections (a ``new`` /
``update`` opens or refreshes one by its ``detection`` id, an ``end`` closes it; a message whose
``id`` was already seen is dropped, since QoS 1 is at-least-once and brokers may replay retained
messages), the last N detections, the latest stats and the active model. A detection is shown
family first (the event's ``category``), then the model's label and the other labels its
incident was given.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from agent.calibration import silenced as calibration_silenced
from agent.contract import (
    DEFAULT_PREFIX,
    KERNELS,
    MAX_GATEWAYS,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    SEEN_IDS,
    Deduplicator,
    Kind,
    decode,
    event_key,
    fleet_filters,
    parse_status,
    split_topic,
)
from agent.printable import printable

__all__ = [
    "DEFAULT_PREFIX",
    "SEEN_IDS",
    "Detection",
    "Fleet",
    "Gateway",
    "describe",
    "fmt",
    "shown",
]

logger = logging.getLogger(__name__)

KINDS: Final[tuple[Kind, ...]] = ("status", "events", "stats", "model")
OTHER_LABELS_SHOWN: Final = 3
SILENCED_SHOWN: Final = 6
# what a label may look like on the operator's screen; anything else is not echoed
_LABEL: Final = re.compile(r"[\w.+:/-]{1,64}")
NAME_SHOWN: Final = 64  # characters of a device id, label, category or bundle id on screen
REASON_SHOWN: Final = 160  # of a model update's result and reason
# Open detections kept per gateway: one publisher inventing detection ids must not grow the
# monitor (or its screen) without bound; past it the oldest leaves the active list.
MAX_ACTIVE: Final = 256
_UPDATE: Final = ("result", "reason", "time")  # the model topic's last_update keys


def shown(value: object, limit: int = NAME_SHOWN) -> str:
    """A publisher's string as the screen and the change lines show it: control characters
    escaped (``agent.printable``), at most ``limit`` characters."""
    return printable(str(value), limit)


def _kept(value: object, limit: int = MAX_NAME_CHARS) -> str:
    """A publisher's string as the monitor keeps it: at most ``limit`` characters."""
    return str(value)[:limit]


def _number(value: object) -> float | None:
    """``value`` as a float when it is a real number (bools and strings are not)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _total(value: object) -> float | None:
    """A figure that is either a number or a mapping of numbers (``drops``, ``malformed``)."""
    if isinstance(value, Mapping):
        parts = [n for n in (_number(v) for v in value.values()) if n is not None]
        return sum(parts) if parts else None
    return _number(value)


@dataclass
class Detection:
    """One detection as the monitor last heard of it."""

    detection: str
    label: str
    category: str
    source: str
    model: str
    score: float | None
    start: float | None
    end: float | None = None
    labels: dict[str, int] = field(default_factory=dict)  # windows per label of the incident
    # the incident it recurs (the first detection's id) and how many came before it; 0: none
    incident: str = ""
    recurrence: int = 0

    def refresh(self, event: Mapping[str, Any]) -> None:
        """Take the newer figures of an ``update`` / ``end`` message."""
        self.label = _kept(event.get("label", self.label))
        self.category = _kept(event.get("category", self.category))
        labels = event.get("labels")
        if isinstance(labels, Mapping):
            # hostile input: only label -> count pairs, and only a few of them
            counts = {
                _kept(k): int(n)
                for k, n in ((k, _number(v)) for k, v in labels.items())
                if n is not None and math.isfinite(n)
            }
            self.labels = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:16])
        recurrence, incident = _number(event.get("recurrence")), event.get("incident")
        if recurrence is not None and 0 < recurrence < 1e9 and isinstance(incident, str):
            self.recurrence, self.incident = int(recurrence), incident[:MAX_ID_CHARS]
        score, start = _number(event.get("score")), _number(event.get("start"))
        self.score = self.score if score is None else score
        self.start = self.start if start is None else start

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used in ``--json`` snapshots."""
        return {
            "detection": self.detection,
            "label": self.label,
            "category": self.category,
            "source": self.source,
            "model": self.model,
            "score": self.score,
            "start": self.start,
            "end": self.end,
            "labels": self.labels,
            "incident": self.incident or self.detection,
            "recurrence": self.recurrence,
        }


@dataclass
class Gateway:
    """What the monitor knows about one gateway."""

    device: str
    recent_size: int
    status: str = "unknown"
    last_seen: float | None = None
    stats: dict[str, float | None] = field(default_factory=dict)
    model: dict[str, Any] | None = None
    active: dict[str, Detection] = field(default_factory=dict)
    recent: OrderedDict[str, Detection] = field(default_factory=OrderedDict)
    events: int = 0
    duplicates: int = 0

    def remember(self, detection: Detection) -> None:
        """Put ``detection`` first among the recent ones, forgetting the oldest beyond N."""
        self.recent[detection.detection] = detection
        self.recent.move_to_end(detection.detection, last=False)
        while len(self.recent) > self.recent_size:
            self.recent.popitem(last=True)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used in ``--json`` snapshots."""
        return {
            "status": self.status,
            "last_seen": self.last_seen,
            **{name: self.stats.get(name) for name in STATS_KEYS},
            "model": self.model,
            "active_events": [d.as_dict() for d in self.active.values()],
            "recent_detections": [d.as_dict() for d in self.recent.values()],
            "events_received": self.events,
            "duplicates_dropped": self.duplicates,
        }


STATS_FIGURES: Final[Mapping[str, Callable[[object], float | None]]] = {
    "packets_per_s": _number,
    "latency_ms_p50": _number,
    "latency_ms_p99": _number,
    "drops": _total,
    "malformed": _total,
    "cpu_percent": _number,
    "rss_bytes": _number,
    "temperature_c": _number,
    "uptime_s": _number,
}
STATS_KEYS: Final = (*STATS_FIGURES, "outbox_depth")


class Fleet:
    """Every gateway under one topic prefix, updated message by message."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, recent: int = 10) -> None:
        self.prefix = prefix.rstrip("/")
        self.recent = recent
        self.gateways: dict[str, Gateway] = {}
        self.malformed = 0
        self.untracked = 0  # messages of gateways past MAX_GATEWAYS, or with an id too long
        # One de-duplicator for the whole session: it outlives reconnects, so an event the
        # broker delivers again after a reconnect (or a shared-subscription hand-over) counts once.
        self._seen = Deduplicator(SEEN_IDS)

    def subscriptions(self) -> list[str]:
        """The topic filters that feed this fleet."""
        return fleet_filters(self.prefix, KINDS)

    def apply(self, topic: str, payload: bytes, now: float, retained: bool = False) -> list[str]:
        """Take one message; returns a line per visible change (empty for repeats)."""
        parsed = self._split(topic)
        if parsed is None:
            return []
        device, kind = parsed
        gateway = self.gateways.get(device)
        if gateway is None:
            if len(device) > MAX_ID_CHARS or len(self.gateways) >= MAX_GATEWAYS:
                self.untracked += 1
                return []
            gateway = self.gateways[device] = Gateway(device, self.recent)
        if kind == "status":
            return self._status(gateway, payload, now, retained)
        body = self._json(topic, payload)
        if body is None:
            return []
        stamp = _number(body.get("time"))
        if stamp is not None or not retained:
            gateway.last_seen = max(gateway.last_seen or 0.0, stamp or now)
        if kind == "events":
            return self._event(gateway, body)
        if kind == "stats":
            return self._stats(gateway, body)
        return self._model(gateway, body)

    def snapshot(self, now: float) -> dict[str, Any]:
        """Everything known, as JSON-ready data, gateways sorted by id."""
        return {
            "time": now,
            "prefix": self.prefix,
            "malformed_messages": self.malformed,
            "untracked_messages": self.untracked,
            "gateways": {name: self.gateways[name].as_dict() for name in sorted(self.gateways)},
        }

    def _split(self, topic: str) -> tuple[str, str] | None:
        """(device, kind) of a topic under the prefix, None for anything else."""
        return split_topic(self.prefix, topic, KINDS)

    def _json(self, topic: str, payload: bytes) -> dict[str, Any] | None:
        """A JSON object payload, or None (counted, DEBUG-logged) for anything else."""
        body = decode(payload)
        if body is None:
            self.malformed += 1
            logger.debug("monitor: ignoring non-JSON-object on %s: %.80r", topic, payload)
            return None
        return body

    def _status(self, gateway: Gateway, payload: bytes, now: float, retained: bool) -> list[str]:
        """``online`` / ``offline`` (a retained one may arrive twice: only changes count)."""
        status = parse_status(payload)
        if not retained:
            gateway.last_seen = now
        if status == gateway.status:
            return []
        gateway.status = status
        return [f"{shown(gateway.device)} {shown(status)}"]

    def _event(self, gateway: Gateway, event: dict[str, Any]) -> list[str]:
        """Open, refresh or close a detection; a repeated message id changes nothing."""
        key_phase = event_key(event)
        if key_phase is None:
            self.malformed += 1
            logger.debug("monitor: event without id or type from %s", gateway.device)
            return []
        message_id, phase = key_phase
        if len(message_id) > MAX_ID_CHARS:  # remembered SEEN_IDS times: bounded, as the collector
            self.malformed += 1
            return []
        if not self._seen.first_time(f"{gateway.device}/{message_id}"):
            gateway.duplicates += 1
            return []
        gateway.events += 1
        key = _kept(event.get("detection") or message_id, MAX_ID_CHARS)
        detection = gateway.active.get(key) or gateway.recent.get(key)
        if detection is None:
            detection = Detection(
                key,
                label=_kept(event.get("label", "?")),
                category=_kept(event.get("category", "?")),
                source=_kept(event.get("source", "")),
                model=_kept(event.get("model", "")),
                score=_number(event.get("score")),
                start=_number(event.get("start")),
            )
            gateway.remember(detection)
        detection.refresh(event)
        if phase == "end":
            detection.end = _number(event.get("end")) or _number(event.get("time"))
            gateway.active.pop(key, None)
        else:
            gateway.active[key] = detection
            while len(gateway.active) > MAX_ACTIVE:
                gateway.active.pop(next(iter(gateway.active)))
        return [f"{shown(gateway.device)} detection {phase} {describe(detection)}"]

    def _stats(self, gateway: Gateway, stats: dict[str, Any]) -> list[str]:
        """Latest figures; the outbox depth comes nested from the MQTT sink."""
        figures = {name: read(stats.get(name)) for name, read in STATS_FIGURES.items()}
        outbox = stats.get("outbox")
        figures["outbox_depth"] = _number(outbox.get("depth")) if isinstance(outbox, dict) else None
        if figures == gateway.stats:
            return []
        gateway.stats = figures
        return [f"{shown(gateway.device)} stats {_stats_text(figures)}"]

    def _model(self, gateway: Gateway, model: dict[str, Any]) -> list[str]:
        """The active bundle and the result of the last update attempt (retained)."""
        last = model.get("last_update")
        if isinstance(last, dict):  # what the screen shows of it, bounded
            last = {
                k: _kept(v) if isinstance(v, str) else v for k, v in last.items() if k in _UPDATE
            }
        kernels = model.get("kernels")
        bundle_id = model.get("bundle_id")
        summary = {
            "bundle_id": _kept(bundle_id) if isinstance(bundle_id, str) else bundle_id,
            "feature_set": model.get("feature_set"),
            "kernels": kernels if kernels in KERNELS else None,
            "last_update": last if isinstance(last, dict) else None,
            "calibration": _calibration(model.get("calibration")),
        }
        if summary == gateway.model:
            return []
        gateway.model = summary
        line = f"{shown(gateway.device)} model {shown(summary['bundle_id'])}"
        if summary["kernels"]:
            line += f" on {summary['kernels']} kernels"
        if summary["calibration"]:
            line += f", {summary['calibration']}"
        if isinstance(last, dict):
            line += f" (last update {shown(last.get('result', '?'), REASON_SHOWN)}"
            line += f": {shown(last['reason'], REASON_SHOWN)})" if last.get("reason") else ")"
        return [line]


def _calibration(field: object) -> str | None:
    """The model topic's site calibration in a few words: ``calibrated (silenced a, b; first 10
    windows quiet)`` — the labels a site calibration switched off are what an operator must know."""
    if not isinstance(field, Mapping):
        return None
    state = field.get("state")
    if state == "collecting":
        return "calibrating"
    if state != "calibrated":
        return None
    thresholds = field.get("thresholds")
    shown_labels = {
        label: value
        for label, value in (thresholds.items() if isinstance(thresholds, Mapping) else ())
        if isinstance(label, str) and _LABEL.fullmatch(label)
    }
    silenced = calibration_silenced(shown_labels)
    # vouched attack-free: an attack during the period was learned as the site's own
    parts = ["vouched attack-free"] if field.get("attack_free") is True else []
    if silenced:
        more = len(silenced) - SILENCED_SHOWN
        shown = ", ".join(silenced[:SILENCED_SHOWN]) + (f" and {more} more" if more > 0 else "")
        parts.append(f"silenced {shown}")
    quiet = _number(field.get("start_quiet_windows"))
    if quiet is not None and 0 < quiet <= 1000:
        parts.append(f"first {quiet:.0f} windows quiet")
    return "calibrated" + (f" ({'; '.join(parts)})" if parts else "")


def describe(detection: Detection) -> str:
    """``family: label (also other labels) score 0.97 [detection id]``, family first; a
    recurrence says so: ``... [detection id] back, 3rd time (incident first id)``."""
    score = "?" if detection.score is None else f"{detection.score:.2f}"
    others = [name for name in detection.labels if name != detection.label][:OTHER_LABELS_SHOWN]
    also = f" (also {', '.join(map(shown, others))})" if others else ""
    text = (
        f"{shown(detection.category)}: {shown(detection.label)}{also} score {score}"
        f" [{shown(detection.detection, 12)}]"
    )
    if detection.recurrence > 0:
        time = ordinal(detection.recurrence + 1)
        text += f" back, {time} time (incident {shown(detection.incident, 12)})"
    return text


def ordinal(n: int) -> str:
    """``2nd``, ``3rd``, ``11th``, ``21st``."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure for the table; ``-`` when the gateway did not report it."""
    return "-" if value is None else f"{value:.{digits}f}"


def _stats_text(figures: Mapping[str, float | None]) -> str:
    """One line of the figures an operator scans first."""
    return (
        f"{fmt(figures.get('packets_per_s'))} pkt/s, latency p50 "
        f"{fmt(figures.get('latency_ms_p50'), 2)} ms p99 {fmt(figures.get('latency_ms_p99'), 2)}"
        f" ms, drops {fmt(figures.get('drops'), 0)}, outbox {fmt(figures.get('outbox_depth'), 0)}"
    )

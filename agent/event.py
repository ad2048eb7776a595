"""A detection's event: one step of its lifecycle and its ``iotids.event/1`` payload.

The decider (``agent.decide``) makes them; the sinks (``agent.report``) send and keep them.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.contract import EVENT_SCHEMA
from agent.evidence import Evidence

EventKind = Literal["new", "update", "end"]


@dataclass(frozen=True)
class Event:
    """One step of a detection's lifecycle; ``id`` stays the same from ``new`` to ``end``."""

    kind: EventKind
    id: str
    model: str
    source: str
    label: str
    category: str
    started_ns: int
    time_ns: int
    score: float
    peak: float
    windows: int
    evidence: Evidence = field(default_factory=Evidence)
    ended_ns: int | None = None
    # windows per label seen in this incident, most first (``label`` is the latest one)
    labels: tuple[tuple[str, int], ...] = ()
    threshold: float = 0.0  # the label's threshold: ``score_ratio`` is the score over it
    incident: str = ""  # the first detection's id when this one recurs it (agent.recurrence)
    recurrence: int = 0  # how many detections of the incident came before this one

    @property
    def incident_id(self) -> str:
        """The incident this detection belongs to: the one it recurs, else itself."""
        return self.incident or self.id

    def to_dict(self) -> dict[str, Any]:
        """The ``iotids.event/1`` payload (agent/report/mqtt.py documents it; times in Unix s).

        ``id`` is fresh for every message (consumers drop duplicates by it); ``detection`` is the
        id shared by the ``new`` / ``update`` / ``end`` of one detection; ``incident`` the id
        shared by a detection and its recurrences (its own id when it recurs none).
        """
        return {
            "schema": EVENT_SCHEMA,
            "id": uuid.uuid4().hex,
            "type": self.kind,
            "detection": self.id,
            "incident": self.incident_id,
            "recurrence": self.recurrence,
            "model": self.model,
            "source": self.source,
            "label": self.label,
            "category": self.category,
            "labels": dict(self.labels) if self.labels else {self.label: self.windows},
            "start": self.started_ns / 1e9,
            "window_end": self.time_ns / 1e9,
            "end": None if self.ended_ns is None else self.ended_ns / 1e9,
            "score": round(self.score, 6),
            "peak_score": round(self.peak, 6),
            # An anomaly's raw score (a reconstruction error such as 0.009) means nothing
            # without its threshold; the ratio reads the same for every model: 1.0 = at it.
            "threshold": round(self.threshold, 6),
            "score_ratio": _ratio(self.score, self.threshold),
            "peak_ratio": _ratio(self.peak, self.threshold),
            "windows": self.windows,
            "evidence": self.evidence.to_dict(),
        }


def _ratio(score: float, threshold: float) -> float | None:
    """``score / threshold`` to 3 decimals; None when there is no positive, finite threshold."""
    if not (threshold > 0 and math.isfinite(threshold) and math.isfinite(score)):
        return None
    return round(score / threshold, 3)


def comparable(payloads: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Event payloads with their random ids taken out: ``id`` dropped, each ``detection`` and
    ``incident`` uuid replaced by its order of first appearance. Two runs of the same capture
    (lazy or eager evidence, x86 or arm64) must then give equal lists.
    """
    order: dict[object, int] = {}
    rows = []
    for payload in payloads:
        row = {k: v for k, v in payload.items() if k != "id"}
        for key in ("detection", "incident"):
            if key in row:
                row[key] = order.setdefault(row[key], len(order))
        rows.append(row)
    return rows

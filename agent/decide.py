"""Turning per-window model scores into detection events with a debounced lifecycle.

A window "hits" a label when its score reaches the label's threshold from the bundle manifest.
An event is raised (``new``) when ``raise_k`` of the last ``raise_n`` windows hit, updated while
hits continue, and ended after ``clear_m`` clean windows in a row (issue 6, "Decisions"). Every
event carries a uuid4 so consumers can drop the duplicates QoS 1 allows (DESIGN.md, MQTT).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import math
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from agent.features.packets import PacketTable

logger = logging.getLogger(__name__)

EVENT_SCHEMA = "iotids.event/1"
TOP_K = 5
BENIGN = frozenset({"benign", "normal", "none"})
_V4_MAPPED_HI = 0
_V4_MAPPED_MARK = 0xFFFF_0000_0000
_V4_MAPPED_MASK = 0xFFFF_FFFF_0000_0000

EventKind = Literal["new", "update", "end"]


@dataclass(frozen=True)
class Evidence:
    """What was seen on the wire: packet and byte counts, busiest sources and destination ports."""

    packets: int = 0
    bytes: int = 0
    top_sources: tuple[tuple[str, int], ...] = ()
    top_ports: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as carried in an event."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "top_sources": [{"address": a, "packets": n} for a, n in self.top_sources],
            "top_ports": [{"port": p, "packets": n} for p, n in self.top_ports],
        }

    @staticmethod
    def merge(parts: Iterable[Evidence | None], k: int = TOP_K) -> Evidence:
        """Evidence over several steps (top lists merged from each step's top lists)."""
        packets = byte_count = 0
        sources: Counter[str] = Counter()
        ports: Counter[int] = Counter()
        for part in parts:
            if part is None:
                continue
            packets += part.packets
            byte_count += part.bytes
            sources.update(dict(part.top_sources))
            ports.update(dict(part.top_ports))
        return Evidence(
            packets, byte_count, tuple(sources.most_common(k)), tuple(ports.most_common(k))
        )


def packet_evidence(table: PacketTable, k: int = TOP_K) -> Evidence:
    """Evidence of one step's packets: counts and the ``k`` busiest sources and dports."""
    found = step_evidence(table, np.zeros(len(table), np.int64), 1, k)
    return found[0] or Evidence()


def step_evidence(
    table: PacketTable, step: npt.NDArray[np.int64], steps: int, k: int = TOP_K
) -> list[Evidence | None]:
    """Evidence of many steps at once; ``step[i]`` (ascending) is packet i's step, 0..steps-1.

    Vectorized over the whole batch: one sort per key, no Python loop over packets, so a busy
    step costs no more per packet than a quiet one. Steps without packets get None.
    """
    if len(table) == 0:
        return [None] * steps
    packets = np.bincount(step, minlength=steps)
    sizes = np.bincount(step, weights=table.wire_len, minlength=steps)
    # One 64-bit key per address (hi folded into lo): collisions only blur evidence, never counts.
    key = table.src_lo ^ (table.src_hi * np.uint64(0x9E3779B97F4A7C15))
    src_rows, src_counts = _top_per_step(step, key, k)
    has_port = table.dport > 0
    port_rows, port_counts = _top_per_step(
        step[has_port], table.dport[has_port].astype(np.uint64), k
    )
    port_step, dports = step[has_port], table.dport[has_port]
    out: list[Evidence | None] = [None] * steps
    sources: dict[int, list[tuple[str, int]]] = {}
    for row, count in zip(src_rows.tolist(), src_counts.tolist(), strict=True):
        text = address_text(int(table.src_hi[row]), int(table.src_lo[row]))
        sources.setdefault(int(step[row]), []).append((text, count))
    ports: dict[int, list[tuple[int, int]]] = {}
    for row, count in zip(port_rows.tolist(), port_counts.tolist(), strict=True):
        ports.setdefault(int(port_step[row]), []).append((int(dports[row]), count))
    for s in np.nonzero(packets)[0].tolist():
        out[s] = Evidence(
            int(packets[s]), int(sizes[s]), tuple(sources.get(s, ())), tuple(ports.get(s, ()))
        )
    return out


def _top_per_step(
    step: npt.NDArray[np.int64], key: npt.NDArray[np.uint64], k: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """For each step, the ``k`` most frequent keys: (row of a first occurrence, count).

    Ties go to the key seen first, so results do not depend on hash values.
    """
    if len(key) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.int64)
    order = np.lexsort((key, step))
    s, kk = step[order], key[order]
    starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (kk[1:] != kk[:-1])])
    counts = np.diff(np.r_[starts, len(order)])
    first_row = np.minimum.reduceat(order, starts)
    group_step = s[starts]
    ranked = np.lexsort((first_row, -counts, group_step))
    ranked_step = group_step[ranked]
    rank = np.arange(len(ranked)) - np.searchsorted(ranked_step, ranked_step, side="left")
    keep = ranked[rank < k]
    return first_row[keep], counts[keep]


@functools.lru_cache(maxsize=4096)
def address_text(hi: int, lo: int) -> str:
    """An address from its two 64-bit halves; IPv4-mapped ones print as dotted quads."""
    if hi == _V4_MAPPED_HI and lo & _V4_MAPPED_MASK == _V4_MAPPED_MARK:
        return str(ipaddress.IPv4Address(lo & 0xFFFF_FFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


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

    def to_dict(self) -> dict[str, Any]:
        """The ``iotids.event/1`` payload (agent/report/mqtt.py documents it; times in Unix s).

        ``id`` is fresh for every message (consumers drop duplicates by it); ``detection`` is the
        id shared by the ``new`` / ``update`` / ``end`` of one detection.
        """
        return {
            "schema": EVENT_SCHEMA,
            "id": uuid.uuid4().hex,
            "type": self.kind,
            "detection": self.id,
            "model": self.model,
            "source": self.source,
            "label": self.label,
            "category": self.category,
            "start": self.started_ns / 1e9,
            "window_end": self.time_ns / 1e9,
            "end": None if self.ended_ns is None else self.ended_ns / 1e9,
            "score": round(self.score, 6),
            "peak_score": round(self.peak, 6),
            "windows": self.windows,
            "evidence": self.evidence.to_dict(),
        }


@dataclass(frozen=True)
class DecisionPolicy:
    """Labels, their categories and thresholds (from the manifest) and the debounce counts."""

    labels: tuple[str, ...]
    categories: tuple[str, ...]
    thresholds: tuple[float, ...]
    raise_k: int = 2
    raise_n: int = 3
    clear_m: int = 3
    update_every: int = 5
    # A single window at or above this score raises at once: a flood the model is sure of
    # should not wait k windows (issue 6: time to detect <= 2 steps). inf disables it.
    raise_score: float = math.inf

    def __post_init__(self) -> None:
        if not len(self.labels) == len(self.categories) == len(self.thresholds):
            raise ValueError(
                f"labels ({len(self.labels)}), categories ({len(self.categories)}) and "
                f"thresholds ({len(self.thresholds)}) must have the same length"
            )
        if not 1 <= self.raise_k <= self.raise_n:
            raise ValueError(f"raise_k must be 1..raise_n, got {self.raise_k}/{self.raise_n}")
        if self.clear_m < 1 or self.update_every < 1:
            raise ValueError("clear_m and update_every must be >= 1")

    @classmethod
    def from_manifest(
        cls,
        labels: Sequence[str],
        categories: Sequence[str] | Mapping[str, str],
        thresholds: Mapping[str, float],
        *,
        raise_k: int = 2,
        raise_n: int = 3,
        clear_m: int = 3,
        raise_score: float = math.inf,
    ) -> DecisionPolicy:
        """Per-class thresholds by label name; ``default`` (else 0.5) for labels not listed."""
        default = float(thresholds.get("default", 0.5))
        if isinstance(categories, Mapping):
            cats = tuple(str(categories.get(label, label)) for label in labels)
        else:
            cats = tuple(str(c) for c in categories) if categories else tuple(labels)
        return cls(
            tuple(labels),
            cats,
            tuple(float(thresholds.get(label, default)) for label in labels),
            raise_k,
            raise_n,
            clear_m,
            raise_score=raise_score,
        )

    def watched(self) -> list[int]:
        """Indices of labels that raise events (benign ones never do)."""
        return [
            i
            for i, (label, cat) in enumerate(zip(self.labels, self.categories, strict=True))
            if label.lower() not in BENIGN and cat.lower() not in BENIGN
        ]


@dataclass
class _Active:
    """An open detection."""

    id: str
    started_ns: int
    peak: float
    windows: int = 1
    clean: int = 0
    since_update: int = 0


class Decider:
    """Debounces one model's window scores into events, label by label."""

    def __init__(self, policy: DecisionPolicy, model_id: str, source: str) -> None:
        self.policy = policy
        self.model_id = model_id
        self.source = source
        self._watched = policy.watched()
        self._thresholds = np.asarray(policy.thresholds, np.float64)
        self._recent: dict[int, deque[bool]] = {
            i: deque(maxlen=policy.raise_n) for i in self._watched
        }
        self._active: dict[int, _Active] = {}

    @property
    def active_labels(self) -> list[str]:
        """Labels with an open event."""
        return [self.policy.labels[i] for i in sorted(self._active)]

    def observe(
        self,
        time_ns: int,
        scores: npt.NDArray[np.floating[Any]],
        evidence: Evidence | Callable[[], Evidence],
    ) -> list[Event]:
        """Feed one window's scores (one per label); returns the events it causes.

        ``evidence`` may be a callable, computed only when an event is actually emitted.
        """
        flat = np.asarray(scores, np.float64).reshape(-1)
        if flat.shape[0] != len(self.policy.labels):
            raise ValueError(f"expected {len(self.policy.labels)} scores, got {flat.shape[0]}")
        hits = flat >= self._thresholds  # NaN compares False: a NaN score never hits
        events: list[Event] = []
        for i in self._watched:
            event = self._step(i, bool(hits[i]), float(flat[i]), time_ns)
            if event is not None:
                events.append(event)
        if events:
            shown = evidence() if callable(evidence) else evidence
            events = [dataclasses.replace(e, evidence=shown) for e in events]
        return events

    def close(self, time_ns: int, evidence: Evidence | None = None) -> list[Event]:
        """End every open event (the stream ended or the model is being replaced)."""
        events = [
            self._event("end", i, active, time_ns, active.peak, evidence, time_ns)
            for i, active in sorted(self._active.items())
        ]
        self._active.clear()
        for recent in self._recent.values():
            recent.clear()
        return events

    def _step(self, i: int, hit: bool, score: float, time_ns: int) -> Event | None:
        """Advance label ``i``'s debounce state by one window."""
        recent = self._recent[i]
        recent.append(hit)
        active = self._active.get(i)
        if active is None:
            if hit and (sum(recent) >= self.policy.raise_k or score >= self.policy.raise_score):
                active = _Active(str(uuid.uuid4()), time_ns, score)
                self._active[i] = active
                return self._event("new", i, active, time_ns, score)
            return None
        active.windows += 1
        active.since_update += 1
        if hit:
            active.clean = 0
            active.peak = max(active.peak, score)
            if active.since_update >= self.policy.update_every:
                active.since_update = 0
                return self._event("update", i, active, time_ns, score)
            return None
        active.clean += 1
        if active.clean >= self.policy.clear_m:
            del self._active[i]
            recent.clear()
            return self._event("end", i, active, time_ns, score, ended_ns=time_ns)
        return None

    def _event(
        self,
        kind: EventKind,
        i: int,
        active: _Active,
        time_ns: int,
        score: float,
        evidence: Evidence | None = None,
        ended_ns: int | None = None,
    ) -> Event:
        event = Event(
            kind=kind,
            id=active.id,
            model=self.model_id,
            source=self.source,
            label=self.policy.labels[i],
            category=self.policy.categories[i],
            started_ns=active.started_ns,
            time_ns=time_ns,
            score=score,
            peak=active.peak,
            windows=active.windows,
            evidence=evidence or Evidence(),
            ended_ns=ended_ns,
        )
        logger.info("%s %s %s score=%.3f", kind, event.label, event.id, score)
        return event

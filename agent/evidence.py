"""What an event says was on the wire: per-step packet and byte counts, the busiest sources,
destinations and ports, and the targets an incident hit.

A closed step keeps only the six packet columns its evidence needs (``StepEvidence``), and its
top-k summary is computed when an event needs it: most windows raise nothing, and summarising
every step cost about a third of a replay's CPU at 1-second steps. The model slot bounds the
packets held this way (``MAX_PENDING_PACKETS``) and summarises at once beyond it, so memory stays
bounded under floods; the decider merges steps' summaries when it emits an event.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from agent.features.packets import PacketTable

TOP_K = 5
# Packets whose steps' evidence a model slot may keep unsummarised (6 columns, 38 bytes a
# packet: ~2.4 MiB); beyond it the kept steps are summarised at once, as every step was before.
MAX_PENDING_PACKETS = 1 << 16
_V4_MAPPED_HI = 0
_K = TypeVar("_K", str, int)
_V4_MAPPED_MARK = 0xFFFF_0000_0000
_V4_MAPPED_MASK = 0xFFFF_FFFF_0000_0000


@dataclass(frozen=True)
class Evidence:
    """What was seen on the wire: packet and byte counts, busiest sources and destination ports."""

    packets: int = 0
    bytes: int = 0
    top_sources: tuple[tuple[str, int], ...] = ()
    top_ports: tuple[tuple[int, int], ...] = ()
    top_destinations: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as carried in an event."""
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "top_sources": [{"address": a, "packets": n} for a, n in self.top_sources],
            "top_destinations": [{"address": a, "packets": n} for a, n in self.top_destinations],
            "top_ports": [{"port": p, "packets": n} for p, n in self.top_ports],
        }

    @staticmethod
    def merge(parts: Iterable[Evidence | None], k: int = TOP_K) -> Evidence:
        """Evidence over several steps (top lists merged from each step's top lists)."""
        packets = byte_count = 0
        sources: Counter[str] = Counter()
        ports: Counter[int] = Counter()
        destinations: Counter[str] = Counter()
        for part in parts:
            if part is None:
                continue
            packets += part.packets
            byte_count += part.bytes
            sources.update(dict(part.top_sources))
            ports.update(dict(part.top_ports))
            destinations.update(dict(part.top_destinations))
        return Evidence(
            packets,
            byte_count,
            tuple(sources.most_common(k)),
            tuple(ports.most_common(k)),
            tuple(destinations.most_common(k)),
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
    return _columns_evidence(_EvidenceColumns.of(table), step, steps, k)


@dataclass(frozen=True)
class _EvidenceColumns:
    """The packet columns evidence is made of (a copy: the decoded chunk can be freed)."""

    wire_len: npt.NDArray[np.uint32]
    src_hi: npt.NDArray[np.uint64]
    src_lo: npt.NDArray[np.uint64]
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    dport: npt.NDArray[np.uint16]

    @classmethod
    def of(cls, table: PacketTable, rows: slice = slice(None)) -> _EvidenceColumns:
        return cls(
            table.wire_len[rows],
            table.src_hi[rows],
            table.src_lo[rows],
            table.dst_hi[rows],
            table.dst_lo[rows],
            table.dport[rows],
        )

    def copy(self) -> _EvidenceColumns:
        return _EvidenceColumns(
            self.wire_len.copy(),
            self.src_hi.copy(),
            self.src_lo.copy(),
            self.dst_hi.copy(),
            self.dst_lo.copy(),
            self.dport.copy(),
        )

    def rows(self, first: int, last: int) -> _EvidenceColumns:
        """Rows ``first..last-1`` (views)."""
        rows = slice(first, last)
        return _EvidenceColumns(
            self.wire_len[rows],
            self.src_hi[rows],
            self.src_lo[rows],
            self.dst_hi[rows],
            self.dst_lo[rows],
            self.dport[rows],
        )

    def __len__(self) -> int:
        return int(self.wire_len.shape[0])


class StepEvidence(Sequence[Evidence | None]):
    """The evidence of a batch of consecutive steps, summarised on first use.

    Holds the packets of its steps (``ends[s]`` is one past the last packet of step ``s``);
    ``self[s]`` summarises the step (once, cached) exactly as ``step_evidence`` would, and
    ``summarise(a, b)`` summarises steps ``a..b-1`` in one vectorized call. The packets are
    dropped once every step is summarised.
    """

    __slots__ = ("_columns", "_ends", "_exact", "_found", "_k", "_missing")

    def __init__(
        self,
        table: PacketTable,
        ends: npt.NDArray[np.int64],
        k: int = TOP_K,
        exact: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    ) -> None:
        count = int(ends[-1]) if len(ends) else 0
        self._columns: _EvidenceColumns | None = _EvidenceColumns.of(table, slice(0, count)).copy()
        self._ends = np.asarray(ends, np.int64)
        self._k = k
        # per step packets and bytes counted by the featurizer, when ``table`` holds only part of
        # the steps' packets (a long step under a flood): the top lists come from that part
        self._exact = exact
        self._found: list[Evidence | None] = [None] * len(ends)
        self._missing = np.ones(len(ends), bool)

    def __len__(self) -> int:
        return len(self._found)

    @overload
    def __getitem__(self, index: int) -> Evidence | None: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Evidence | None]: ...

    def __getitem__(self, index: int | slice) -> Evidence | Sequence[Evidence | None] | None:
        if isinstance(index, slice):
            start, stop, stride = index.indices(len(self))
            if stride == 1:
                self.summarise(start, stop)
            else:
                self.summarise(0, len(self))
            return self._found[index]
        if index < 0:
            index += len(self)
        self.summarise(index, index + 1)
        return self._found[index]

    @property
    def held_packets(self) -> int:
        """Packets still held for steps not summarised yet."""
        return len(self._columns) if self._columns is not None else 0

    def summarise(self, start: int, stop: int) -> None:
        """Summarise steps ``start..stop-1`` that are not summarised yet (one call)."""
        start, stop = max(start, 0), min(stop, len(self._found))
        if self._columns is None or start >= stop or not self._missing[start:stop].any():
            return
        first = int(self._ends[start - 1]) if start else 0
        last = int(self._ends[stop - 1])
        ends = self._ends[start:stop] - first
        step = np.repeat(np.arange(stop - start, dtype=np.int64), np.diff(np.r_[0, ends]))
        found = _columns_evidence(self._columns.rows(first, last), step, stop - start, self._k)
        for offset, evidence in enumerate(found):
            if self._missing[start + offset]:
                self._found[start + offset] = self._counted(start + offset, evidence)
        self._missing[start:stop] = False
        if not self._missing.any():
            self._columns = None  # every step summarised: the packets can go

    def _counted(self, index: int, evidence: Evidence | None) -> Evidence | None:
        if self._exact is None:
            return evidence
        packets, byte_count = int(self._exact[0][index]), int(self._exact[1][index])
        if not packets:
            return evidence
        return dataclasses.replace(evidence or Evidence(), packets=packets, bytes=byte_count)


class EvidenceChain(Sequence[Evidence | None]):
    """Two batches' evidence as one sequence, still summarised only when used."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Sequence[Evidence | None], second: Sequence[Evidence | None]):
        self._first, self._second = first, second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)

    @overload
    def __getitem__(self, index: int) -> Evidence | None: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Evidence | None]: ...

    def __getitem__(self, index: int | slice) -> Evidence | Sequence[Evidence | None] | None:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        split = len(self._first)
        return self._first[index] if index < split else self._second[index - split]

    @property
    def held_packets(self) -> int:
        """Packets still held for steps not summarised yet."""
        return held_packets(self._first) + held_packets(self._second)

    def summarise(self, start: int, stop: int) -> None:
        """Summarise steps ``start..stop-1`` (see StepEvidence.summarise)."""
        split = len(self._first)
        summarise(self._first, start, min(stop, split))
        summarise(self._second, max(start - split, 0), stop - split)


def summarise(evidence: Sequence[Evidence | None], start: int, stop: int) -> None:
    """Summarise steps ``start..stop-1`` of a batch's evidence in one call when it is lazy."""
    if isinstance(evidence, StepEvidence | EvidenceChain):
        evidence.summarise(start, stop)


def held_packets(evidence: Sequence[Evidence | None]) -> int:
    """Packets a batch's evidence still holds unsummarised (0 for summaries)."""
    if isinstance(evidence, StepEvidence | EvidenceChain):
        return evidence.held_packets
    return 0


def join_evidence(
    first: Sequence[Evidence | None], second: Sequence[Evidence | None]
) -> Sequence[Evidence | None]:
    """The evidence of two consecutive batches, without summarising either."""
    if not len(second):
        return first
    if not len(first):
        return second
    return EvidenceChain(first, second)


def _columns_evidence(
    table: _EvidenceColumns, step: npt.NDArray[np.int64], steps: int, k: int
) -> list[Evidence | None]:
    if len(table) == 0:
        return [None] * steps
    packets = np.bincount(step, minlength=steps)
    sizes = np.bincount(step, weights=table.wire_len, minlength=steps)
    # One 64-bit key per address (hi folded into lo): collisions only blur evidence, never counts.
    key = table.src_lo ^ (table.src_hi * np.uint64(0x9E3779B97F4A7C15))
    src_rows, src_counts = _top_per_step(step, key, k)
    dst_key = table.dst_lo ^ (table.dst_hi * np.uint64(0x9E3779B97F4A7C15))
    dst_rows, dst_counts = _top_per_step(step, dst_key, k)
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
    destinations: dict[int, list[tuple[str, int]]] = {}
    for row, count in zip(dst_rows.tolist(), dst_counts.tolist(), strict=True):
        text = address_text(int(table.dst_hi[row]), int(table.dst_lo[row]))
        destinations.setdefault(int(step[row]), []).append((text, count))
    ports: dict[int, list[tuple[int, int]]] = {}
    for row, count in zip(port_rows.tolist(), port_counts.tolist(), strict=True):
        ports.setdefault(int(port_step[row]), []).append((int(dports[row]), count))
    for s in np.nonzero(packets)[0].tolist():
        out[s] = Evidence(
            int(packets[s]),
            int(sizes[s]),
            tuple(sources.get(s, ())),
            tuple(ports.get(s, ())),
            tuple(destinations.get(s, ())),
        )
    return out


@dataclass(frozen=True)
class Targets:
    """What an incident hit: destination addresses and ports from its events' evidence, and
    the sources that sent the bulk of it (who hit them).

    Bounded: the newest ``MAX_TARGETS`` of each are kept, so a long scan cannot grow it.
    """

    addresses: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    sources: tuple[str, ...] = ()

    MAX_TARGETS = 32

    @classmethod
    def of(cls, evidence: Evidence) -> Targets:
        """Where the bulk of one window's packets went (its busiest destinations and ports), and
        where it came from (its busiest sources).

        Only those that together carry half the window's packets (all listed ones when they do
        not): the broker every sensor publishes to is in nearly every window's top list, and
        with it any two anomalies on a network would share a target.
        """
        addresses = _bulk(evidence.top_destinations, evidence.packets)
        return cls(
            addresses,
            _bulk(evidence.top_ports, evidence.packets),
            # a bulk destination that also sends (a victim answering its attacker, a camera
            # streaming) is hit, not who hits: as a sender it would tie any two attacks on it
            tuple(a for a in _bulk(evidence.top_sources, evidence.packets) if a not in addresses),
        )

    def add(self, evidence: Evidence) -> Targets:
        """These targets plus the evidence's, newest first, each list capped."""
        seen = Targets.of(evidence)
        return Targets(
            tuple(dict.fromkeys(seen.addresses + self.addresses))[: self.MAX_TARGETS],
            tuple(dict.fromkeys(seen.ports + self.ports))[: self.MAX_TARGETS],
            tuple(dict.fromkeys(seen.sources + self.sources))[: self.MAX_TARGETS],
        )

    def overlaps(self, other: Targets) -> bool:
        """Same targets: a shared destination address; when either side names no address, a
        shared destination port; when either side names neither (telemetry and host sources
        carry no packets), the gateway itself is the one target, so they overlap.

        Sources do not count here: two attackers on one victim are one incident on it.
        """
        if not (self.addresses or self.ports) or not (other.addresses or other.ports):
            return True
        if self.addresses and other.addresses:
            return not set(self.addresses).isdisjoint(other.addresses)
        return not set(self.ports).isdisjoint(other.ports)

    def elsewhere(self, other: Targets) -> bool:
        """``other`` is another attack entirely: no shared address, port or bulk source.

        Stricter than not ``overlaps``, as one attack's bulk may move on every axis but one: a
        worm scanning random addresses stays on its port; a scanner sweeping host after host,
        a new port on each (nmap's host groups, a service sweep), stays one source. A spoofed
        flood's sources are random, but its victim stays.
        """
        if self.overlaps(other) or self.same_source(other):
            return False
        return set(self.ports).isdisjoint(other.ports)

    def same_traffic(self, other: Targets) -> bool:
        """The same flow of packets: a shared bulk address, port AND source (each side naming
        all three). A model may name one attack's traffic by several labels in turn; a new
        phase of an attack (a brute force after a scan) moves at least its port.
        """
        return all(
            a and b and not set(a).isdisjoint(b)
            for a, b in (
                (self.addresses, other.addresses),
                (self.ports, other.ports),
                (self.sources, other.sources),
            )
        )

    def same_source(self, other: Targets) -> bool:
        """A shared bulk source: the same scanner or flooder, whatever it hits now."""
        return not set(self.sources).isdisjoint(other.sources)


def _bulk(top: tuple[tuple[_K, int], ...], packets: int) -> tuple[_K, ...]:
    """The first keys of a most-common-first list that carry half of ``packets`` (or of the
    list's own count, when it is larger: evidence merged from several steps' top lists)."""
    half = max(packets, sum(n for _, n in top)) / 2
    kept: list[_K] = []
    carried = 0
    for key, n in top:
        kept.append(key)
        carried += n
        if carried >= half:
            break
    return tuple(kept)


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

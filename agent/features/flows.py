"""Bounded new-flow detection: a fixed table of last-seen times keyed by a 5-tuple hash.

A packet starts a new flow when its flow's slot is empty or was last touched more than
``timeout_ns`` before it (default 60 s); every packet has a flow, ARP and ICMP included
(ports are 0 there). The key is direction-free (both endpoints sorted),
so a reply belongs to the flow its request opened. The table has ``2^slots_log2`` slots
(default 2^16, 512 KiB) whatever the traffic; the approximation is that two flows hashing to
the same slot look like one, so under heavy load (a spoofed flood) new flows are undercounted
by roughly the fraction of occupied slots. Packets are taken in capture order, so feeding a
capture in one piece or in any number of chunks gives the same answer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agent.features.distinct import mix64
from agent.features.packets import PacketTable

DEFAULT_TIMEOUT_NS = 60_000_000_000
EMPTY = np.iinfo(np.int64).min  # a slot no packet has touched


def flow_hash(table: PacketTable) -> npt.NDArray[np.uint64]:
    """A 64-bit direction-free hash of (proto, {src addr:port, dst addr:port})."""
    xor = np.bitwise_xor
    a = mix64(xor(table.src_hi, table.sport.astype(np.uint64)), table.src_lo)
    b = mix64(xor(table.dst_hi, table.dport.astype(np.uint64)), table.dst_lo)
    return mix64(xor(np.maximum(a, b), table.proto.astype(np.uint64)), np.minimum(a, b))


class FlowTable:
    """Last-seen time per flow slot; :meth:`update` marks the packets that start a flow."""

    def __init__(self, slots_log2: int = 16, timeout_ns: int = DEFAULT_TIMEOUT_NS) -> None:
        if not 1 <= slots_log2 <= 24:
            raise ValueError(f"slots_log2 must be 1..24, got {slots_log2}")
        if timeout_ns <= 0:
            raise ValueError(f"timeout_ns must be > 0, got {timeout_ns}")
        self.slots_log2 = slots_log2
        self.timeout_ns = timeout_ns
        self.last_seen = np.full(1 << slots_log2, EMPTY, dtype=np.int64)

    def update(self, table: PacketTable) -> npt.NDArray[np.bool_]:
        """For each packet in order: does it start a flow? Then record it as its slot's latest."""
        n = len(table)
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        slot = flow_hash(table) >> np.uint64(64 - self.slots_log2)
        # packets of one slot together, in capture order (16-bit keys take numpy's radix sort)
        order = np.argsort(
            slot.astype(np.uint16 if self.slots_log2 <= 16 else np.uint32), kind="stable"
        )
        s = slot[order]
        ts = table.ts_ns[order]
        first = np.concatenate(([True], s[1:] != s[:-1]))
        prev = np.empty(n, dtype=np.int64)
        prev[1:] = ts[:-1]
        prev[first] = self.last_seen[s[first]]
        is_new_sorted = (prev == EMPTY) | (ts - prev > self.timeout_ns)
        last = np.concatenate((first[1:], [True]))
        self.last_seen[s[last]] = ts[last]
        is_new = np.empty(n, dtype=np.bool_)
        is_new[order] = is_new_sorted
        return is_new

    @property
    def nbytes(self) -> int:
        """Memory held: fixed at one timestamp per slot."""
        return int(self.last_seen.nbytes)

"""The decoded-packet table: the contract between capture readers and featurizers.

One row per frame, one numpy array per field (columnar), so featurizers work over whole
buffers at a time. Everything is taken at the IP layer: the link type a frame arrived on
is recorded (``linktype``) but no featurizer may read it, so Ethernet, Linux cooked capture
and raw IP captures of the same traffic produce the same features.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

# l3 values
L3_NONE = 0  # no network layer we understand (counted as malformed or "other" by the reader)
L3_ARP = 1
L3_IPV4 = 4
L3_IPV6 = 6

# IP protocol numbers the featurizer looks at
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# TCP flag bits (RFC 9293 order)
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

# frag bits
FRAG_IS_FRAGMENT = 0x01  # MF set or offset != 0 (IPv4), or a fragment header (IPv6)
FRAG_NOT_FIRST = 0x02  # offset != 0: no transport header in this packet

IPV4_MAPPED_HI = np.uint64(0)
IPV4_MAPPED_LO_PREFIX = np.uint64(0xFFFF_0000_0000)  # ::ffff:a.b.c.d lives in the low word

# name -> dtype, in a fixed order. Readers fill every column for every row (0 when absent).
COLUMNS: dict[str, npt.DTypeLike] = {
    "ts_ns": np.int64,  # capture timestamp, integer nanoseconds since the epoch
    "linktype": np.uint16,  # DLT of the frame's interface: recorded, never a feature
    "wire_len": np.uint32,  # original frame length on the wire
    "ip_len": np.uint32,  # bytes at the IP layer (IPv4 total length, IPv6 40+payload, ARP 28)
    "l3": np.uint8,  # L3_* above
    "proto": np.uint8,  # transport protocol after IPv6 extension headers; 0 when none
    "src_hi": np.uint64,  # source address, 128-bit, IPv4 mapped as ::ffff:a.b.c.d
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "sport": np.uint16,  # TCP/UDP ports; 0 when none
    "dport": np.uint16,
    "tcp_flags": np.uint8,  # TCP_* bits; 0 when not TCP
    "tcp_window": np.uint16,
    "tcp_hdr_len": np.uint8,  # bytes (data offset * 4)
    "ttl": np.uint8,  # IPv4 TTL or IPv6 hop limit
    "frag": np.uint8,  # FRAG_* bits
    "payload_len": np.uint32,  # transport payload bytes (from IP lengths, not capture length)
    "mqtt_type": np.uint8,  # MQTT control packet type (1..15) on TCP 1883/8883 payloads; 0 none
    "icmp_type": np.uint8,  # ICMP / ICMPv6 type
    "arp_op": np.uint16,  # ARP opcode (1 request, 2 reply)
}


@dataclass(frozen=True)
class PacketTable:
    """Decoded packets as parallel numpy arrays, all of the same length."""

    ts_ns: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.uint16]
    wire_len: npt.NDArray[np.uint32]
    ip_len: npt.NDArray[np.uint32]
    l3: npt.NDArray[np.uint8]
    proto: npt.NDArray[np.uint8]
    src_hi: npt.NDArray[np.uint64]
    src_lo: npt.NDArray[np.uint64]
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    tcp_flags: npt.NDArray[np.uint8]
    tcp_window: npt.NDArray[np.uint16]
    tcp_hdr_len: npt.NDArray[np.uint8]
    ttl: npt.NDArray[np.uint8]
    frag: npt.NDArray[np.uint8]
    payload_len: npt.NDArray[np.uint32]
    mqtt_type: npt.NDArray[np.uint8]
    icmp_type: npt.NDArray[np.uint8]
    arp_op: npt.NDArray[np.uint16]

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @classmethod
    def empty(cls, n: int = 0) -> PacketTable:
        """A table of ``n`` zeroed rows (readers fill it column by column)."""
        return cls(**{name: np.zeros(n, dtype=dt) for name, dt in COLUMNS.items()})

    @classmethod
    def from_columns(cls, **cols: Any) -> PacketTable:
        """Build from keyword arrays; missing columns are zeros, dtypes are enforced."""
        n = len(next(iter(cols.values()))) if cols else 0
        unknown = set(cols) - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown packet columns: {sorted(unknown)}")
        return cls(
            **{
                name: np.asarray(cols[name], dtype=dt) if name in cols else np.zeros(n, dtype=dt)
                for name, dt in COLUMNS.items()
            }
        )

    def take(self, index: npt.NDArray[Any] | slice) -> PacketTable:
        """Rows selected by a slice, boolean mask or integer index."""
        return PacketTable(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(tables: list[PacketTable]) -> PacketTable:
        """Rows of several tables, in order."""
        if not tables:
            return PacketTable.empty()
        return PacketTable(
            **{
                f.name: np.concatenate([getattr(t, f.name) for t in tables])
                for f in fields(PacketTable)
            }
        )


@dataclass
class Capture:
    """What a reader returns: the packets it could decode and an account of what it could not."""

    packets: PacketTable
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> frames skipped
    frames: int = 0  # frames seen in the file, decoded or not
    truncated_file: bool = False  # the file ended inside a record; what came before is kept
    linktypes: Counter[int] = field(default_factory=Counter)  # DLT -> frames

    @property
    def malformed_total(self) -> int:
        return int(sum(self.malformed.values()))

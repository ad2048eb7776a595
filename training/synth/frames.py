"""The generator's frame table and payload book: packets as columns before they become bytes.

Generators emit whole columns (one numpy array per header field) so a million packets cost a
few array operations, not a million Python objects; the pcap writer turns the table into
bytes in one vectorized pass. Payload bytes come from a book of templates: a packet holds a
template id and a length, and takes that template's first ``length`` bytes, optionally with a
short per-packet stamp written over them (an RTP sequence number, a DNS query id).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

# layout values: which headers follow the Ethernet header
ARP = 0
TCP = 1  # IPv4 + TCP, 20-byte header
TCP_MSS = 2  # IPv4 + TCP with a 4-byte MSS option (what real stacks put on SYN / SYN-ACK)
UDP = 3
ICMP = 4

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_OF_LAYOUT = {TCP: 6, TCP_MSS: 6, UDP: 17, ICMP: 1}
L4_HEADER_LEN = {ARP: 28, TCP: 20, TCP_MSS: 24, UDP: 8, ICMP: 8}

MAX_PAYLOAD = 1460
BROADCAST_MAC = 0xFFFF_FFFF_FFFF

_DTYPES: dict[str, npt.DTypeLike] = {
    "ts_us": np.int64,  # microseconds since the epoch
    "layout": np.uint8,
    "src_mac": np.uint64,
    "dst_mac": np.uint64,
    "src_ip": np.uint32,
    "dst_ip": np.uint32,
    "ttl": np.uint8,
    "sport": np.uint16,  # ICMP: echo identifier
    "dport": np.uint16,  # ICMP: echo sequence
    "seq": np.uint32,
    "ack": np.uint32,
    "flags": np.uint8,  # TCP flags
    "window": np.uint16,
    "icmp_type": np.uint8,
    "icmp_code": np.uint8,
    "arp_op": np.uint8,
    "payload_id": np.int32,
    "payload_len": np.uint16,
    "stamp": np.uint64,  # per-packet bytes over the template (RTP sequence, DNS id)
    "stamp_at": np.uint8,  # payload offset of the stamp (even)
    "stamp_len": np.uint8,  # stamp bytes (even, <= 6); 0 = no stamp
    "label": np.uint8,
}


@dataclass(frozen=True)
class Frames:
    """Packets to write, one numpy array per field, all of the same length."""

    ts_us: npt.NDArray[np.int64]
    layout: npt.NDArray[np.uint8]
    src_mac: npt.NDArray[np.uint64]
    dst_mac: npt.NDArray[np.uint64]
    src_ip: npt.NDArray[np.uint32]
    dst_ip: npt.NDArray[np.uint32]
    ttl: npt.NDArray[np.uint8]
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    seq: npt.NDArray[np.uint32]
    ack: npt.NDArray[np.uint32]
    flags: npt.NDArray[np.uint8]
    window: npt.NDArray[np.uint16]
    icmp_type: npt.NDArray[np.uint8]
    icmp_code: npt.NDArray[np.uint8]
    arp_op: npt.NDArray[np.uint8]
    payload_id: npt.NDArray[np.int32]
    payload_len: npt.NDArray[np.uint16]
    stamp: npt.NDArray[np.uint64]
    stamp_at: npt.NDArray[np.uint8]
    stamp_len: npt.NDArray[np.uint8]
    label: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.ts_us.shape[0])

    @classmethod
    def build(cls, n: int, **cols: Any) -> Frames:
        """``n`` frames; each column an array of length ``n`` or a scalar broadcast to it."""
        unknown = set(cols) - set(_DTYPES)
        if unknown:
            raise ValueError(f"unknown frame columns: {sorted(unknown)}")
        arrays: dict[str, Any] = {}
        for name, dtype in _DTYPES.items():
            value = cols.get(name, 0)
            if np.ndim(value) == 0:
                arrays[name] = np.full(n, value, dtype=dtype)
            else:
                arrays[name] = np.asarray(value).astype(dtype, copy=False)
                if arrays[name].shape != (n,):
                    raise ValueError(f"column {name} has shape {arrays[name].shape}, want ({n},)")
        arrays["payload_id"] = np.where(arrays["payload_len"] > 0, arrays["payload_id"], -1)
        stamped = arrays["stamp_len"] > 0
        arrays["stamp"] = np.where(stamped, arrays["stamp"], np.uint64(0))
        at = arrays["stamp_at"][stamped].astype(np.int64)
        length = arrays["stamp_len"][stamped].astype(np.int64)
        fits = (arrays["stamp"][stamped] >> (8 * length).astype(np.uint64)) == 0
        if np.any((at % 2 != 0) | (length % 2 != 0) | (length > 6) | ~fits) or np.any(
            at + length > arrays["payload_len"][stamped]
        ):
            # whole 16-bit words inside the payload keep the checksum update exact
            raise ValueError("stamps need an even offset and length (<= 6) within the payload")
        return cls(**arrays)

    def take(self, index: npt.NDArray[Any]) -> Frames:
        """Rows picked by an index or mask."""
        return Frames(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Frames]) -> Frames:
        """All rows of ``parts`` in order."""
        if not parts:
            return Frames.build(0)
        return Frames(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Frames)}
        )

    def sorted_by_time(self) -> Frames:
        """Rows in timestamp order (stable, so a burst keeps its generation order)."""
        return self.take(np.argsort(self.ts_us, kind="stable"))


class PayloadBook:
    """Payload templates by id; each is padded to MAX_PAYLOAD with seeded filler bytes."""

    def __init__(self, seed: int) -> None:
        self._ids: dict[bytes, int] = {}
        self._rows: list[npt.NDArray[np.uint8]] = []
        rng = np.random.default_rng([seed, 0xB00C])
        self._filler = rng.integers(0, 256, MAX_PAYLOAD, dtype=np.uint8)

    def add(self, prefix: bytes) -> int:
        """The id of a template starting with ``prefix`` (the same prefix gives the same id)."""
        if len(prefix) > MAX_PAYLOAD:
            raise ValueError(f"payload prefix of {len(prefix)} bytes exceeds {MAX_PAYLOAD}")
        if prefix not in self._ids:
            row = self._filler.copy()
            row[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
            self._ids[prefix] = len(self._rows)
            self._rows.append(row)
        return self._ids[prefix]

    def matrix(self) -> npt.NDArray[np.uint8]:
        """All templates as a (templates, MAX_PAYLOAD) array; row = id."""
        if not self._rows:
            return np.zeros((1, MAX_PAYLOAD), dtype=np.uint8)
        return np.stack(self._rows)

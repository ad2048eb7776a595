"""One capture made of a stretch of benign traffic followed by an attack capture (pcapng out).

The events benchmark replays each attack capture from its first packet: the agent's first
windows are a stream's start, padded. On a gateway an attack begins mid-stream, after the
site's own traffic; splicing a held-out benign capture before the attack measures that case
with the same captures. Inputs are the shared captures (classic pcap or pcapng, little-endian,
one section), read here record by record; each input's link type keeps its own interface.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

NS = 1_000_000_000
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


@dataclass(frozen=True)
class Record:
    """One frame: its time in ns, the link type it was captured on and its bytes."""

    ts_ns: int
    linktype: int
    data: bytes
    wire_len: int


def read_records(path: Path) -> list[Record]:
    """Every frame of a little-endian classic pcap or single-section pcapng file."""
    raw = path.read_bytes()
    if raw[:4] == PCAPNG_MAGIC:
        return _pcapng(raw)
    magic = struct.unpack_from("<I", raw)[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError(f"{path.name}: not a little-endian pcap or pcapng")
    scale = 1000 if magic == 0xA1B2C3D4 else 1
    linktype = struct.unpack_from("<I", raw, 20)[0]
    out, pos = [], 24
    while pos + 16 <= len(raw):
        sec, frac, incl, orig = struct.unpack_from("<IIII", raw, pos)
        out.append(Record(sec * NS + frac * scale, linktype, raw[pos + 16 : pos + 16 + incl], orig))
        pos += 16 + incl
    return out


def _pcapng(raw: bytes) -> list[Record]:
    interfaces: list[tuple[int, int]] = []  # (linktype, units per second)
    out, pos = [], 0
    while pos + 12 <= len(raw):
        kind, length = struct.unpack_from("<II", raw, pos)
        if length < 12 or pos + length > len(raw):
            break
        body = raw[pos + 8 : pos + length - 4]
        if kind == 1:  # interface description
            interfaces.append((struct.unpack_from("<H", body)[0], _units(body[8:])))
        elif kind == 6:  # enhanced packet
            iface, high, low, incl, orig = struct.unpack_from("<IIIII", body)
            linktype, units = interfaces[iface]
            ts = (high << 32 | low) * NS // units
            out.append(Record(ts, linktype, body[20 : 20 + incl], orig))
        pos += length
    return out


def _units(options: bytes) -> int:
    """if_tsresol from an interface's options (10^-6 s when absent)."""
    pos = 0
    while pos + 4 <= len(options):
        code, size = struct.unpack_from("<HH", options, pos)
        if code == 0:
            break
        if code == 9 and size >= 1:
            value = options[pos + 4]
            return 1 << (value & 0x7F) if value & 0x80 else 10 ** (value & 0x7F)
        pos += 4 + size + (-size % 4)
    return 1_000_000


def splice(benign: Path, seconds: float, attack: Path, out: Path, gap_s: float = 0.1) -> int:
    """``seconds`` of ``benign`` from its start, then ``attack`` from ``gap_s`` after it.

    Returns how many packets precede the attack (its onset in the spliced file).
    """
    before = read_records(benign)
    start = before[0].ts_ns
    before = [r for r in before if r.ts_ns < start + int(seconds * NS)]
    after = read_records(attack)
    shift = start + int((seconds + gap_s) * NS) - after[0].ts_ns
    after = [Record(r.ts_ns + shift, r.linktype, r.data, r.wire_len) for r in after]
    write_pcapng(out, before + after)
    return len(before)


def write_pcapng(path: Path, records: list[Record]) -> None:
    """One section, an interface per link type (nanosecond timestamps), packets in order."""
    linktypes = sorted({r.linktype for r in records})
    index = {linktype: i for i, linktype in enumerate(linktypes)}
    blocks = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for linktype in linktypes:
        tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
        blocks.append(_block(1, struct.pack("<HHI", linktype, 0, 0) + tsresol))
    for r in records:
        head = struct.pack(
            "<IIIII",
            index[r.linktype],
            r.ts_ns >> 32,
            r.ts_ns & 0xFFFFFFFF,
            len(r.data),
            r.wire_len,
        )
        blocks.append(_block(6, head + r.data + b"\0" * (-len(r.data) % 4)))
    path.write_bytes(b"".join(blocks))


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)

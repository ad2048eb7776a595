"""Crafted frames and capture files for the reader tests, built byte by byte with struct.

Small and explicit on purpose: each builder writes one header the way its RFC or the
pcap/pcapng specification lays it out, so a test states exactly which bytes it feeds in.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence

import numpy as np

from agent.features.decode import decode_frames
from agent.features.packets import PacketTable

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


# ---- network and transport layers ------------------------------------------------------


def ipv4(
    proto: int,
    payload: bytes,
    *,
    src: str = "10.0.0.1",
    dst: str = "10.0.0.2",
    ttl: int = 64,
    options: bytes = b"",
    more_fragments: bool = False,
    frag_offset: int = 0,
    total_len: int | None = None,
    ihl: int | None = None,
    version: int = 4,
) -> bytes:
    """An IPv4 packet (RFC 791); ``options`` must be a multiple of 4 bytes."""
    words = ihl if ihl is not None else 5 + len(options) // 4
    length = total_len if total_len is not None else 20 + len(options) + len(payload)
    flags = (0x2000 if more_fragments else 0) | (frag_offset // 8)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | words,
        0,
        length,
        0x1234,
        flags,
        ttl,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + payload


def ipv6(
    next_header: int,
    payload: bytes,
    *,
    src: str = "2001:db8::1",
    dst: str = "2001:db8::2",
    hop_limit: int = 64,
    extensions: Sequence[tuple[int, bytes]] = (),
    payload_len: int | None = None,
) -> bytes:
    """An IPv6 packet (RFC 8200) with extension headers given as (type, header bytes).

    Each extension's bytes start with its own next-header byte, which is filled in here.
    """
    chain = [kind for kind, _ in extensions] + [next_header]
    body = b"".join(bytes([chain[i + 1]]) + ext[1:] for i, (_, ext) in enumerate(extensions))
    first = chain[0]
    length = payload_len if payload_len is not None else len(body) + len(payload)
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        length,
        first,
        hop_limit,
        ipaddress.IPv6Address(src).packed,
        ipaddress.IPv6Address(dst).packed,
    )
    return header + body + payload


def hop_by_hop(pad_to: int = 8) -> tuple[int, bytes]:
    """A hop-by-hop options header of ``pad_to`` bytes holding one PadN option."""
    return 0, bytes([0, pad_to // 8 - 1, 1, pad_to - 4]) + bytes(pad_to - 4)


def routing(addresses: int = 1) -> tuple[int, bytes]:
    """A type-0-shaped routing header carrying ``addresses`` 16-byte addresses."""
    return 43, bytes([0, 2 * addresses, 0, addresses]) + bytes(4 + 16 * addresses)


def destination_options() -> tuple[int, bytes]:
    """An 8-byte destination options header (one PadN option)."""
    return 60, bytes([0, 0, 1, 4, 0, 0, 0, 0])


def fragment(offset: int = 0, more: bool = False, ident: int = 7) -> tuple[int, bytes]:
    """An IPv6 fragment header (RFC 8200 §4.5); ``offset`` in bytes, a multiple of 8."""
    return 44, struct.pack("!BBHI", 0, 0, (offset // 8) << 3 | int(more), ident)


def tcp(
    sport: int,
    dport: int,
    flags: int,
    payload: bytes = b"",
    *,
    window: int = 1024,
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    """A TCP segment (RFC 9293 §3.1); ``options`` must be a multiple of 4 bytes."""
    words = data_offset if data_offset is not None else 5 + len(options) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, words << 4, flags, window, 0, 0)
    return header + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A UDP datagram (RFC 768)."""
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(kind: int, code: int = 0, payload: bytes = b"") -> bytes:
    """An ICMP / ICMPv6 message: type, code, checksum, then the rest."""
    return struct.pack("!BBH", kind, code, 0) + payload


def arp(op: int, sender_ip: str, target_ip: str) -> bytes:
    """An Ethernet/IPv4 ARP packet (RFC 826): 28 bytes."""
    return struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        ETH_IPV4,
        6,
        4,
        op,
        MAC_A,
        ipaddress.IPv4Address(sender_ip).packed,
        bytes(6),
        ipaddress.IPv4Address(target_ip).packed,
    )


def mqtt(packet_type: int, body: bytes = b"", flags: int = 0) -> bytes:
    """An MQTT control packet: fixed header (type, flags, remaining length varint), body."""
    out = bytearray([(packet_type << 4) | flags])
    remaining = len(body)
    while True:
        byte, remaining = remaining % 128, remaining // 128
        out.append(byte | (0x80 if remaining else 0))
        if not remaining:
            return bytes(out) + body


# ---- link layers ------------------------------------------------------------------------


def ethernet(ethertype: int, payload: bytes, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """An Ethernet II frame with optional VLAN tags given as (TPID, VLAN id), outermost first."""
    # each tag (TPID, TCI) sits where the ethertype would be; the real type follows the last
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return MAC_B + MAC_A + tags + struct.pack("!H", ethertype) + payload


def sll(protocol: int, payload: bytes) -> bytes:
    """A Linux cooked capture v1 header (DLT 113): 16 bytes."""
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", protocol) + payload


def sll2(protocol: int, payload: bytes) -> bytes:
    """A Linux cooked capture v2 header (DLT 276): 20 bytes."""
    return struct.pack("!HHIHBB8s", protocol, 0, 2, 1, 0, 6, MAC_A + b"\0\0") + payload


def null(family: int, payload: bytes, order: str = "<") -> bytes:
    """BSD loopback (DLT 0): the address family in the writer's host byte order."""
    return struct.pack(order + "I", family) + payload


def loop(family: int, payload: bytes) -> bytes:
    """OpenBSD loopback (DLT 108): the address family in network byte order."""
    return struct.pack("!I", family) + payload


# ---- capture files ----------------------------------------------------------------------


def pcap(
    frames: Iterable[tuple[int, bytes]],
    *,
    linktype: int = 1,
    order: str = "<",
    nanoseconds: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A libpcap file of (timestamp ns, frame) records."""
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for ts_ns, frame in frames:
        seconds, frac = divmod(ts_ns, 1_000_000_000)
        frac = frac if nanoseconds else frac // 1000
        out.append(struct.pack(order + "IIII", seconds, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def block(kind: int, body: bytes, order: str = "<") -> bytes:
    """A pcapng block: type, total length, padded body, total length."""
    body = _pad(body)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    """A pcapng option: code, length, value padded to 32 bits."""
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def shb(order: str = "<") -> bytes:
    """A Section Header Block (version 1.0, unknown section length)."""
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)


def idb(
    linktype: int,
    *,
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    order: str = "<",
) -> bytes:
    """An Interface Description Block with optional if_tsresol (9) and if_tsoffset (14)."""
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += option(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(
    iface: int, ts_units: int, frame: bytes, *, wire_len: int | None = None, order: str = "<"
) -> bytes:
    """An Enhanced Packet Block; ``ts_units`` in the interface's resolution."""
    length = wire_len if wire_len is not None else len(frame)
    head = struct.pack(
        order + "IIIII", iface, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame), length
    )
    return block(6, head + frame, order)


def spb(frame: bytes, *, wire_len: int | None = None, order: str = "<") -> bytes:
    """A Simple Packet Block: original length and data, no interface id, no timestamp."""
    length = wire_len if wire_len is not None else len(frame)
    return block(3, struct.pack(order + "I", length) + frame, order)


def opb(iface: int, ts_units: int, frame: bytes, order: str = "<") -> bytes:
    """An obsolete Packet Block: 16-bit interface id and drop count, then as an EPB."""
    head = struct.pack(
        order + "HHIIII", iface, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame), len(frame)
    )
    return block(2, head + frame, order)


# ---- decoding helpers -------------------------------------------------------------------


def decode(
    frames: Sequence[tuple[int, bytes]], *, caplen: Sequence[int] | None = None
) -> tuple[PacketTable, dict[str, int]]:
    """Decode (linktype, frame) pairs in one decode_frames call, as the live source would."""
    buf = np.frombuffer(b"".join(f for _, f in frames) or b"\0", dtype=np.uint8)
    lengths = np.array([len(f) for _, f in frames], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    captured = np.array(caplen if caplen is not None else lengths, dtype=np.uint32)
    table, malformed = decode_frames(
        buf,
        offsets[: len(frames)],
        captured,
        lengths.astype(np.uint32),
        np.array([lt for lt, _ in frames], dtype=np.uint16),
        np.arange(len(frames), dtype=np.int64) * 1000,
    )
    return table, dict(malformed)


def row(table: PacketTable, index: int = 0) -> dict[str, int]:
    """One decoded row as plain ints, for readable assertions."""
    return {name: int(getattr(table, name)[index]) for name in table.__dataclass_fields__}

"""Addresses and TCP conversations: the building blocks benign devices and attacks share.

A TCP conversation is described by its events (time, direction, flags, payload); sequence and
acknowledgement numbers are then derived for all conversations at once from running byte
counts per direction, so they advance exactly as a real stack's would (SYN and FIN count one).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from training.synth.frames import ACK, FIN, SYN, TCP, TCP_MSS, UDP, Frames, PayloadBook

UPSTREAM_MAC = 0x0013_C400_0A01  # the ISP router: every off-LAN address arrives behind it

# Host numbers inside the LAN, by role (vendor OUIs make the MACs look like real devices).
GATEWAY_HOST = 1
SENSOR_BASE = 10
CAMERA_BASE = 40
HUB_HOST = 30
LAPTOP_HOST = 100
COMPROMISED_HOST = 66
_OUI_BY_RANGE = (
    (1, 2, 0xDCA632),  # Raspberry Pi Trading: the gateway
    (10, 30, 0x240AC4),  # Espressif: ESP32 sensors
    (30, 40, 0xB827EB),  # Raspberry Pi: the home hub
    (40, 60, 0xBCAD28),  # Hikvision: cameras
    (100, 101, 0x3C22FB),  # a laptop
)

# Public addresses from the documentation ranges (RFC 5737): files only, never a network.
CLOUD_IP = int(ipaddress.IPv4Address("198.51.100.10"))
FIRMWARE_IP = int(ipaddress.IPv4Address("198.51.100.20"))
NTP_IP = int(ipaddress.IPv4Address("192.0.2.123"))
ATTACKER_NET = int(ipaddress.IPv4Address("203.0.113.0"))

TTL_LINUX, TTL_WINDOWS, TTL_LWIP = 64, 128, 255
EPHEMERAL_LO = 32768
IntLike = npt.NDArray[Any] | int | np.integer[Any]  # a column, or a scalar broadcast to it

# (from_client, flags, payload_id, payload_len, delay_in_rtts); ids / lengths may be
# per-connection arrays
Step = tuple[bool, int, Any, Any, float]


class Network:
    """The LAN behind the gateway: host numbers to IPv4 integers and MACs."""

    def __init__(self, cidr: str) -> None:
        net = ipaddress.IPv4Network(cidr)
        self.base = int(net.network_address)
        self.size = net.num_addresses
        self.gateway = self.host(GATEWAY_HOST)

    def host(self, number: int) -> int:
        """The address of LAN host ``number`` (1 = gateway)."""
        return self.base + number

    def is_lan(self, ips: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        offset = ips.astype(np.int64) - self.base
        return (offset >= 0) & (offset < self.size)

    def mac(self, ips: npt.NDArray[Any] | int) -> npt.NDArray[np.uint64]:
        """MAC seen for each address: a vendor MAC on the LAN, the ISP router's otherwise."""
        ips = np.atleast_1d(np.asarray(ips, dtype=np.uint32))
        host = (ips.astype(np.int64) - self.base) & 0xFFFF
        oui = np.full(ips.shape, 0x02_1A_11, dtype=np.uint64)  # locally administered
        for lo, hi, vendor in _OUI_BY_RANGE:
            oui = np.where((host >= lo) & (host < hi), np.uint64(vendor), oui)
        macs = (oui << np.uint64(24)) | np.uint64(0x5A0000) | host.astype(np.uint64)
        return np.where(self.is_lan(ips), macs, np.uint64(UPSTREAM_MAC))


@dataclass
class TcpEvents:
    """Events of many TCP conversations, appended in any order; ``frames`` orders them."""

    conn: list[npt.NDArray[np.int64]] = field(default_factory=list)
    t_us: list[npt.NDArray[np.int64]] = field(default_factory=list)
    from_client: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    flags: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    payload_id: list[npt.NDArray[np.int32]] = field(default_factory=list)
    payload_len: list[npt.NDArray[np.int64]] = field(default_factory=list)

    def add(
        self,
        conn: Any,
        t_us: Any,
        from_client: Any,
        flags: Any,
        payload_id: Any = -1,
        payload_len: Any = 0,
    ) -> None:
        """Append events; scalars broadcast to the length of ``t_us``."""
        t = np.atleast_1d(np.asarray(t_us, dtype=np.int64))
        n = t.shape[0]
        self.conn.append(np.broadcast_to(np.asarray(conn, np.int64), (n,)))
        self.t_us.append(t)
        self.from_client.append(np.broadcast_to(np.asarray(from_client, np.bool_), (n,)))
        self.flags.append(np.broadcast_to(np.asarray(flags, np.uint8), (n,)))
        self.payload_id.append(np.broadcast_to(np.asarray(payload_id, np.int32), (n,)))
        self.payload_len.append(np.broadcast_to(np.asarray(payload_len, np.int64), (n,)))

    def add_template(
        self,
        conn: npt.NDArray[np.int64],
        t0_us: npt.NDArray[np.int64],
        rtt_us: npt.NDArray[np.int64],
        steps: list[Step],
    ) -> npt.NDArray[np.int64]:
        """The same exchange on every connection in ``conn``; returns each one's last time.

        ``steps`` are ``(from_client, flags, payload_id, payload_len, delay_in_rtts)``: each
        event follows the previous one by ``delay`` round-trip times of its connection.
        """
        delays = np.array([s[4] for s in steps], dtype=np.float64)
        offsets = np.cumsum(delays)[None, :] * rtt_us[:, None]
        times = t0_us[:, None] + offsets.astype(np.int64)
        # 1 µs apart at least, so an exchange never reorders within a connection
        times = times + np.arange(len(steps), dtype=np.int64)[None, :]
        for k, (from_client, flags, pid, plen, _) in enumerate(steps):
            self.add(conn, times[:, k], from_client, flags, pid, plen)
        return times[:, -1]


@dataclass(frozen=True)
class Conns:
    """Per-connection endpoints and initial sequence numbers (arrays of one length)."""

    c_ip: npt.NDArray[np.uint32]
    c_port: npt.NDArray[np.uint16]
    c_ttl: npt.NDArray[np.uint8]
    c_win: npt.NDArray[np.uint16]
    s_ip: npt.NDArray[np.uint32]
    s_port: npt.NDArray[np.uint16]
    s_ttl: npt.NDArray[np.uint8]
    s_win: npt.NDArray[np.uint16]
    isn_c: npt.NDArray[np.uint32]
    isn_s: npt.NDArray[np.uint32]
    mss: npt.NDArray[np.bool_]  # SYN / SYN-ACK carry an MSS option

    @classmethod
    def make(cls, n: int, rng: np.random.Generator, **cols: Any) -> Conns:
        """``n`` connections; scalars broadcast, ISNs and ports random unless given."""
        values: dict[str, Any] = {
            "c_port": rng.integers(EPHEMERAL_LO, 61000, n),
            "isn_c": rng.integers(0, 2**32, n, dtype=np.uint64),
            "isn_s": rng.integers(0, 2**32, n, dtype=np.uint64),
            "c_ttl": TTL_LINUX,
            "s_ttl": TTL_LINUX,
            "c_win": 64240,
            "s_win": 65160,
            "mss": True,
        }
        values.update(cols)
        types = {
            "c_ip": np.uint32,
            "c_port": np.uint16,
            "c_ttl": np.uint8,
            "c_win": np.uint16,
            "s_ip": np.uint32,
            "s_port": np.uint16,
            "s_ttl": np.uint8,
            "s_win": np.uint16,
            "isn_c": np.uint32,
            "isn_s": np.uint32,
            "mss": np.bool_,
        }
        arrays: dict[str, Any] = {
            k: np.broadcast_to(np.asarray(values[k]).astype(t), (n,)) for k, t in types.items()
        }
        return cls(**arrays)


def tcp_frames(events: TcpEvents, conns: Conns, net: Network, label: int) -> Frames:
    """Frames of all conversations, with seq / ack advancing per direction."""
    if not events.t_us:
        return Frames.build(0)
    conn = np.concatenate(events.conn)
    t_us = np.concatenate(events.t_us)
    order = np.lexsort((t_us, conn))
    conn, t_us = conn[order], t_us[order]
    from_client = np.concatenate(events.from_client)[order]
    flags = np.concatenate(events.flags)[order]
    pid = np.concatenate(events.payload_id)[order]
    plen = np.concatenate(events.payload_len)[order]

    consumed = plen + ((flags & SYN) > 0) + ((flags & FIN) > 0)
    sent_c = _before_in_group(np.where(from_client, consumed, 0), conn)
    sent_s = _before_in_group(np.where(from_client, 0, consumed), conn)
    isn_c = conns.isn_c[conn].astype(np.int64)
    isn_s = conns.isn_s[conn].astype(np.int64)
    seq = np.where(from_client, isn_c + sent_c, isn_s + sent_s) & 0xFFFF_FFFF
    ack = np.where(from_client, isn_s + sent_s, isn_c + sent_c) & 0xFFFF_FFFF
    ack = np.where((flags & ACK) > 0, ack, 0)

    src_ip = np.where(from_client, conns.c_ip[conn], conns.s_ip[conn])
    dst_ip = np.where(from_client, conns.s_ip[conn], conns.c_ip[conn])
    layout = np.where(((flags & SYN) > 0) & conns.mss[conn], TCP_MSS, TCP)
    return Frames.build(
        len(t_us),
        ts_us=t_us,
        layout=layout,
        src_mac=net.mac(src_ip),
        dst_mac=net.mac(dst_ip),
        src_ip=src_ip,
        dst_ip=dst_ip,
        ttl=np.where(from_client, conns.c_ttl[conn], conns.s_ttl[conn]),
        sport=np.where(from_client, conns.c_port[conn], conns.s_port[conn]),
        dport=np.where(from_client, conns.s_port[conn], conns.c_port[conn]),
        seq=seq,
        ack=ack,
        flags=flags,
        window=np.where(from_client, conns.c_win[conn], conns.s_win[conn]),
        payload_id=pid,
        payload_len=plen,
        label=label,
    )


def _before_in_group(values: npt.NDArray[np.int64], group: npt.NDArray[np.int64]) -> Any:
    """For each row, the sum of ``values`` over earlier rows of the same (contiguous) group."""
    total = np.cumsum(values) - values
    first = np.ones(len(group), dtype=np.bool_)
    first[1:] = group[1:] != group[:-1]
    start_of = np.maximum.accumulate(np.where(first, np.arange(len(group)), 0))
    return total - total[start_of]


def jittered_times(
    rng: np.random.Generator, start: float, stop: float, rate: float, jitter: float = 0.5
) -> npt.NDArray[np.float64]:
    """About ``rate`` events/s in [start, stop): a regular clock with ±jitter/2 of a period."""
    n = round((stop - start) * rate)
    if n <= 0:
        return np.zeros(0)
    base = start + (np.arange(n) + 0.5) / rate
    t = base + (rng.random(n) - 0.5) * jitter / rate
    return np.sort(np.clip(t, start, np.nextafter(stop, start)))


def to_us(start_time: int, seconds: npt.NDArray[np.float64] | float) -> npt.NDArray[np.int64]:
    """Scenario seconds to absolute epoch microseconds."""
    return (np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64) + start_time * 1_000_000


@dataclass(frozen=True)
class Context:
    """What every builder needs: randomness, addresses, the payload book, the time frame."""

    rng: np.random.Generator
    net: Network
    book: PayloadBook
    start_time: int  # epoch seconds
    duration: float  # seconds

    def us(self, seconds: npt.NDArray[np.float64] | float) -> npt.NDArray[np.int64]:
        return to_us(self.start_time, seconds)


def udp_frames(
    ctx: Context,
    seconds: npt.NDArray[np.float64],
    src: IntLike,
    dst: IntLike,
    sport: IntLike,
    dport: IntLike,
    ttl: IntLike,
    pids: IntLike,
    lens: IntLike,
    label: int = 0,
    stamp: IntLike = 0,
    stamp_at: int = 0,
    stamp_len: int = 0,
) -> Frames:
    """UDP datagrams (scalars broadcast); ``stamp`` overwrites payload bytes per datagram."""
    n = seconds.size
    src_a = np.broadcast_to(np.asarray(src, np.uint32), (n,))
    dst_a = np.broadcast_to(np.asarray(dst, np.uint32), (n,))
    return Frames.build(
        n,
        ts_us=ctx.us(seconds),
        layout=UDP,
        src_mac=ctx.net.mac(src_a),
        dst_mac=ctx.net.mac(dst_a),
        src_ip=src_a,
        dst_ip=dst_a,
        ttl=ttl,
        sport=sport,
        dport=dport,
        payload_id=pids,
        payload_len=lens,
        stamp=stamp,
        stamp_at=stamp_at,
        stamp_len=stamp_len,
        label=label,
    )

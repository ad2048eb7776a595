"""Attack traffic: one builder per kind, all driven by the spec's window and packets/s.

``intensity`` counts every packet the attack causes, victims' replies included, so a kind made
of multi-packet exchanges (a login attempt, an HTTP request) runs ``intensity / packets per
exchange`` exchanges per second. Victims answer as real stacks do: closed ports RST, Linux
rate-limits ICMP port-unreachable to about one per second, brokers refuse bad credentials
with CONNACK 4 / 5.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from training.synth import payloads as pl
from training.synth.benign import MQTT_PORT, PA
from training.synth.flows import (
    ATTACKER_NET,
    CAMERA_BASE,
    COMPROMISED_HOST,
    HUB_HOST,
    SENSOR_BASE,
    TTL_LINUX,
    Conns,
    Context,
    Step,
    TcpEvents,
    jittered_times,
    tcp_frames,
    udp_frames,
)
from training.synth.frames import ACK, ARP, BROADCAST_MAC, FIN, ICMP, RST, SYN, TCP, TCP_MSS, Frames
from training.synth.scenario import AttackSpec

Builder = Callable[[Context, AttackSpec, int], Frames]


def _random_public(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint32]:
    """Spoofed sources: random unicast addresses outside 0/8, 10/8, 127/8 and multicast."""
    ips = rng.integers(0x0B00_0000, 0xDF00_0000, n, dtype=np.uint64)
    return np.where((ips >> np.uint64(24)) == 127, ips + np.uint64(1 << 24), ips).astype(np.uint32)


def _bots(spec: AttackSpec, default: int) -> npt.NDArray[np.uint32]:
    """Attacking hosts in 203.0.113.0/24 (documentation range)."""
    count = spec.sources or default
    return (ATTACKER_NET + 10 + np.arange(count) % 240).astype(np.uint32)


def lan_attackers(ctx: Context, spec: AttackSpec) -> npt.NDArray[np.uint32]:
    """Compromised LAN hosts (a Mirai-infected device and its neighbours), .66 to .215."""
    count = spec.sources or 1
    hosts = [ctx.net.host(COMPROMISED_HOST + i % 150) for i in range(count)]
    return np.array(hosts, dtype=np.uint32)


def attack_target(ctx: Context, spec: AttackSpec, default_host: int) -> int:
    return int(ipaddress.IPv4Address(spec.target)) if spec.target else ctx.net.host(default_host)


def _victims(ctx: Context) -> list[int]:
    """The LAN hosts attacks aim at and that answer probes: gateway, camera, hub, sensors."""
    return [ctx.net.gateway, ctx.net.host(CAMERA_BASE), ctx.net.host(HUB_HOST)] + [
        ctx.net.host(SENSOR_BASE + i) for i in range(3)
    ]


def syn_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Spoofed SYNs at one port; the victim's SYN-ACKs only for the few its backlog admits."""
    rng = ctx.rng
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity * 0.96, jitter=1.0)
    n = t.size
    target = attack_target(ctx, spec, 1)
    src = _random_public(rng, n)
    sport = rng.integers(1024, 65536, n)
    seq = rng.integers(0, 2**32, n, dtype=np.uint64)
    syn = Frames.build(
        n,
        ts_us=ctx.us(t),
        layout=TCP,
        src_mac=ctx.net.mac(src),
        dst_mac=ctx.net.mac(target)[0],
        src_ip=src,
        dst_ip=target,
        ttl=rng.integers(40, 250, n),
        sport=sport,
        dport=spec.port or MQTT_PORT,
        seq=seq,
        flags=SYN,
        window=rng.integers(512, 65536, n),
        label=label,
    )
    answered = np.flatnonzero(rng.random(n) < 0.04)
    reply = Frames.build(
        answered.size,
        ts_us=ctx.us(t[answered] + 0.0002),
        layout=TCP_MSS,
        src_mac=ctx.net.mac(target)[0],
        dst_mac=ctx.net.mac(src[answered]),
        src_ip=target,
        dst_ip=src[answered],
        ttl=TTL_LINUX,
        sport=spec.port or MQTT_PORT,
        dport=sport[answered],
        seq=rng.integers(0, 2**32, answered.size, dtype=np.uint64),
        ack=(seq[answered] + 1) & 0xFFFF_FFFF,
        flags=SYN | ACK,
        window=65160,
        label=label,
    )
    return Frames.concat([syn, reply])


def udp_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Spoofed (or botnet) UDP datagrams of random size to random ports of the victim."""
    rng = ctx.rng
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity, jitter=1.0)
    n = t.size
    src = _random_public(rng, n) if spec.sources == 0 else rng.choice(_bots(spec, 1), n)
    dport = np.full(n, spec.port) if spec.port else rng.integers(1, 65536, n)
    return udp_frames(
        ctx,
        t,
        src,
        attack_target(ctx, spec, 1),
        rng.integers(1024, 65536, n),
        dport,
        rng.integers(40, 250, n),
        ctx.book.add(b""),
        rng.integers(16, 1400, n),
        label,
    )


def icmp_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Echo requests from a botnet; the victim answers every one."""
    rng = ctx.rng
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity / 2, jitter=1.0)
    n = t.size
    bots = _bots(spec, 12)
    which = rng.integers(0, bots.size, n)
    src = bots[which]
    target = attack_target(ctx, spec, 1)
    seq = np.arange(n) & 0xFFFF
    payload = ctx.book.add(b"")
    common = {
        "layout": ICMP,
        "sport": 0x1F00 + which,
        "dport": seq,
        "payload_id": payload,
        "payload_len": 56,
        "label": label,
    }
    request = Frames.build(
        n,
        ts_us=ctx.us(t),
        src_mac=ctx.net.mac(src),
        dst_mac=ctx.net.mac(target)[0],
        src_ip=src,
        dst_ip=target,
        ttl=rng.integers(44, 60, n),
        icmp_type=8,
        **common,
    )
    reply = Frames.build(
        n,
        ts_us=ctx.us(t + 0.00015),
        src_mac=ctx.net.mac(target)[0],
        dst_mac=ctx.net.mac(src),
        src_ip=target,
        dst_ip=src,
        ttl=TTL_LINUX,
        icmp_type=0,
        **common,
    )
    return Frames.concat([request, reply])


def exchanges(
    ctx: Context,
    spec: AttackSpec,
    label: int,
    clients: npt.NDArray[np.uint32],
    server: int,
    port: int,
    steps: list[Step],
    rtt_range: tuple[int, int],
    start: float | None = None,
) -> Frames:
    """One TCP connection per exchange, ``intensity / len(steps)`` exchanges per second."""
    rng = ctx.rng
    t = jittered_times(
        rng, spec.start if start is None else start, spec.stop, spec.intensity / len(steps)
    )
    n = t.size
    if n == 0:
        return Frames.build(0)
    steps = [
        (
            c,
            f,
            pid[rng.integers(0, pid.size, n)] if isinstance(pid, np.ndarray) else pid,
            plen[rng.integers(0, plen.size, n)] if isinstance(plen, np.ndarray) else plen,
            d,
        )
        for c, f, pid, plen, d in steps
    ]
    conns = Conns.make(n, rng, c_ip=rng.choice(clients, n), s_ip=server, s_port=port)
    ev = TcpEvents()
    ev.add_template(np.arange(n), ctx.us(t), rng.integers(*rtt_range, n), steps)
    return tcp_frames(ev, conns, ctx.net, label)


HANDSHAKE: list[Step] = [
    (True, SYN, -1, 0, 0.0),
    (False, SYN | ACK, -1, 0, 0.5),
    (True, ACK, -1, 0, 0.5),
]
CLOSE_BY_CLIENT: list[Step] = [
    (True, FIN | ACK, -1, 0, 0.1),
    (False, FIN | ACK, -1, 0, 0.5),
    (True, ACK, -1, 0, 0.5),
]
CLOSE_BY_SERVER: list[Step] = [
    (False, FIN | ACK, -1, 0, 0.05),
    (True, FIN | ACK, -1, 0, 0.5),
    (False, ACK, -1, 0, 0.5),
]


def http_get_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """A botnet opening full connections and sending GET requests to a camera's web server."""
    book = ctx.book
    paths = ["/", "/index.html", "/login.asp", "/cgi-bin/main.cgi", "/ISAPI/System/status"]
    gets = [pl.http_get("camera.local", p) for p in paths]
    steps = [
        *HANDSHAKE,
        (True, PA, np.array([book.add(g) for g in gets]), np.array([len(g) for g in gets]), 0.05),
        (False, ACK, -1, 0, 0.5),
        (False, PA, book.add(pl.HTTP_OK), 590, 0.1),
        (True, ACK, -1, 0, 0.5),
        *CLOSE_BY_CLIENT,
    ]
    return exchanges(
        ctx,
        spec,
        label,
        _bots(spec, 25),
        attack_target(ctx, spec, CAMERA_BASE),
        spec.port or 80,
        steps,
        (20_000, 90_000),
    )


def _probe_replies(
    ctx: Context,
    t: npt.NDArray[np.float64],
    src: npt.NDArray[np.uint32],
    dst: npt.NDArray[np.uint32],
    sport: npt.NDArray[np.int64],
    dport: npt.NDArray[np.int64],
    seq: npt.NDArray[np.uint64],
    open_: npt.NDArray[np.bool_],
    answered: npt.NDArray[np.bool_],
    label: int,
) -> Frames:
    """SYN-ACK from open ports (then the scanner's RST), RST-ACK from closed ones."""
    rng = ctx.rng
    idx = np.flatnonzero(answered)
    delay = rng.uniform(0.0002, 0.004, idx.size)
    is_open = open_[idx]
    reply = Frames.build(
        idx.size,
        ts_us=ctx.us(t[idx] + delay),
        layout=np.where(is_open, TCP_MSS, TCP),
        src_mac=ctx.net.mac(dst[idx]),
        dst_mac=ctx.net.mac(src[idx]),
        src_ip=dst[idx],
        dst_ip=src[idx],
        ttl=TTL_LINUX,
        sport=dport[idx],
        dport=sport[idx],
        seq=np.where(is_open, rng.integers(0, 2**32, idx.size, dtype=np.uint64), 0),
        ack=(seq[idx] + 1) & 0xFFFF_FFFF,
        flags=np.where(is_open, SYN | ACK, RST | ACK),
        window=np.where(is_open, 65160, 0),
        label=label,
    )
    o = idx[is_open]
    reset = Frames.build(
        o.size,
        ts_us=ctx.us(t[o] + 0.005),
        layout=TCP,
        src_mac=ctx.net.mac(src[o]),
        dst_mac=ctx.net.mac(dst[o]),
        src_ip=src[o],
        dst_ip=dst[o],
        ttl=TTL_LINUX,
        sport=sport[o],
        dport=dport[o],
        seq=(seq[o] + 1) & 0xFFFF_FFFF,
        flags=RST,
        label=label,
    )
    return Frames.concat([reply, reset])


# Listening TCP ports by LAN host number: the gateway (SSH, DNS, web, MQTT), the camera
# (telnet, web, RTSP), the hub (SSH, Home Assistant); anything else answers RST.
OPEN_PORTS = {1: (22, 53, 80, 443, 1883, 8883), CAMERA_BASE: (23, 80, 554), HUB_HOST: (22, 8123)}


def tcp_syn_scan(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """nmap -sS: SYN probes over many ports of one or several hosts, host-interleaved."""
    rng = ctx.rng
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity / 2, jitter=0.3)
    n = t.size
    hosts = [attack_target(ctx, spec, 1)] if spec.hosts == 1 else _victims(ctx)[: spec.hosts]
    hosts_a = np.array(hosts, dtype=np.uint32)
    ports = np.concatenate(
        [rng.permutation(np.arange(1, 1025)), rng.permutation(np.arange(1025, 65536))]
    )
    k = np.arange(n)
    which = k % hosts_a.size
    dst = hosts_a[which]
    dport = ports[(k // hosts_a.size) % ports.size]
    src = rng.choice(_bots(spec, 1), n)
    sport = np.full(n, rng.integers(32768, 61000))
    seq = rng.integers(0, 2**32, n, dtype=np.uint64)
    probe = Frames.build(
        n,
        ts_us=ctx.us(t),
        layout=TCP_MSS,
        src_mac=ctx.net.mac(src),
        dst_mac=ctx.net.mac(dst),
        src_ip=src,
        dst_ip=dst,
        ttl=rng.integers(37, 60),
        sport=sport,
        dport=dport,
        seq=seq,
        flags=SYN,
        window=1024,
        label=label,
    )
    open_ = np.zeros(n, dtype=np.bool_)
    for number, ports_open in OPEN_PORTS.items():
        open_ |= (dst == ctx.net.host(number)) & np.isin(dport, ports_open)
    replies = _probe_replies(
        ctx, t, src, dst, sport, dport, seq, open_, np.ones(n, np.bool_), label
    )
    return Frames.concat([probe, replies])


def udp_scan(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """nmap -sU: empty datagrams to many ports; port-unreachable replies rate-limited to 1/s."""
    rng = ctx.rng
    hosts = np.array(
        [attack_target(ctx, spec, 1)] if spec.hosts == 1 else _victims(ctx)[: spec.hosts],
        dtype=np.uint32,
    )
    replies_per_s = min(spec.intensity / 2, float(hosts.size))  # at most one per host per second
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity - replies_per_s, jitter=0.3)
    n = t.size
    if n == 0:
        return Frames.build(0)
    ports = np.concatenate(
        [rng.permutation(np.arange(1, 1025)), rng.permutation(np.arange(1025, 65536))]
    )
    k = np.arange(n)
    dst = hosts[k % hosts.size]
    dport = ports[(k // hosts.size) % ports.size]
    src = _bots(spec, 1)[0]
    sport = int(rng.integers(32768, 61000))
    probes = udp_frames(ctx, t, src, dst, sport, dport, rng.integers(37, 60), -1, 0, label)
    # Linux icmp_ratelimit: about one destination-unreachable per second per destination
    second = np.floor(t).astype(np.int64) * hosts.size + k % hosts.size
    first = np.unique(second, return_index=True)[1]
    first = first[~np.isin(dport[first], (53, 123, 5353))]  # open ports stay silent
    pids = [
        ctx.book.add(_unreachable_quote(int(src), int(dst[i]), sport, int(dport[i]))) for i in first
    ]
    reply = Frames.build(
        first.size,
        ts_us=ctx.us(t[first] + 0.0003),
        layout=ICMP,
        src_mac=ctx.net.mac(dst[first]),
        dst_mac=ctx.net.mac(np.full(first.size, src)),
        src_ip=dst[first],
        dst_ip=src,
        ttl=TTL_LINUX,
        icmp_type=3,
        icmp_code=3,
        payload_id=np.array(pids, dtype=np.int32),
        payload_len=28,
        label=label,
    )
    return Frames.concat([probes, reply])


def _unreachable_quote(src: int, dst: int, sport: int, dport: int) -> bytes:
    """The IPv4 + UDP header an ICMP port-unreachable quotes back (RFC 792)."""
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 28, 0, 0, 45, 17, 0, src, dst)
    total = sum(struct.unpack("!10H", ip))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    ip = ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:]
    return ip + struct.pack("!HHHH", sport, dport, 8, 0)


def _mirai_scan(
    ctx: Context,
    spec: AttackSpec,
    label: int,
    stop: float,
    ports: tuple[int, ...],
    victim: int,
    victim_port: int,
) -> Frames:
    """Mirai's scanner: SYNs with seq = target address to random hosts on telnet / ssh ports."""
    rng = ctx.rng
    t = jittered_times(rng, spec.start, stop, spec.intensity, jitter=1.0)
    n = t.size
    src = lan_attackers(ctx, spec)[rng.integers(0, max(spec.sources, 1), n)]
    lan = rng.random(n) < 0.6
    dst = np.where(lan, ctx.net.base + rng.integers(2, 255, n), _random_public(rng, n)).astype(
        np.uint32
    )
    weights = np.array([9.0] + [1.0] * (len(ports) - 1))
    dport = rng.choice(np.array(ports), n, p=weights / weights.sum())
    sport = rng.integers(1024, 65536, n)
    seq = dst.astype(np.uint64)  # Mirai's tell-tale: sequence number = target address
    probe = Frames.build(
        n,
        ts_us=ctx.us(t),
        layout=TCP,
        src_mac=ctx.net.mac(src),
        dst_mac=ctx.net.mac(dst),
        src_ip=src,
        dst_ip=dst,
        ttl=TTL_LINUX,
        sport=sport,
        dport=dport,
        seq=seq,
        flags=SYN,
        window=rng.integers(1024, 65536, n),
        label=label,
    )
    existing = np.isin(dst, np.array(_victims(ctx), dtype=np.uint32))
    open_ = (dst == victim) & (dport == victim_port)
    return Frames.concat(
        [probe, _probe_replies(ctx, t, src, dst, sport, dport, seq, open_, existing, label)]
    )


def _credentials(ctx: Context, newline: bytes) -> tuple[npt.NDArray[np.int64], ...]:
    users = [u.encode() + newline for u, _ in pl.MIRAI_CREDENTIALS]
    words = [p.encode() + newline for _, p in pl.MIRAI_CREDENTIALS]
    return (
        np.array([ctx.book.add(u) for u in users]),
        np.array([len(u) for u in users]),
        np.array([ctx.book.add(w) for w in words]),
        np.array([len(w) for w in words]),
    )


def telnet_bruteforce(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Mirai: scan the LAN and beyond on 23/2323, then try its credential list on a camera."""
    return _bruteforce(ctx, spec, label, telnet=True)


def ssh_bruteforce(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Scan for port 22, then password guessing against the gateway's SSH server."""
    return _bruteforce(ctx, spec, label, telnet=False)


def _bruteforce(ctx: Context, spec: AttackSpec, label: int, telnet: bool) -> Frames:
    book = ctx.book
    victim = attack_target(ctx, spec, CAMERA_BASE if telnet else 1)
    port = spec.port or (23 if telnet else 22)
    switch = spec.start + 0.3 * (spec.stop - spec.start)
    scan = _mirai_scan(ctx, spec, label, switch, (23, 2323) if telnet else (22,), victim, port)
    if telnet:
        users, user_lens, words, word_lens = _credentials(ctx, b"\r\n")
        steps: list[Step] = [
            *HANDSHAKE,
            (False, PA, book.add(pl.TELNET_LOGIN), len(pl.TELNET_LOGIN), 0.5),
            (True, PA, users, user_lens, 0.3),
            (False, PA, book.add(pl.TELNET_PASSWORD), len(pl.TELNET_PASSWORD), 0.5),
            (True, PA, words, word_lens, 0.3),
            (False, PA, book.add(pl.TELNET_FAILED), len(pl.TELNET_FAILED), 40.0),
            (True, ACK, -1, 0, 0.5),
            *CLOSE_BY_CLIENT,
        ]
    else:
        packet = book.add(pl.SSH_PACKET)
        steps = [
            *HANDSHAKE,
            (False, PA, book.add(pl.SSH_SERVER_BANNER), len(pl.SSH_SERVER_BANNER), 0.5),
            (True, PA, book.add(pl.SSH_CLIENT_BANNER), len(pl.SSH_CLIENT_BANNER), 0.5),
            (True, PA, packet, 1000, 0.1),
            (False, PA, packet, 1080, 0.5),
            (True, PA, packet, 48, 0.5),
            (False, PA, packet, 564, 2.0),
            (True, PA, packet, 100, 0.5),
            (False, PA, packet, 52, 0.5),
            (True, PA, packet, 116, 0.5),
            (False, PA, packet, 52, 60.0),
            *CLOSE_BY_CLIENT,
        ]
    attacker = lan_attackers(ctx, spec)
    logins = exchanges(ctx, spec, label, attacker, victim, port, steps, (1_000, 8_000), switch)
    return Frames.concat([scan, logins])


def arp_spoof(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Forged ARP replies claiming the gateway's address, to each device and gratuitously."""
    rng, net = ctx.rng, ctx.net
    t = jittered_times(rng, spec.start, spec.stop, spec.intensity, jitter=0.2)
    n = t.size
    attacker = lan_attackers(ctx, spec)[0]
    claimed = attack_target(ctx, spec, 1)
    victims = np.array([v for v in _victims(ctx) if v != claimed], dtype=np.uint32)
    victim = victims[np.arange(n) % victims.size]
    gratuitous = np.arange(n) % (victims.size + 1) == victims.size
    return Frames.build(
        n,
        ts_us=ctx.us(t),
        layout=ARP,
        arp_op=2,
        src_mac=net.mac(attacker)[0],
        dst_mac=np.where(gratuitous, np.uint64(BROADCAST_MAC), net.mac(victim)),
        src_ip=claimed,
        dst_ip=np.where(gratuitous, claimed, victim),
        label=label,
    )

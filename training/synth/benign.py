"""Benign gateway life: MQTT sensors and a hub, a camera stream, DNS, NTP, HTTPS, SSH, firmware.

Each device kind is one function returning frames labelled benign (id 0). Timing follows how
the devices behave: sensors publish on a jittered clock and send PINGREQ only when idle for a
keep-alive period, the broker fans every PUBLISH out to the subscribed hub, the camera streams
RTP at its frame rate with an I-frame burst every GOP, clients resolve names before connecting.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from training.synth import payloads as pl
from training.synth.flows import (
    CAMERA_BASE,
    CLOUD_IP,
    FIRMWARE_IP,
    HUB_HOST,
    LAPTOP_HOST,
    NTP_IP,
    SENSOR_BASE,
    TTL_LINUX,
    TTL_LWIP,
    TTL_WINDOWS,
    Conns,
    Context,
    TcpEvents,
    tcp_frames,
    udp_frames,
)
from training.synth.frames import ACK, ARP, BROADCAST_MAC, FIN, PSH, SYN, Frames
from training.synth.scenario import BenignSpec

BENIGN = 0
MQTT_PORT = 1883
PA = PSH | ACK


def _sensor_schedule(
    rng: np.random.Generator, t0: float, end: float, interval: float, keepalive: int
) -> tuple[list[float], list[float]]:
    """Publish times on a jittered clock, and PINGREQ times wherever a keep-alive went idle."""
    publishes: list[float] = []
    pings: list[float] = []
    last = t0
    t = t0 + rng.uniform(0.2, 1.0) * interval
    while t < end:
        while last + keepalive < t:
            last += keepalive
            pings.append(last)
        publishes.append(t)
        last = t
        t += max(0.3, interval * (1.0 + 0.15 * rng.standard_normal()))
    while last + keepalive < end:
        last += keepalive
        pings.append(last)
    return publishes, pings


def mqtt_devices(ctx: Context, spec: BenignSpec) -> Frames:
    """Sensors publishing to the broker on the gateway, and the hub that subscribes to them."""
    rng, net, book = ctx.rng, ctx.net, ctx.book
    n = spec.mqtt_sensors
    if n == 0:
        return Frames.build(0)
    clients = np.array([net.host(SENSOR_BASE + i) for i in range(n)] + [net.host(HUB_HOST)])
    conns = Conns.make(
        n + 1,
        rng,
        c_ip=clients,
        c_ttl=np.array([TTL_LWIP] * n + [TTL_LINUX]),
        c_win=np.array([5744] * n + [64240]),  # lwIP's small window on ESP32
        s_ip=net.gateway,
        s_port=MQTT_PORT,
    )
    hub = n
    ev = TcpEvents()
    rtt = rng.integers(2_000, 12_000, n + 1)
    t0 = ctx.us(rng.uniform(0.05, 2.0, n + 1))
    hellos = [pl.mqtt_connect(f"esp32-{i:02d}", spec.keepalive) for i in range(n)]
    hellos.append(pl.mqtt_connect("home-hub", 60))
    connect_ids = np.array([book.add(m) for m in hellos])
    connect_lens = np.array([len(m) for m in hellos])
    connack = pl.mqtt_connack()
    steps = [
        (True, SYN, -1, 0, 0.0),
        (False, SYN | ACK, -1, 0, 0.5),
        (True, ACK, -1, 0, 0.5),
        (True, PA, connect_ids, connect_lens, 0.05),
        (False, PA, book.add(connack), len(connack), 0.5),
        (True, ACK, -1, 0, 0.5),
    ]
    ready = ev.add_template(np.arange(n + 1), t0, rtt, steps)
    subscribe, suback = pl.mqtt_subscribe("home/#"), pl.mqtt_suback()
    hub_ready = int(ready[hub] + 1000)
    ev.add(hub, hub_ready, True, PA, book.add(subscribe), len(subscribe))
    ev.add(hub, hub_ready + int(rtt[hub]), False, PA, book.add(suback), len(suback))

    ping, pong = book.add(pl.PINGREQ), book.add(pl.PINGRESP)
    end = ctx.duration
    for c in range(n + 1):
        slow = c == hub or c % 3 == 2  # door / motion sensors report rarely and ping instead
        interval = spec.publish_interval * (10.0 if slow else 1.0)
        keepalive = 60 if c == hub else spec.keepalive
        start = (ready[c] - ctx.start_time * 1_000_000) / 1e6 + 0.1
        publishes, pings = _sensor_schedule(rng, start, end, interval, keepalive)
        if c == hub:
            publishes = []
        _publishes(ctx, ev, c, hub, publishes, rtt, int(rng.integers(0, 2**31)))
        if pings:
            t = ctx.us(np.array(pings))
            ev.add(c, t, True, PA, ping, 2)
            ev.add(c, t + rtt[c] // 2, False, PA, pong, 2)
            ev.add(c, t + rtt[c] // 2 + 150, True, ACK)
    return tcp_frames(ev, conns, net, BENIGN)


def _publishes(
    ctx: Context,
    ev: TcpEvents,
    conn: int,
    hub: int,
    times: list[float],
    rtt: npt.NDArray[np.int64],
    seed: int,
) -> None:
    """A sensor's PUBLISH messages, the broker's ACK / PUBACK, and the fan-out to the hub."""
    if not times:
        return
    rng = np.random.default_rng(seed)
    t = ctx.us(np.array(times))
    qos = conn % 2
    topic = f"home/sensor{conn:02d}/state"
    base = 18.0 + conn
    bodies = [f'{{"value":{base + rng.normal(0, 0.8):.2f}}}'.encode() for _ in range(8)]
    messages = [pl.mqtt_publish(topic, body, qos, 1) for body in bodies]
    forwards = [pl.mqtt_publish(topic, body, 0) for body in bodies]  # the hub subscribed at QoS 0
    pick = rng.integers(0, len(messages), len(t))
    pids = np.array([ctx.book.add(m) for m in messages])[pick]
    lens = np.array([len(m) for m in messages])[pick]
    ev.add(conn, t, True, PA, pids, lens)
    if qos:
        puback = pl.mqtt_puback(1)
        ev.add(conn, t + rtt[conn] // 2, False, PA, ctx.book.add(puback), len(puback))
        ev.add(conn, t + rtt[conn] // 2 + 200, True, ACK)
    else:
        ev.add(conn, t + rtt[conn] // 2, False, ACK)
    fwd_ids = np.array([ctx.book.add(m) for m in forwards])[pick]
    fwd_lens = np.array([len(m) for m in forwards])[pick]
    ev.add(hub, t + 400, False, PA, fwd_ids, fwd_lens)
    ev.add(hub, t + 400 + rtt[hub] // 2, True, ACK)


def camera_streams(ctx: Context, spec: BenignSpec) -> Frames:
    """RTP over UDP from each camera to the gateway's recorder, with I-frame bursts and RTCP."""
    parts = []
    rtp = ctx.book.add(pl.rtp_header())
    rtcp = ctx.book.add(bytes([0x80, 200, 0, 6]))
    rng = ctx.rng
    for c in range(spec.cameras):
        cam = ctx.net.host(CAMERA_BASE + c)
        n_frames = int(ctx.duration * spec.camera_fps)
        t = (np.arange(n_frames) + rng.uniform(0, 1)) / spec.camera_fps
        t = t + rng.normal(0, 0.002, n_frames)  # capture / encoder jitter
        keyframes = t[:: round(2 * spec.camera_fps)]  # a GOP of 2 s
        burst = (keyframes[:, None] + np.arange(1, 6)[None, :] * 0.0004).ravel()
        times = np.concatenate([t, burst])
        keep = (times >= 0) & (times < ctx.duration)
        # RTP sequence +1 per packet, timestamp on the 90 kHz video clock of the frame
        clock = np.concatenate([t, np.repeat(keyframes, 5)])
        order = np.argsort(times, kind="stable")
        seq = np.empty(times.size, dtype=np.uint64)
        seq[order] = (np.arange(times.size) + rng.integers(0, 65536)) % 65536
        stamp_ts = (np.round(clock * 90_000).astype(np.int64) + rng.integers(0, 2**31)) % 2**32
        sizes = np.concatenate([rng.integers(400, 1200, n_frames), np.full(burst.size, 1400)])
        parts.append(
            udp_frames(
                ctx,
                times[keep],
                cam,
                ctx.net.gateway,
                5004,
                5004 + 2 * c,
                TTL_LINUX,
                rtp,
                sizes[keep],
                stamp=(seq << np.uint64(32))[keep] | stamp_ts[keep].astype(np.uint64),
                stamp_at=2,
                stamp_len=6,
            )
        )
        reports = np.arange(rng.uniform(0, 5), ctx.duration, 5.0)
        parts.append(
            udp_frames(ctx, reports, cam, ctx.net.gateway, 5005, 5005 + 2 * c, TTL_LINUX, rtcp, 52)
        )
    return Frames.concat(parts)


def _lookup_and_query(
    ctx: Context,
    client: int,
    ttl: int,
    times: npt.NDArray[np.float64],
    name: str,
    answer: int,
) -> Frames:
    """DNS query to the gateway's resolver and its answer, at each of ``times``."""
    rng = ctx.rng
    query, response = pl.dns_query(name, 0), pl.dns_response(name, 0, answer)
    port = rng.integers(49152, 65535, times.size)
    txid = rng.integers(0, 65536, times.size)  # the answer echoes its query's id
    delay = rng.uniform(0.0005, 0.03, times.size)
    net = ctx.net
    q = udp_frames(
        ctx,
        times,
        client,
        net.gateway,
        port,
        53,
        ttl,
        ctx.book.add(query),
        len(query),
        stamp=txid,
        stamp_len=2,
    )
    r = udp_frames(
        ctx,
        times + delay,
        net.gateway,
        client,
        53,
        port,
        TTL_LINUX,
        ctx.book.add(response),
        len(response),
        stamp=txid,
        stamp_len=2,
    )
    return Frames.concat([q, r])


def name_services(ctx: Context, spec: BenignSpec) -> Frames:
    """NTP every 64 s from each device (after a DNS lookup), and ARP for the gateway."""
    rng, net = ctx.rng, ctx.net
    devices = [(net.host(SENSOR_BASE + i), TTL_LWIP) for i in range(spec.mqtt_sensors)]
    devices += [(net.host(CAMERA_BASE + c), TTL_LINUX) for c in range(spec.cameras)]
    devices += [(net.host(HUB_HOST), TTL_LINUX)]
    parts = []
    ntp_q, ntp_r = ctx.book.add(pl.ntp_packet(3)), ctx.book.add(pl.ntp_packet(4))
    for ip, ttl in devices:
        t = np.arange(rng.uniform(0, 64), ctx.duration, 64.0) + rng.normal(0, 0.2)
        t = t[(t >= 0) & (t < ctx.duration)]
        parts.append(_lookup_and_query(ctx, ip, ttl, t, "pool.ntp.org", NTP_IP))
        sent = t + 0.04
        rtt = rng.uniform(0.015, 0.045, t.size)
        parts.append(udp_frames(ctx, sent, ip, NTP_IP, 123, 123, ttl, ntp_q, 48))
        parts.append(udp_frames(ctx, sent + rtt, NTP_IP, ip, 123, 123, 52, ntp_r, 48))
        arp_t = np.arange(rng.uniform(0, 60), ctx.duration, rng.uniform(60, 120))
        parts.append(_arp(ctx, arp_t, ip, reply_delay=rng.uniform(0.0002, 0.002)))
    return Frames.concat(parts)


def _arp(ctx: Context, times: npt.NDArray[np.float64], ip: int, reply_delay: float) -> Frames:
    """A device asks who has the gateway's address (broadcast); the gateway answers."""
    net = ctx.net
    n = times.size
    request = Frames.build(
        n,
        ts_us=ctx.us(times),
        layout=ARP,
        arp_op=1,
        src_mac=net.mac(ip)[0],
        dst_mac=BROADCAST_MAC,
        src_ip=ip,
        dst_ip=net.gateway,
    )
    reply = Frames.build(
        n,
        ts_us=ctx.us(times + reply_delay),
        layout=ARP,
        arp_op=2,
        src_mac=net.mac(net.gateway)[0],
        dst_mac=net.mac(ip)[0],
        src_ip=net.gateway,
        dst_ip=ip,
    )
    return Frames.concat([request, reply])


def https_bursts(ctx: Context, spec: BenignSpec) -> Frames:
    """Hub and camera syncing with the cloud: DNS, TCP, a TLS handshake, some data, close."""
    rng, net, book = ctx.rng, ctx.net, ctx.book
    clients = [net.host(HUB_HOST), net.host(CAMERA_BASE), net.host(LAPTOP_HOST)]
    times: list[float] = []
    owners: list[int] = []
    for k in range(spec.https_clients):
        t = np.cumsum(rng.uniform(30, 90, int(ctx.duration / 30) + 2)) - rng.uniform(0, 30)
        t = t[(t >= 0) & (t < ctx.duration)]
        times.extend(t.tolist())
        owners.extend([clients[k % len(clients)]] * t.size)
    if not times:
        return Frames.build(0)
    t_s = np.array(times)
    owner = np.array(owners, dtype=np.int64)
    parts = [
        _lookup_and_query(
            ctx, int(ip), TTL_LINUX, t_s[owner == ip], "api.cloud.example.com", CLOUD_IP
        )
        for ip in np.unique(owner)
    ]
    n = t_s.size
    conns = Conns.make(n, rng, c_ip=owner, s_ip=CLOUD_IP, s_port=443, s_ttl=52, s_win=65535)
    up = rng.integers(300, 1400, n)
    down = rng.integers(200, 1448, n)
    hello, server, data = (
        book.add(pl.TLS_CLIENT_HELLO),
        book.add(pl.TLS_SERVER_HELLO),
        book.add(pl.TLS_APP_DATA),
    )
    steps = [
        (True, SYN, -1, 0, 0.0),
        (False, SYN | ACK, -1, 0, 0.5),
        (True, ACK, -1, 0, 0.5),
        (True, PA, hello, 517, 0.01),
        (False, ACK, server, 1448, 0.5),
        (False, PA, data, 1448, 0.02),
        (False, PA, data, 900, 0.02),
        (True, ACK, -1, 0, 0.3),
        (True, PA, data, 126, 0.05),
        (False, PA, data, 250, 0.5),
        (True, PA, data, up, 0.1),
        (False, PA, data, down, 0.8),
        (True, ACK, -1, 0, 0.3),
        (True, FIN | ACK, -1, 0, 1.0),
        (False, FIN | ACK, -1, 0, 0.5),
        (True, ACK, -1, 0, 0.5),
    ]
    ev = TcpEvents()
    ev.add_template(np.arange(n), ctx.us(t_s + 0.05), rng.integers(15_000, 60_000, n), steps)
    parts.append(tcp_frames(ev, conns, net, BENIGN))
    return Frames.concat(parts)


def ssh_admin(ctx: Context, spec: BenignSpec) -> Frames:
    """An administrator's interactive SSH session from a Windows laptop to the gateway."""
    if not spec.ssh_admin:
        return Frames.build(0)
    rng, net, book = ctx.rng, ctx.net, ctx.book
    start = rng.uniform(0.1, 0.4) * ctx.duration
    stop = min(ctx.duration, start + min(180.0, 0.4 * ctx.duration))
    conns = Conns.make(
        1,
        rng,
        c_ip=net.host(LAPTOP_HOST),
        c_ttl=TTL_WINDOWS,
        c_win=64240,
        s_ip=net.gateway,
        s_port=22,
    )
    rtt = np.array([int(rng.integers(1_500, 6_000))])
    banner_s, banner_c = book.add(pl.SSH_SERVER_BANNER), book.add(pl.SSH_CLIENT_BANNER)
    packet = book.add(pl.SSH_PACKET)
    steps = [
        (True, SYN, -1, 0, 0.0),
        (False, SYN | ACK, -1, 0, 0.5),
        (True, ACK, -1, 0, 0.5),
        (False, PA, banner_s, len(pl.SSH_SERVER_BANNER), 0.5),
        (True, PA, banner_c, len(pl.SSH_CLIENT_BANNER), 0.5),
        (True, PA, packet, 1392, 0.1),
        (False, PA, packet, 1080, 0.5),
        (True, PA, packet, 48, 0.5),
        (False, PA, packet, 564, 2.0),
        (True, PA, packet, 100, 0.5),
        (False, PA, packet, 52, 0.5),
    ]
    ev = TcpEvents()
    ready = int(ev.add_template(np.zeros(1, np.int64), ctx.us(np.array([start])), rtt, steps)[0])
    # keystrokes: ~3/s while typing, with think-time pauses; each echoed, then delayed-ACKed
    gaps = np.where(rng.random(4000) < 0.05, rng.exponential(4.0, 4000), rng.exponential(0.3, 4000))
    keys = ready / 1e6 - ctx.start_time + 1.0 + np.cumsum(gaps)
    keys = keys[keys < stop - 1.0]
    t = ctx.us(keys)
    ev.add(0, t, True, PA, packet, 36)
    ev.add(0, t + rtt[0] // 2, False, PA, packet, 36)
    ev.add(0, t + rtt[0] // 2 + 40_000, True, ACK)
    out = keys[rng.random(keys.size) < 0.08]  # Enter: command output
    t_out = ctx.us(out) + 2 * rtt[0]
    ev.add(0, t_out, False, PA, packet, rng.integers(100, 1400, out.size))
    ev.add(0, t_out + 40_000, True, ACK)
    end = ctx.us(stop)
    ev.add(0, end, True, FIN | ACK)
    ev.add(0, end + rtt[0] // 2, False, FIN | ACK)
    ev.add(0, end + rtt[0], True, ACK)
    return tcp_frames(ev, conns, net, BENIGN)


def firmware_downloads(ctx: Context, spec: BenignSpec) -> Frames:
    """A device fetching a 1–3 MB image: a burst of full-size segments, ACKed every second one."""
    rng, net, book = ctx.rng, ctx.net, ctx.book
    n = spec.firmware_downloads
    if n == 0:
        return Frames.build(0)
    starts = np.sort(rng.uniform(0.1, 0.9, n)) * ctx.duration
    client = np.array([net.host(CAMERA_BASE if k % 2 == 0 else HUB_HOST) for k in range(n)])
    conns = Conns.make(n, rng, c_ip=client, s_ip=FIRMWARE_IP, s_port=443, s_ttl=50, s_win=65535)
    rtt = rng.integers(20_000, 50_000, n)
    data = book.add(pl.TLS_APP_DATA)
    get = [
        (True, SYN, -1, 0, 0.0),
        (False, SYN | ACK, -1, 0, 0.5),
        (True, ACK, -1, 0, 0.5),
        (True, PA, data, 517, 0.01),
        (False, PA, data, 1448, 0.5),
        (True, PA, data, 180, 0.5),
    ]
    ev = TcpEvents()
    ready = ev.add_template(np.arange(n), ctx.us(starts), rtt, get)
    parts = [
        _lookup_and_query(
            ctx, int(ip), TTL_LINUX, starts[client == ip] - 0.03, "fw.example.com", FIRMWARE_IP
        )
        for ip in np.unique(client)
    ]
    for k in range(n):
        segments = int(rng.uniform(1e6, 3e6) / 1448)
        rate = rng.uniform(2e6, 6e6) / 1448  # segments per second
        t = ready[k] + rtt[k] // 2 + (np.arange(segments) / rate * 1e6).astype(np.int64)
        ev.add(k, t, False, ACK, data, 1448)
        ev.add(k, t[1::2] + 300, True, ACK)
        end = int(t[-1]) + 1000
        ev.add(k, end, True, FIN | ACK)
        ev.add(k, end + rtt[k] // 2, False, FIN | ACK)
        ev.add(k, end + rtt[k], True, ACK)
    parts.append(tcp_frames(ev, conns, net, BENIGN))
    return Frames.concat(parts)


def benign_traffic(ctx: Context, spec: BenignSpec) -> Frames:
    """All benign device kinds together (unsorted)."""
    return Frames.concat(
        [
            mqtt_devices(ctx, spec),
            camera_streams(ctx, spec),
            name_services(ctx, spec),
            https_bursts(ctx, spec),
            ssh_admin(ctx, spec),
            firmware_downloads(ctx, spec),
        ]
    )

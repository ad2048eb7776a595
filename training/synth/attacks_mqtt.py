"""MQTT attacks on the broker the gateway hosts: connect and publish floods, password guessing,
and slow connections that hold the broker's sockets (MQTTset's SlowITe).

Built on the same exchange helpers as the other attack kinds (``training.synth.attacks``).
"""

from __future__ import annotations

import numpy as np

from training.synth import payloads as pl
from training.synth.attacks import (
    CLOSE_BY_CLIENT,
    CLOSE_BY_SERVER,
    HANDSHAKE,
    attack_target,
    exchanges,
    lan_attackers,
)
from training.synth.benign import MQTT_PORT, PA
from training.synth.flows import Conns, Context, Step, TcpEvents, jittered_times, tcp_frames
from training.synth.frames import ACK, Frames
from training.synth.scenario import AttackSpec


def mqtt_connect_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """Connections that each CONNECT with a fresh client id, get CONNACK 0 and hang up."""
    book = ctx.book
    hellos = [pl.mqtt_connect(f"flood{k:04x}", 60) for k in range(32)]
    connack = pl.mqtt_connack()
    steps: list[Step] = [
        *HANDSHAKE,
        (
            True,
            PA,
            np.array([book.add(h) for h in hellos]),
            np.array([len(h) for h in hellos]),
            0.05,
        ),
        (False, PA, book.add(connack), len(connack), 0.5),
        *CLOSE_BY_CLIENT,
    ]
    return exchanges(
        ctx,
        spec,
        label,
        lan_attackers(ctx, spec),
        attack_target(ctx, spec, 1),
        spec.port or MQTT_PORT,
        steps,
        (500, 4_000),
    )


def mqtt_bruteforce(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """CONNECT with guessed credentials; the broker refuses (rc 4 or 5) and closes."""
    book = ctx.book
    tries = [
        pl.mqtt_connect("mqtt-probe", 60, u or "admin", p or "admin")
        for u, p in pl.MIRAI_CREDENTIALS
    ]
    refusals = [
        pl.mqtt_connack(pl.CONNACK_BAD_CREDENTIALS),
        pl.mqtt_connack(pl.CONNACK_NOT_AUTHORIZED),
    ]
    steps: list[Step] = [
        *HANDSHAKE,
        (True, PA, np.array([book.add(t) for t in tries]), np.array([len(t) for t in tries]), 0.05),
        (False, PA, np.array([book.add(r) for r in refusals]), 4, 0.5),
        *CLOSE_BY_SERVER,
    ]
    return exchanges(
        ctx,
        spec,
        label,
        lan_attackers(ctx, spec),
        attack_target(ctx, spec, 1),
        spec.port or MQTT_PORT,
        steps,
        (1_000, 6_000),
    )


def mqtt_publish_flood(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """A few connections pushing PUBLISH as fast as they can; the broker ACKs every second."""
    rng, book = ctx.rng, ctx.book
    attackers = lan_attackers(ctx, spec)
    m = attackers.size
    conns = Conns.make(
        m, rng, c_ip=attackers, s_ip=attack_target(ctx, spec, 1), s_port=spec.port or MQTT_PORT
    )
    rtt = rng.integers(1_000, 4_000, m)
    hello, connack = pl.mqtt_connect("pub-flood", 65535), pl.mqtt_connack()
    ev = TcpEvents()
    setup: list[Step] = [
        *HANDSHAKE,
        (True, PA, book.add(hello), len(hello), 0.05),
        (False, PA, book.add(connack), len(connack), 0.5),
        (True, ACK, -1, 0, 0.5),
    ]
    ready = ev.add_template(np.arange(m), ctx.us(np.full(m, spec.start)), rtt, setup)
    t = jittered_times(
        rng, spec.start, spec.stop, (spec.intensity - 6 * m / (spec.stop - spec.start)) / 1.5
    )
    t = t[ctx.us(t) > ready.max()]
    conn = rng.integers(0, m, t.size)
    messages = [pl.mqtt_publish("home/flood", rng.bytes(k)) for k in (64, 128, 256, 512, 1000)]
    pick = rng.integers(0, len(messages), t.size)
    pids = np.array([book.add(msg) for msg in messages])[pick]
    ev.add(conn, ctx.us(t), True, PA, pids, np.array([len(msg) for msg in messages])[pick])
    acked = np.arange(t.size)[1::2]
    ev.add(conn[acked], ctx.us(t[acked]) + rtt[conn[acked]] // 2, False, ACK)
    return tcp_frames(ev, conns, ctx.net, label)


def mqtt_slowdos(ctx: Context, spec: AttackSpec, label: int) -> Frames:
    """SlowITe: many connections opened with CONNECT and a 65535 s keep-alive, then held idle."""
    book = ctx.book
    hellos = [pl.mqtt_connect(f"slow{k:04x}", 65535) for k in range(64)]
    connack = pl.mqtt_connack()
    steps: list[Step] = [
        *HANDSHAKE,
        (
            True,
            PA,
            np.array([book.add(h) for h in hellos]),
            np.array([len(h) for h in hellos]),
            0.05,
        ),
        (False, PA, book.add(connack), len(connack), 0.5),
        (True, ACK, -1, 0, 0.5),
    ]
    return exchanges(
        ctx,
        spec,
        label,
        lan_attackers(ctx, spec),
        attack_target(ctx, spec, 1),
        spec.port or MQTT_PORT,
        steps,
        (1_000, 5_000),
    )

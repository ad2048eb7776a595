"""The host-v1 feature set: the gateway's own health as seen through psutil, one row per step.

A SYN flood aimed at the gateway itself shows up here before anywhere else: half-open
connections pile up in SYN_RECV. Counters that only grow
(bytes, packets, errors) become per-second rates between two snapshots.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from agent.features.schema import FeatureSet, register

TCP_STATES = (
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "CLOSING",
    "LISTEN",
)
NET_COUNTERS = (
    "bytes_sent",
    "bytes_recv",
    "packets_sent",
    "packets_recv",
    "errin",
    "errout",
    "dropin",
    "dropout",
)

HOST_V1 = register(
    FeatureSet(
        "host",
        1,
        (
            "cpu_percent",
            "memory_percent",
            "swap_percent",
            "load1",
            *(f"net_{name}_per_s" for name in NET_COUNTERS),
            *(f"tcp_{state.lower()}" for state in TCP_STATES),
            "udp_sockets",
            "listening_ports",
            "process_count",
        ),
    )
)


@dataclass(frozen=True)
class HostSnapshot:
    """One psutil reading: gauges as they are, counters as running totals.

    ``monotonic_ns`` is when it was taken on the monotonic clock: rates divide by it, and the
    wall clock of a Pi without RTC steps (NTP, an admin) by hours between two readings.
    """

    monotonic_ns: int
    cpu_percent: float
    memory_percent: float
    swap_percent: float
    load1: float
    net: tuple[int, ...]  # NET_COUNTERS order, totals since boot
    tcp_states: Counter[str] = field(default_factory=Counter)
    udp_sockets: int = 0
    listening_ports: int = 0
    process_count: int = 0


def take_snapshot() -> HostSnapshot:
    """Read the host now (psutil; connection states need no root on Linux)."""
    import psutil

    io = psutil.net_io_counters()
    states: Counter[str] = Counter()
    listening: set[int] = set()
    udp = 0
    for conn in psutil.net_connections(kind="inet"):
        if conn.type == 1:  # socket.SOCK_STREAM
            states[conn.status] += 1
            if conn.status == "LISTEN" and conn.laddr:
                listening.add(conn.laddr.port)
        else:
            udp += 1
    return HostSnapshot(
        monotonic_ns=time.monotonic_ns(),
        cpu_percent=float(psutil.cpu_percent(interval=None)),
        memory_percent=float(psutil.virtual_memory().percent),
        swap_percent=float(psutil.swap_memory().percent),
        load1=float(psutil.getloadavg()[0]),
        net=tuple(int(getattr(io, name)) for name in NET_COUNTERS),
        tcp_states=states,
        udp_sockets=udp,
        listening_ports=len(listening),
        process_count=len(psutil.pids()),
    )


def host_row(previous: HostSnapshot | None, current: HostSnapshot) -> npt.NDArray[np.float32]:
    """The host-v1 row for the step that ``current`` closes (rates are 0 without ``previous``)."""
    if previous is None:
        rates = [0.0] * len(NET_COUNTERS)
    else:
        seconds = max((current.monotonic_ns - previous.monotonic_ns) / 1e9, 1e-3)
        # A counter that went backwards (interface reset, 32-bit wrap) gives 0, not a spike.
        rates = [max(c - p, 0) / seconds for c, p in zip(current.net, previous.net, strict=True)]
    row = [
        current.cpu_percent,
        current.memory_percent,
        current.swap_percent,
        current.load1,
        *rates,
        *(float(current.tcp_states.get(state, 0)) for state in TCP_STATES),
        float(current.udp_sockets),
        float(current.listening_ports),
        float(current.process_count),
    ]
    return np.asarray(row, np.float32)

"""The PACKET_MMAP ring source on a real veth pair in a namespace (root only)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from agent.features.traffic import TRAFFIC_V1
from agent.sources import open_source
from agent.sources.live_ring import RingSource
from tests.agent.test_sources import SENDER, _config, veth_pair

__all__ = ["veth_pair"]  # the fixture, shared with the recvfrom source's tests

BURST = """
import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"arp", ("10.77.0.1", 8999))  # resolve the neighbour first: its queue holds few
time.sleep(0.3)
for i in range(5000):
    u.sendto(bytes(18 + i % 1400), ("10.77.0.1", 9000 + i % 7))
"""


STEADY = """
import json, socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"arp", ("10.77.0.1", 8999))
time.sleep(0.3)
sent = []
began = time.monotonic()
for i in range(4000):  # 2,000 datagrams a second for 2 s
    wait = began + i / 2000 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    sent.append(time.time_ns())
    u.sendto(b"tick", ("10.77.0.1", 9000))
print(json.dumps(sent))
"""


def _read(source: RingSource, seconds: float) -> list[object]:
    batches = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        batch = source.read(timeout=0.3)
        if batch is not None:
            batches.append(batch)
    return batches


def test_ring_source_captures_what_recvfrom_does(veth_pair: tuple[str, str]) -> None:
    ns, host_if = veth_pair
    config = _config({"name": "lan", "kind": "live-ring", "interface": host_if, "step": "0.5s"})
    source = open_source(config.sources[0], config)
    assert isinstance(source, RingSource)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", SENDER], check=True, timeout=20)
        batches = _read(source, 2.5)
    finally:
        source.close()
    values = np.concatenate([b.values for b in batches])  # type: ignore[attr-defined]
    assert values[:, TRAFFIC_V1.index("udp")].sum() >= 20
    assert values[:, TRAFFIC_V1.index("tcp")].sum() >= 1
    ports = {p for b in batches for e in b.evidence if e is not None for p, _ in e.top_ports}  # type: ignore[attr-defined]
    assert {5683, 2323} <= ports
    assert source.stats.drops == 0


def test_ring_source_takes_a_burst_of_mixed_sizes_without_loss(
    veth_pair: tuple[str, str],
) -> None:
    ns, host_if = veth_pair
    config = _config({"name": "lan", "kind": "live-ring", "interface": host_if, "step": "0.5s"})
    source = open_source(config.sources[0], config)
    counter = Path(f"/sys/class/net/{host_if}/statistics/rx_packets")
    try:
        before = int(counter.read_text())
        subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", BURST], check=True, timeout=30)
        batches = _read(source, 2.5)
        arrived = int(counter.read_text()) - before
    finally:
        source.close()
    values = np.concatenate([b.values for b in batches])  # type: ignore[attr-defined]
    # A veth drops a burst past the receiving CPU's backlog before any capture sees it: what
    # the interface received is what the ring must deliver, each frame decoded once.
    # (the capture also sees the frames this side sends: ARP replies, ICMP unreachables)
    assert arrived > 1000
    assert source.stats.frames >= arrived
    assert source.stats.drops == 0
    assert not source.stats.malformed
    udp = values[:, TRAFFIC_V1.index("udp")].sum()
    assert arrived - 10 <= udp <= 5001  # a few received frames are ARP / neighbour discovery


def test_a_link_that_goes_down_raises_rather_than_spinning(veth_pair: tuple[str, str]) -> None:
    # poll reports the socket's pending error at once on every call: unread, it spun a core
    _ns, host_if = veth_pair
    config = _config({"name": "lan", "kind": "live-ring", "interface": host_if, "step": "0.5s"})
    source = open_source(config.sources[0], config)
    try:
        subprocess.run(["ip", "link", "set", host_if, "down"], check=True, timeout=10)
        began = time.process_time()
        raised = None
        for _ in range(20):
            try:
                source.read(timeout=0.1)
            except OSError as exc:
                raised = exc
                break
        assert raised is not None
        assert time.process_time() - began < 1.0
    finally:
        source.close()
        subprocess.run(["ip", "link", "set", host_if, "up"], check=False, timeout=10)


def test_a_backlog_after_a_stall_lands_in_the_steps_that_received_it(
    veth_pair: tuple[str, str],
) -> None:
    # The reader stalls while traffic flows; the backlog then spans many reads (one block each
    # here). Closing steps on the wall clock after the first of them put the rest of the
    # backlog into one step, after a row of empty ones: a false flood.
    ns, host_if = veth_pair
    step_ns = 100_000_000
    config = _config(
        {
            "name": "lan",
            "kind": "live-ring",
            "interface": host_if,
            "step": "0.1s",
            "batch_frames": 1,
            "buffer_bytes": 16 << 20,
        }
    )
    source = open_source(config.sources[0], config)
    try:
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c", STEADY], stdout=subprocess.PIPE, text=True
        )
        batches = _read(source, 0.9)
        time.sleep(0.45)  # the stall: the kernel fills the ring meanwhile
        batches += _read(source, 2.0)
        sent, _ = sender.communicate(timeout=20)
    finally:
        source.close()
    assert sender.returncode == 0
    column = TRAFFIC_V1.index("udp")
    got = Counter[int]()
    for b in batches:
        for start, row in zip(b.start_ns, b.values, strict=True):  # type: ignore[attr-defined]
            got[int(start)] += int(row[column])
    expected = Counter(t // step_ns * step_ns for t in json.loads(sent))
    inner = sorted(expected)[1:-1]  # the first and last steps are partial
    assert len(inner) >= 15
    assert source.stats.drops == 0
    for start in inner:  # a step closes on time, so at most ~20 ms of frames move across
        assert abs(got[start] - expected[start]) <= 0.3 * expected[start] + 20, (
            [got[s] for s in inner],
            [expected[s] for s in inner],
        )

"""The recvfrom source after a stall, on a real veth pair in a namespace (root only)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter

from agent.features.traffic import TRAFFIC_V1
from agent.sources import open_source
from agent.sources.live import LiveSource
from tests.agent.test_live_ring import STEADY, _read, veth_pair

__all__ = ["veth_pair"]

STEP_NS = 100_000_000


def _udp_per_step(batches: list[object]) -> Counter[int]:
    column = TRAFFIC_V1.index("udp")
    got = Counter[int]()
    for b in batches:
        for start, row in zip(b.start_ns, b.values, strict=True):  # type: ignore[attr-defined]
            got[int(start)] += int(row[column])
    return got


def test_a_backlog_after_a_stall_lands_in_the_steps_that_received_it(
    veth_pair: tuple[str, str],
) -> None:
    # The reader stalls while 2,000 datagrams a second arrive; the socket queues them. Stamped
    # when read, the whole backlog landed in one step after a row of empty ones (a false
    # flood); with kernel stamps but steps closed on the wall clock after the first of the
    # reads it spans (32 frames each here), the rest of it did.
    ns, host_if = veth_pair
    config = _config(host_if)
    source = open_source(config.sources[0], config)
    assert isinstance(source, LiveSource)
    try:
        sender = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-c", STEADY], stdout=subprocess.PIPE, text=True
        )
        batches = _read(source, 0.9)  # type: ignore[arg-type]
        time.sleep(0.45)  # the stall: the socket's queue fills meanwhile
        batches += _read(source, 2.0)  # type: ignore[arg-type]
        sent, _ = sender.communicate(timeout=20)
    finally:
        source.close()
    assert sender.returncode == 0
    got = _udp_per_step(batches)
    expected = Counter(t // STEP_NS * STEP_NS for t in json.loads(sent))
    inner = sorted(expected)[1:-1]  # the first and last steps are partial
    assert len(inner) >= 15
    assert source.stats.drops == 0
    for start in inner:
        assert abs(got[start] - expected[start]) <= 0.3 * expected[start] + 20, (
            [got[s] for s in inner],
            [expected[s] for s in inner],
        )


def test_an_idle_link_still_closes_its_steps_on_the_wall_clock(
    veth_pair: tuple[str, str],
) -> None:
    ns, host_if = veth_pair
    config = _config(host_if)
    source = open_source(config.sources[0], config)
    try:
        one = "import socket; socket.socket(2, 2).sendto(b'x', ('10.77.0.1', 9000))"
        subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", one], check=True, timeout=20)
        batches = _read(source, 1.2)  # type: ignore[arg-type]
    finally:
        source.close()
    got = _udp_per_step(batches)
    assert sum(got.values()) == 1
    assert len(got) >= 9  # the datagram's step, then empty ones as the clock passes them
    assert max(got) >= time.time_ns() - 4 * STEP_NS


def _config(interface: str):  # type: ignore[no-untyped-def]
    from agent.config import parse_config

    table = {"name": "lan", "kind": "live", "interface": interface, "step": "0.1s"}
    return parse_config({"agent": {"device_id": "gw"}, "sources": [{**table, "batch_frames": 32}]})

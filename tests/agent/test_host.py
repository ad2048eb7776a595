"""host-v1: psutil snapshots to rows, and the host source stepping on the wall clock."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from agent.config import parse_config
from agent.features.host import HOST_V1, NET_COUNTERS, HostSnapshot, host_row, take_snapshot
from agent.sources import StepBatch
from agent.sources.host import HostSource


def _snap(t_s: float, net: int, syn_recv: int = 0) -> HostSnapshot:
    return HostSnapshot(
        monotonic_ns=int(t_s * 1e9),
        cpu_percent=12.5,
        memory_percent=40.0,
        swap_percent=0.0,
        load1=0.5,
        net=tuple([net] * len(NET_COUNTERS)),
        tcp_states=Counter({"SYN_RECV": syn_recv, "LISTEN": 3}),
        udp_sockets=2,
        listening_ports=3,
        process_count=99,
    )


def test_rows_turn_counters_into_rates_and_count_states() -> None:
    row = host_row(_snap(0, 1000), _snap(2, 3000, syn_recv=250))
    assert row.shape == (HOST_V1.width,)
    assert row.dtype == np.float32
    assert row[HOST_V1.index("net_bytes_recv_per_s")] == pytest.approx(1000.0)
    assert row[HOST_V1.index("tcp_syn_recv")] == 250
    assert row[HOST_V1.index("tcp_listen")] == 3
    assert row[HOST_V1.index("process_count")] == 99
    assert row[HOST_V1.index("cpu_percent")] == pytest.approx(12.5)


def test_a_counter_reset_is_not_a_spike_and_first_row_has_no_rates() -> None:
    assert host_row(_snap(0, 5000), _snap(1, 10))[HOST_V1.index("net_bytes_sent_per_s")] == 0
    assert host_row(None, _snap(1, 10))[HOST_V1.index("net_bytes_sent_per_s")] == 0


def test_a_real_snapshot_reads_this_machine() -> None:
    snap = take_snapshot()
    assert snap.process_count > 1
    assert 0 <= snap.memory_percent <= 100
    assert snap.net[0] >= 0
    assert np.isfinite(host_row(None, snap)).all()


@pytest.mark.parametrize("step_s", [-3600.0, 200 * 86400.0])
def test_rates_do_not_follow_a_wall_clock_step_between_two_readings(
    monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    # 2,000 bytes a second for one monotonic second, while NTP or an admin steps the wall
    # clock: back, a rate by wall time is clamped to 1 ms (1000x, an attack-sized spike);
    # forward, it vanishes into 200 days
    import psutil

    clock = {"wall": 1_700_000_000.0, "mono": 50.0}
    sent = {"bytes": 10_000}
    monkeypatch.setattr(time, "time_ns", lambda: int(clock["wall"] * 1e9))
    monkeypatch.setattr(time, "monotonic_ns", lambda: int(clock["mono"] * 1e9))
    monkeypatch.setattr(
        psutil,
        "net_io_counters",
        lambda: type("Io", (), dict.fromkeys(NET_COUNTERS, 0) | {"bytes_sent": sent["bytes"]}),
    )
    first = take_snapshot()
    clock["mono"] += 1.0
    clock["wall"] += 1.0 + step_s
    sent["bytes"] += 2_000
    row = host_row(first, take_snapshot())
    assert row[HOST_V1.index("net_bytes_sent_per_s")] == pytest.approx(2000.0)


def test_host_source_emits_one_step_per_interval() -> None:
    config = parse_config(
        {"agent": {"device_id": "gw"}, "sources": [{"name": "h", "kind": "host", "step": "0.2s"}]}
    )
    source = HostSource(config.sources[0], config)
    began = time.monotonic()
    batches: list[StepBatch] = []
    while len(batches) < 2 and time.monotonic() - began < 3:
        batch = source.read(timeout=0.5)
        if batch is not None:
            batches.append(batch)
    source.close()
    assert len(batches) == 2
    assert batches[1].start_ns[0] - batches[0].start_ns[0] == 200_000_000
    assert batches[0].values.shape == (1, HOST_V1.width)
    assert source.stats.steps == 2

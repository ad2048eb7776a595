"""Health figures: rates from counters, latency percentiles, SoC temperature from /sys."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from agent.health import Health, soc_temperature
from agent.sources import SourceStats


def test_soc_temperature_prefers_the_cpu_zone(tmp_path: Path) -> None:
    for name, kind, milli in (
        ("thermal_zone0", "gpu-thermal", "40000"),
        ("thermal_zone1", "cpu-thermal", "61234"),
    ):
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert soc_temperature(tmp_path) == pytest.approx(61.234)
    assert soc_temperature(tmp_path / "absent") is None


def test_snapshot_turns_counters_into_rates_and_percentiles() -> None:
    health = Health()
    stats = SourceStats(packets=0, malformed=Counter({"ipv4_truncated": 2}))
    for ms in range(1, 101):
        health.record_latency(ms / 1000)
    health.queue_drops = 3
    health.snapshot({"lan": stats}, queue_depths={"steps": 0}, sampling_ratio=1.0, active_models={})
    stats.packets = 1000
    stats.drops = 7
    time.sleep(0.1)
    snap = health.snapshot(
        {"lan": stats},
        queue_depths={"steps": 5},
        sampling_ratio=0.25,
        active_models={"cnn": "b-1"},
    )
    assert 1000 <= snap["packets_per_s"] <= 10_000
    assert snap["drops"] == {"kernel": 7, "queue": 3}
    assert snap["malformed"] == {"ipv4_truncated": 2}
    assert snap["latency_ms_p50"] == pytest.approx(50.5)
    assert snap["latency_ms_p99"] == pytest.approx(99.01)
    assert snap["sampling_ratio"] == 0.25
    assert snap["queue_depth"] == {"steps": 5}
    assert snap["rss_bytes"] > 10_000_000
    assert snap["uptime_s"] >= 0.1
    assert snap["active_model"] == {"cnn": "b-1"}

"""The fleet load harness: many real sinks through one Mosquitto and a restart lose no new/end."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.fleet_load import rows, run_size, settings_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_twenty_gateways_through_a_broker_restart_lose_no_event(tmp_path: Path) -> None:
    settings = replace(settings_for(quick=True), duration_s=12.0, attack_every_s=6.0)
    figures = run_size(20, settings, tmp_path)
    assert figures["restarted"]
    assert figures["connected"] == 20
    assert figures["events_published"] >= 20  # every gateway opened and ended a detection
    assert figures["lost"] == {"new": 0, "update": 0, "end": 0}
    assert figures["events_delivered"] == figures["events_published"]
    assert figures["left_in_outboxes"] == 0
    assert figures["latency_ms"]["p50"] > 0
    assert 0 < figures["agent_kb_per_gateway"] < 20_000
    table = rows([figures])
    assert any(r["metric"] == "lost new+end" and r["value"] == 0 for r in table)

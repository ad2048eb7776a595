"""A long time step under a flood: the packets held for its evidence stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.features.capture import read_capture
from agent.features.steps import StepSpec
from agent.sources import traffic_steps
from agent.sources.traffic_steps import TrafficStepper
from tests.agent.bundles import flood_frames, pcap_bytes


def test_past_the_cap_features_count_every_packet_and_evidence_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(traffic_steps, "MAX_OPEN_PACKETS", 500)
    frames, _ = flood_frames(calm_s=0, flood_s=2, calm_after_s=0, flood_rate=1000)
    (tmp_path / "flood.pcap").write_bytes(pcap_bytes(frames))
    table = read_capture(tmp_path / "flood.pcap").packets
    stepper = TrafficStepper(StepSpec.parse("30s"))
    held = []
    for start in range(0, len(table), 100):  # as a live source pushes chunks
        stepper.push(table.take(slice(start, start + 100)))
        held.append(stepper._held)
    assert max(held) == 500  # ~70 bytes a packet held: 2,000 here, millions under a real flood
    assert stepper.trimmed_packets == len(table) - 500
    batch = stepper.flush()
    (evidence,) = list(batch.evidence)
    assert evidence is not None
    assert (
        evidence.packets == len(table) == int(batch.values[0][stepper.feature_set.index("packets")])
    )
    assert evidence.bytes == int(table.ip_len.sum())
    assert evidence.top_ports[0][0] == 80  # the flood's port, from the packets held

"""The events benchmark's splice: benign traffic, then an attack capture, in one pcapng."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.features.capture import read_capture
from benchmarks.capture_splice import Record, read_records, splice, write_pcapng
from tests.agent.bundles import flood_frames, pcap_bytes

NS = 1_000_000_000


def test_an_attack_follows_the_benign_stretch_each_on_its_own_link_type(tmp_path: Path) -> None:
    # benign: a pcapng of Linux cooked frames (as MQTTset's), 20 s at 5 packets a second
    calm, _ = flood_frames(t0=1_600_000_000.0, calm_s=20, flood_s=0, calm_after_s=0)
    cooked = [
        Record(round(ts * NS), 113, b"\x00" * 14 + b"\x08\x00" + frame[14:], len(frame) + 2)
        for ts, frame in calm
    ]
    write_pcapng(tmp_path / "benign-a.pcapng", cooked)
    # attack: a classic microsecond pcap of Ethernet frames, years later
    flood, _ = flood_frames(t0=1_700_000_000.0, calm_s=0, flood_s=1, calm_after_s=0)
    (tmp_path / "flood-a.pcap").write_bytes(pcap_bytes(flood))
    out = tmp_path / "flood-after.pcapng"
    onset = splice(tmp_path / "benign-a.pcapng", 10.0, tmp_path / "flood-a.pcap", out)
    assert onset == 50  # the benign capture's first 10 s
    capture = read_capture(out)
    assert dict(capture.linktypes) == {113: 50, 1: len(flood)}
    assert not capture.malformed
    ts = capture.packets.ts_ns.astype(np.int64)
    assert np.all(np.diff(ts) >= 0)
    assert (int(ts[onset]) - int(ts[0])) / NS == 10.1  # the attack 0.1 s after the stretch
    assert [r.data for r in read_records(out)[onset:]] == [frame for _, frame in flood]

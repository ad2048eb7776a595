"""The captures dataset cannot tell a link layer apart: the MQTTset trap.

MQTTset's benign and flood files are Linux cooked captures, the other attacks Ethernet; a
model that could see the link type would score by file format. The same IP packets written
once per link type must give the training loader identical feature rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.features import craft
from training.datasets import load

T0 = 1_700_000_000 * 1_000_000_000
ETHERTYPE_IPV4 = 0x0800


def _ip_packets() -> list[tuple[int, bytes]]:
    """A little MQTT session (SYN, CONNECT, PUBLISH...) with two TTLs and varied sizes."""
    packets = []
    for i in range(40):
        body = (
            craft.mqtt(3, b"\x00\x03a/b" + b"x" * (i % 7)) if i % 3 else craft.mqtt(1, b"\0" * 10)
        )
        segment = craft.tcp(40000 + i % 4, 1883, 0x18 if i % 5 else 0x02, body)
        packets.append((T0 + i * 50_000_000, craft.ipv4(6, segment, ttl=64 if i % 2 else 128)))
    return packets


def test_ethernet_and_cooked_captures_give_identical_rows(tmp_path: Path) -> None:
    packets = _ip_packets()
    ethernet = [(ts, craft.ethernet(ETHERTYPE_IPV4, ip)) for ts, ip in packets]
    cooked = [(ts, craft.sll(ETHERTYPE_IPV4, ip)) for ts, ip in packets]
    (tmp_path / "benign-ethernet.pcap").write_bytes(craft.pcap(ethernet, linktype=1))
    (tmp_path / "flood-cooked.pcap").write_bytes(craft.pcap(cooked, linktype=113))
    dataset = load("captures", str(tmp_path), step="10p")
    assert dataset.groups is not None
    by_file = [dataset.x[dataset.groups == g] for g in range(len(dataset.group_names))]
    assert len(by_file) == 2
    assert len(by_file[0]) == 4
    assert np.array_equal(by_file[0], by_file[1])
    assert "wire_len" not in dataset.columns
    assert "caplen" not in dataset.columns
    ttl_max = by_file[1][:, dataset.columns.index("ttl_max")]
    assert ttl_max.tolist() == [128.0] * 4  # the rows carry the IP layer's content

"""Traffic generation: deterministic bytes, a pcap tcpdump reads, labels aligned with packets."""

from __future__ import annotations

import csv
import itertools
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.cli import main
from training.synth import payloads as pl
from training.synth.frames import ACK, ARP, ICMP, RST, SYN, TCP, UDP, Frames
from training.synth.scenario import ATTACK_KINDS, AttackSpec, TrafficScenario, preset
from training.synth.traffic import (
    SynthTraffic,
    TrafficResult,
    generate_traffic,
    read_labels,
    synthesize,
)

SHORT = preset("demo-train").with_overrides(duration=60)  # every attack kind, ~4 s each


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrafficResult:
    return generate_traffic(SHORT, tmp_path_factory.mktemp("synth") / "out")


@pytest.fixture(scope="module")
def synth() -> SynthTraffic:
    return synthesize(SHORT)


def _records(pcap: Path) -> list[tuple[int, int, bytes]]:
    """(seconds, microseconds, frame) per record, read with struct only."""
    data = pcap.read_bytes()
    magic, major, minor, _, _, _, linktype = struct.unpack_from("<IHHiIII", data, 0)
    assert (magic, major, minor, linktype) == (0xA1B2C3D4, 2, 4, 1)
    out, pos = [], 24
    while pos < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        assert incl == orig
        out.append((sec, usec, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    assert pos == len(data)
    return out


def test_same_seed_gives_same_bytes_and_another_seed_does_not(
    tmp_path: Path, run: TrafficResult
) -> None:
    again = generate_traffic(SHORT, tmp_path / "again")
    assert again.pcap.read_bytes() == run.pcap.read_bytes()
    for name in ("packets.csv", "steps.csv", "scenario.json"):
        assert (tmp_path / "again" / name).read_bytes() == (run.out_dir / name).read_bytes()
    other = generate_traffic(SHORT.with_overrides(seed=SHORT.seed + 1), tmp_path / "other")
    assert other.pcap.read_bytes() != run.pcap.read_bytes()


def test_scenario_json_reproduces_the_run(tmp_path: Path, run: TrafficResult) -> None:
    code = main(
        [
            "synth",
            "traffic",
            "--out",
            str(tmp_path / "re"),
            "--scenario",
            str(run.out_dir / "scenario.json"),
        ]
    )
    assert code == 0
    assert (tmp_path / "re" / "traffic.pcap").read_bytes() == run.pcap.read_bytes()


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_reads_every_packet_with_valid_checksums(run: TrafficResult) -> None:
    out = subprocess.run(
        ["tcpdump", "-r", str(run.pcap), "-nn", "-vv", "-tt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = [line for line in out.splitlines() if re.match(r"^\d{10}\.\d{6} ", line)]
    assert len(lines) == run.packets
    assert "incorrect" not in out  # tcpdump -vv checks IP / TCP / UDP checksums
    assert "bad cksum" not in out
    first = lines[0].split()[0]
    assert first == (run.out_dir / "packets.csv").read_text().splitlines()[1].split(",")[1]


def test_packets_csv_is_aligned_with_the_pcap(run: TrafficResult) -> None:
    records = _records(run.pcap)
    with (run.out_dir / "packets.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(records) == run.packets
    assert [int(r["index"]) for r in rows] == list(range(run.packets))
    ts = [f"{sec}.{usec:06d}" for sec, usec, _ in records]
    assert [r["ts"] for r in rows] == ts
    assert ts == sorted(ts, key=float)
    assert [r["label"] for r in rows] == [run.label_names[i] for i in run.labels]
    ids, names = read_labels(run.out_dir)
    assert names == run.label_names
    assert np.array_equal(ids, run.labels)
    assert set(names) == {"benign", *ATTACK_KINDS}


def test_packet_labels_follow_the_attack_windows(run: TrafficResult) -> None:
    records = _records(run.pcap)
    t = np.array([sec + usec / 1e6 for sec, usec, _ in records]) - SHORT.start_time
    for attack in SHORT.attacks:
        mine = run.labels == run.label_names.index(attack.name)
        assert mine.sum() > 0, attack.kind
        # replies may trail the window by a round trip; nothing starts before it
        assert t[mine].min() >= attack.start
        assert t[mine].max() < attack.stop + 1.0


def test_steps_csv_takes_the_majority_attack_else_benign(run: TrafficResult) -> None:
    with (run.out_dir / "steps.csv").open() as f:
        steps = list(csv.DictReader(f))
    assert len(steps) == int(SHORT.duration / SHORT.step)
    with (run.out_dir / "packets.csv").open() as f:
        packets = list(csv.DictReader(f))
    per_step: dict[int, dict[str, int]] = {}
    for row in packets:
        k = int((float(row["ts"]) - SHORT.start_time) // SHORT.step)
        per_step.setdefault(k, {}).setdefault(row["label"], 0)
        per_step[k][row["label"]] += 1
    for k, step in enumerate(steps):
        assert float(step["step_start"]) == SHORT.start_time + k * SHORT.step
        counts = {lab: n for lab, n in per_step.get(k, {}).items() if lab != "benign"}
        expected = max(counts, key=lambda lab: counts[lab]) if counts else "benign"
        assert step["label"] == expected
    assert {s["label"] for s in steps} == {"benign", *ATTACK_KINDS}


def test_headers_are_consistent(run: TrafficResult) -> None:
    """IPv4 total length matches the frame, TTLs are real OS defaults for LAN devices."""
    ttls = set()
    for _, _, frame in _records(run.pcap)[:3000]:
        ethertype = frame[12:14]
        if ethertype == b"\x08\x06":
            assert len(frame) == 42
            continue
        assert ethertype == b"\x08\x00"
        assert frame[14] == 0x45
        assert struct.unpack_from("!H", frame, 16)[0] == len(frame) - 14
        if frame[26:29] == bytes([192, 168, 50]):
            ttls.add(frame[22])
    assert ttls <= {64, 128, 255}
    assert {64, 255} <= ttls


def test_tcp_sequence_numbers_advance(synth: SynthTraffic) -> None:
    """Within each benign flow direction, seq never goes back and ack matches the peer's bytes."""
    f = synth.frames
    benign_tcp = np.flatnonzero(
        (f.label == 0) & (f.layout != ARP) & (f.layout != UDP) & (f.layout != ICMP)
    )
    flows: dict[tuple[int, int, int, int], list[int]] = {}
    for i in benign_tcp.tolist():
        flows.setdefault(
            (int(f.src_ip[i]), int(f.sport[i]), int(f.dst_ip[i]), int(f.dport[i])), []
        ).append(i)
    checked = 0
    for key, rows in flows.items():
        seq = f.seq[rows].astype(np.int64)
        assert np.all(np.diff(seq) >= 0) or np.ptp(seq) > 2**31, key  # (ISN wrap allowed)
        syn = [i for i in rows if f.flags[i] & SYN and not f.flags[i] & ACK]
        if syn:
            peer = flows.get((key[2], key[3], key[0], key[1]), [])
            synack = [i for i in peer if f.flags[i] & SYN and f.flags[i] & ACK]
            assert synack
            assert int(f.ack[synack[0]]) == (int(f.seq[syn[0]]) + 1) % 2**32
            checked += 1
    assert checked >= 5


def test_benign_life_has_every_service(synth: SynthTraffic) -> None:
    f = synth.frames
    benign = f.label == 0
    ports = set(f.dport[benign].tolist()) | set(f.sport[benign].tolist())
    assert {1883, 53, 123, 443, 22, 5004} <= ports
    camera = benign & (f.sport == 5004) & (f.layout == UDP)
    fps = camera.sum() / SHORT.duration
    assert 25 <= fps <= 30
    first_bytes = {
        synth.templates[p, 0] >> 4 for p in f.payload_id[benign & (f.dport == 1883)] if p >= 0
    }
    assert {pl.MQTT_CONNECT, pl.MQTT_PUBLISH, pl.MQTT_SUBSCRIBE} <= first_bytes


def test_benign_sensors_ping_when_idle(tmp_path: Path) -> None:
    scenario = TrafficScenario(seed=3, duration=120.0)
    f = synthesize(scenario).frames
    templates = synthesize(scenario).templates
    to_broker = (f.dport == 1883) & (f.payload_id >= 0)
    kinds = templates[f.payload_id[to_broker], 0] >> 4
    assert (kinds == pl.MQTT_PINGREQ).sum() >= 3


def _kind_rows(synth: SynthTraffic, kind: str) -> npt.NDArray[np.bool_]:
    rows: npt.NDArray[np.bool_] = synth.frames.label == synth.label_names.index(kind)
    return rows


def test_in_memory_signatures_of_floods_and_scans(synth: SynthTraffic) -> None:
    f = synth.frames
    syn = _kind_rows(synth, "syn_flood")
    syn_no_ack = (f.flags[syn] & SYN > 0) & (f.flags[syn] & ACK == 0)
    assert syn_no_ack.mean() > 0.9
    assert np.unique(f.src_ip[syn]).size > 0.9 * syn.sum()  # spoofed: nearly every source new
    for kind in ("tcp_syn_scan", "udp_scan"):
        rows = _kind_rows(synth, kind)
        assert np.unique(f.dport[rows]).size > 100
    scan = _kind_rows(synth, "tcp_syn_scan")
    assert (f.flags[scan] == (RST | ACK)).sum() > 50  # closed ports answer RST
    icmp = _kind_rows(synth, "icmp_flood")
    assert set(f.icmp_type[icmp].tolist()) == {0, 8}
    udp_scan = _kind_rows(synth, "udp_scan")
    assert ((f.icmp_type[udp_scan] == 3) & (f.layout[udp_scan] == ICMP)).sum() >= 1


def test_in_memory_signatures_of_brute_force_and_mqtt(synth: SynthTraffic) -> None:
    f, templates = synth.frames, synth.templates
    for kind, ports in (("telnet_bruteforce", {23, 2323}), ("ssh_bruteforce", {22})):
        rows = _kind_rows(synth, kind)
        assert set(f.dport[rows & (f.flags == SYN)].tolist()) == ports
        probes = rows & (f.flags == SYN) & (f.layout == TCP)  # scanner SYNs carry no options
        assert np.unique(f.dst_ip[probes]).size > 50  # Mirai scans many addresses
        assert np.all(f.seq[probes] == f.dst_ip[probes])  # Mirai's seq = target address
    brute = _kind_rows(synth, "mqtt_bruteforce") & (f.sport == 1883) & (f.payload_id >= 0)
    connacks = templates[f.payload_id[brute]]
    assert set((connacks[:, 0] >> 4).tolist()) == {pl.MQTT_CONNACK}
    assert set(connacks[:, 3].tolist()) == {pl.CONNACK_BAD_CREDENTIALS, pl.CONNACK_NOT_AUTHORIZED}
    slow = _kind_rows(synth, "mqtt_slowdos") & (f.dport == 1883) & (f.payload_id >= 0)
    connects = templates[f.payload_id[slow]]
    assert np.all(connects[:, 0] >> 4 == pl.MQTT_CONNECT)
    assert np.all(connects[:, 10:12] == 0xFF)  # keep-alive 65535 s
    flood = _kind_rows(synth, "mqtt_publish_flood") & (f.dport == 1883) & (f.payload_id >= 0)
    assert ((templates[f.payload_id[flood], 0] >> 4) == pl.MQTT_PUBLISH).mean() > 0.95
    arp = _kind_rows(synth, "arp_spoof")
    gateway = int(synth.frames.src_ip[(f.layout == ARP) & (f.arp_op == 2) & (f.label == 0)][0])
    assert np.all(f.arp_op[arp] == 2)
    assert np.all(f.src_ip[arp] == gateway)
    honest_mac = set(f.src_mac[(f.layout == ARP) & (f.label == 0) & (f.src_ip == gateway)].tolist())
    assert set(f.src_mac[arp].tolist()).isdisjoint(honest_mac)


def test_lowslow_rates_are_respected() -> None:
    scenario = TrafficScenario(
        seed=5,
        duration=120.0,
        attacks=(
            AttackSpec("tcp_syn_scan", 10, 110, 2.0),
            AttackSpec("ssh_bruteforce", 10, 110, 1.6),
        ),
    )
    synth = synthesize(scenario)
    f = synth.frames
    scan = f.label == synth.label_names.index("tcp_syn_scan")
    probes = scan & (f.flags == SYN)
    assert 90 <= probes.sum() <= 110  # ~1 port per second for 100 s
    logins = (
        (f.label == synth.label_names.index("ssh_bruteforce")) & (f.dport == 22) & (f.flags == SYN)
    )
    login_attempts = (
        logins & (f.src_ip == f.src_ip[logins][-1]) & (f.dst_ip == f.dst_ip[logins][-1])
    )
    assert 4 <= login_attempts.sum() <= 12  # ~1 attempt per 10 s over the 70 s login phase


def test_cli_writes_the_four_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "synth",
            "traffic",
            "--out",
            str(tmp_path),
            "--preset",
            "benign",
            "--seed",
            "7",
            "--duration",
            "20",
            "--step",
            "2",
        ]
    )
    assert code == 0
    assert {p.name for p in tmp_path.iterdir()} == {
        "traffic.pcap",
        "packets.csv",
        "steps.csv",
        "scenario.json",
    }
    saved = json.loads((tmp_path / "scenario.json").read_text())
    assert (saved["seed"], saved["duration"], saved["step"]) == (7, 20, 2)
    assert len((tmp_path / "steps.csv").read_text().splitlines()) == 1 + 10
    assert "packets/s" in capsys.readouterr().out


def test_cli_bad_scenario_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "attacks": [
                    {"kind": "syn_flood", "start": 1, "stop": 5, "intensity": 10},
                    {"kind": "udp_flood", "start": 1, "stop": 5, "intensity": 10},
                    {"kind": "udp_flood", "start": 1, "stop": 5, "intensity": -5},
                ]
            }
        )
    )
    code = main(["synth", "traffic", "--out", str(tmp_path / "out"), "--scenario", str(bad)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == "iotids synth: attacks[2].intensity: must be > 0, got -5"
    assert not (tmp_path / "out").exists()
    assert (
        main(
            [
                "synth",
                "traffic",
                "--out",
                str(tmp_path),
                "--scenario",
                str(tmp_path / "missing.json"),
            ]
        )
        == 2
    )


def test_rtp_sequence_advances_and_dns_ids_match(run: TrafficResult) -> None:
    seqs: list[int] = []
    queries: dict[tuple[bytes, int], bytes] = {}
    answers: dict[tuple[bytes, int], bytes] = {}
    for _, _, frame in _records(run.pcap):
        if frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        sport, dport = struct.unpack_from("!HH", frame, 34)
        payload = frame[42:]
        if sport == 5004:
            seqs.append(struct.unpack_from("!H", payload, 2)[0])
        elif dport == 53:
            queries[(frame[26:30], sport)] = payload[:2]
        elif sport == 53:
            answers[(frame[30:34], dport)] = payload[:2]
    assert len(seqs) > 1000
    gaps = {(b - a) % 65536 for a, b in itertools.pairwise(seqs)}
    assert gaps == {1}
    assert len(queries) > 5
    assert answers == queries
    assert len(set(queries.values())) > len(queries) // 2  # ids are per query, not per device


def test_frames_reject_a_stamp_that_breaks_checksums() -> None:
    with pytest.raises(ValueError, match="even offset"):
        Frames.build(1, layout=UDP, payload_len=10, stamp=1, stamp_at=1, stamp_len=2)
    with pytest.raises(ValueError, match="even offset"):
        Frames.build(1, layout=UDP, payload_len=2, stamp=70000, stamp_len=2)

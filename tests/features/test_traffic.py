"""traffic-v1: what each column counts, steps and gaps, bounded state, real captures."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.features import packets as pk
from agent.features.capture import read_capture
from agent.features.distinct import BUCKETS
from agent.features.packets import PacketTable
from agent.features.schema import FeatureSet, lookup
from agent.features.steps import StepSpec, sliding_windows
from agent.features.traffic import TRAFFIC_V1, Steps, TrafficFeaturizer, WindowBuffer, featurize
from tests.features import craft

S = 1_000_000_000  # one second in ns
T0 = 1_700_000_000 * S  # an epoch second, so steps align to whole seconds


def table(n: int, **cols: Any) -> PacketTable:
    """``n`` IPv4/TCP packets between two hosts unless ``cols`` says otherwise."""
    base: dict[str, Any] = {
        "ts_ns": T0 + np.arange(n, dtype=np.int64) * 1000,
        "l3": np.full(n, pk.L3_IPV4),
        "proto": np.full(n, pk.PROTO_TCP),
        "ip_len": np.full(n, 60),
        "wire_len": np.full(n, 74),
        "src_lo": np.full(n, 0xFFFF_0A00_0001, dtype=np.uint64),
        "dst_lo": np.full(n, 0xFFFF_0A00_0002, dtype=np.uint64),
        "sport": np.full(n, 40000),
        "dport": np.full(n, 1883),
        "ttl": np.full(n, 64),
    }
    base.update({k: np.broadcast_to(np.asarray(v), (n,)) for k, v in cols.items()})
    return PacketTable.from_columns(**base)


def col(steps: Steps, name: str) -> Any:
    return steps.values[:, TRAFFIC_V1.index(name)]


def test_registered_with_a_stable_schema() -> None:
    assert lookup("traffic-v1") is TRAFFIC_V1
    assert len(set(TRAFFIC_V1.columns)) == TRAFFIC_V1.width == 52
    assert TRAFFIC_V1.schema_id == FeatureSet("traffic", 1, TRAFFIC_V1.columns).schema_id


def test_counts_sizes_and_ratios() -> None:
    flags = [pk.TCP_SYN, pk.TCP_SYN | pk.TCP_ACK, pk.TCP_ACK | pk.TCP_PSH, pk.TCP_RST]
    t = table(4, tcp_flags=flags, ip_len=[40, 60, 100, 200], payload_len=[0, 0, 48, 0])
    s = featurize(t)
    assert len(s) == 1
    assert s.packets.tolist() == [4]
    assert col(s, "packets")[0] == 4
    assert col(s, "bytes")[0] == 400
    assert (col(s, "size_min")[0], col(s, "size_max")[0], col(s, "size_mean")[0]) == (40, 200, 100)
    assert col(s, "size_std")[0] == pytest.approx(np.std([40, 60, 100, 200]), rel=1e-6)
    assert (col(s, "tcp_syn")[0], col(s, "tcp_syn_no_ack")[0], col(s, "tcp_syn_ack")[0]) == (
        2,
        1,
        1,
    )
    assert (col(s, "tcp_ack")[0], col(s, "tcp_psh")[0], col(s, "tcp_rst")[0]) == (2, 1, 1)
    assert col(s, "syn_no_ack_ratio")[0] == 0.25
    assert col(s, "rst_ratio")[0] == 0.25
    assert col(s, "mqtt")[0] == 4
    assert col(s, "payload_mean")[0] == 12
    assert s.values.dtype == np.float32


def test_protocols_and_ports() -> None:
    t = table(
        8,
        l3=[4, 4, 6, 4, 1, 0, 4, 4],
        proto=[17, 6, 58, 1, 0, 0, 6, 47],
        sport=[5353, 2323, 0, 0, 0, 0, 8443, 0],
        dport=[53, 51000, 0, 0, 0, 0, 50000, 0],
        icmp_type=[0, 0, 128, 8, 0, 0, 0, 0],
        arp_op=[0, 0, 0, 0, 2, 0, 0, 0],
        frag=[0, 0, 0, pk.FRAG_IS_FRAGMENT, 0, 0, 0, 0],
    )
    s = featurize(t)
    expected = {"udp": 1, "tcp": 2, "icmp": 2, "arp": 1, "other_l3": 1, "other_l4": 1, "dns": 1}
    expected |= {"telnet": 1, "https": 1, "mqtt": 0, "icmp_echo_req": 2, "arp_reply": 1}
    expected |= {"fragments": 1, "http": 0, "ssh": 0}
    assert {k: int(col(s, k)[0]) for k in expected} == expected


def test_mqtt_control_packets() -> None:
    s = featurize(table(9, mqtt_type=[1, 2, 3, 3, 8, 12, 14, 13, 0]))
    got = {c: int(col(s, c)[0]) for c in TRAFFIC_V1.columns if c.startswith("mqtt_")}
    assert got == {
        "mqtt_connect": 1,
        "mqtt_connack": 1,
        "mqtt_publish": 2,
        "mqtt_subscribe": 1,
        "mqtt_pingreq": 1,
        "mqtt_disconnect": 1,
        "mqtt_other": 1,
    }


def test_link_layer_does_not_leak() -> None:
    """Same IP packets framed as Ethernet or Linux cooked capture give the same features."""
    ethernet = table(5, linktype=1, wire_len=74)
    cooked = table(5, linktype=113, wire_len=76)
    assert np.array_equal(featurize(ethernet).values, featurize(cooked).values)


def test_distinct_and_entropy() -> None:
    n = 64
    t = table(n, src_lo=np.arange(n, dtype=np.uint64) % 8, dport=np.arange(n) % 4 + 1000)
    s = featurize(t)
    assert round(float(col(s, "distinct_src")[0])) == 8
    assert round(float(col(s, "distinct_dst")[0])) == 1
    assert round(float(col(s, "distinct_dport")[0])) == 4
    assert col(s, "entropy_src")[0] == pytest.approx(3.0, abs=1e-4)
    assert col(s, "entropy_dport")[0] == pytest.approx(2.0, abs=1e-4)
    assert col(s, "entropy_dst")[0] == 0.0


def test_new_flows_are_direction_free_and_expire() -> None:
    a, b = 0xFFFF_0A00_0001, 0xFFFF_0A00_0002
    t = table(
        4,
        ts_ns=[T0, T0 + 1000, T0 + 2000, T0 + 61 * S + 1],
        src_lo=np.array([a, b, a, a], dtype=np.uint64),
        dst_lo=np.array([b, a, b, b], dtype=np.uint64),
        sport=[40000, 1883, 40000, 40000],
        dport=[1883, 40000, 1883, 1883],
    )
    s = featurize(t)
    assert col(s, "new_flows")[0] == 1  # the reply and the repeat belong to the first flow
    assert col(s, "new_flows")[-1] == 1  # 61 s of silence: the flow timed out


def test_inter_arrival_within_steps() -> None:
    ts = [T0, T0 + 100_000, T0 + 300_000, T0 + S + 500_000]
    s = featurize(table(4, ts_ns=ts))
    assert col(s, "iat_mean")[0] == pytest.approx(0.00015)
    assert col(s, "iat_std")[0] == pytest.approx(0.00005)
    assert col(s, "iat_mean")[1] == 0  # one packet: no gap inside the step


def test_ttl_over_ip_packets_only() -> None:
    s = featurize(table(3, l3=[4, 6, 1], ttl=[64, 128, 0], proto=[6, 6, 0]))
    assert (col(s, "ttl_min")[0], col(s, "ttl_mean")[0], col(s, "ttl_max")[0]) == (64, 96, 128)


def test_empty_intervals_are_zero_rows() -> None:
    s = featurize(table(2, ts_ns=[T0 + S // 10, T0 + 3 * S + S // 2]))
    assert s.start_ns.tolist() == [T0 + k * S for k in range(4)]
    assert s.packets.tolist() == [1, 0, 0, 1]
    assert not s.values[1:3].any()


def test_backward_timestamps_join_the_open_step() -> None:
    ts = [T0, T0 + 2 * S, T0 + S, T0 + 2 * S + 10]  # the third packet is late
    s = featurize(table(4, ts_ns=ts))
    assert s.packets.tolist() == [1, 0, 3]
    assert np.isfinite(s.values).all()
    assert (s.values >= 0).all()


def test_packet_steps() -> None:
    t = table(25, ts_ns=T0 + np.arange(25, dtype=np.int64) * S)
    s = featurize(t, StepSpec("packets", 10))
    assert s.packets.tolist() == [10, 10, 5]  # the partial last step is kept
    assert s.start_ns.tolist() == [T0, T0 + 10 * S, T0 + 20 * S]
    assert col(s, "iat_mean")[0] == pytest.approx(1.0)


def test_advance_closes_steps_when_no_packets_arrive() -> None:
    f = TrafficFeaturizer()
    assert len(f.advance(T0)) == 0  # nothing seen yet: nothing to close
    assert len(f.push(table(3))) == 0
    assert len(f.advance(T0 + S // 2)) == 0  # the step has not ended
    closed = f.advance(T0 + 3 * S + 1)
    assert closed.packets.tolist() == [3, 0, 0]
    assert closed.start_ns.tolist() == [T0, T0 + S, T0 + 2 * S]
    later = f.push(table(1, ts_ns=T0 + 5 * S))
    assert later.packets.tolist() == [0, 0]  # steps 3 and 4 were empty
    assert f.flush().packets.tolist() == [1]
    assert len(f.flush()) == 0


def test_feature_subset() -> None:
    subset = FeatureSet("traffic-flags", 1, ("tcp_syn", "packets"))
    f = TrafficFeaturizer(feature_set=subset)
    t = table(2, tcp_flags=pk.TCP_SYN)
    s = Steps.concat([f.push(t), f.flush()])
    assert s.values.tolist() == [[2.0, 2.0]]
    with pytest.raises(ValueError, match="nope"):
        TrafficFeaturizer(feature_set=FeatureSet("x", 1, ("nope",)))


def test_window_buffer_matches_sliding_windows() -> None:
    rng = np.random.default_rng(7)
    values = rng.random((40, 5), dtype=np.float32)
    zeros = np.zeros(40, dtype=np.int64)
    buffer = WindowBuffer(6, width=5)
    got = []
    cuts = [0, 1, 3, 4, 11, 25, 26, 40]
    for lo, hi in itertools.pairwise(cuts):
        got.append(buffer.push(Steps(zeros[lo:hi], values[lo:hi], zeros[lo:hi])))
    assert [g.shape[0] for g in got] == [0, 0, 0, 6, 14, 1, 14]
    assert np.array_equal(np.concatenate(got), sliding_windows(values, 6))


def test_state_does_not_grow_with_sources() -> None:
    few, many = TrafficFeaturizer(), TrafficFeaturizer()
    n = 50_000
    rng = np.random.default_rng(1)
    before = many.state_nbytes
    few.push(table(n))
    many.push(
        table(n, src_lo=rng.integers(0, 2**32, n, dtype=np.uint64), sport=rng.integers(1, 65535, n))
    )
    assert few.state_nbytes == many.state_nbytes == before
    assert before < 4 * 8 * (3 * BUCKETS + (1 << 16))  # bucket sketches + flow table


def captures(datasets: Path, folder: str, name: str) -> PacketTable:
    capture = read_capture(datasets / folder / name)
    assert capture.malformed_total == 0
    return capture.packets


def test_spoofed_syn_flood(datasets: Path) -> None:
    t = captures(datasets, "ddos_pcaps_stopddos", "pkt.TCP.synflood.spoofed.pcap")
    assert len(t) == 37_841
    f = TrafficFeaturizer()
    s = Steps.concat([f.push(t), f.flush()])
    busy = s.packets > 0
    assert np.all(col(s, "syn_no_ack_ratio")[busy] == 1.0)
    step = (t.ts_ns - s.start_ns[0]) // S
    for k in np.flatnonzero(s.packets > 50):
        m = step == k
        truth = np.unique(np.stack([t.src_hi[m], t.src_lo[m]]), axis=1).shape[1]
        assert col(s, "distinct_src")[k] == pytest.approx(truth, rel=0.03)
    assert np.max(col(s, "distinct_src")) > 20_000  # tens of thousands in one step
    assert f.state_nbytes == TrafficFeaturizer().state_nbytes


def test_syn_scan_explodes_destination_ports(datasets: Path) -> None:
    scan = featurize(captures(datasets, "portscan_pcap_ppa", "synscan.pcapng"))
    benign = featurize(captures(datasets, "mqttset_reduced_pcap", "benign-train.pcap"))
    assert np.max(col(scan, "distinct_dport")) > 200
    assert np.max(col(scan, "distinct_dport")) > 10 * np.max(col(benign, "distinct_dport"))
    assert np.max(col(scan, "entropy_dport")) > 7


def test_a_full_packet_step_is_emitted_at_once() -> None:
    f = TrafficFeaturizer(StepSpec("packets", 5))
    assert f.push(table(5)).packets.tolist() == [5]  # no need to wait for a sixth packet
    assert f.push(table(7)).packets.tolist() == [5]
    assert f.flush().packets.tolist() == [2]


def test_a_clock_jump_is_bounded() -> None:
    """A gateway without an RTC jumps from 1970 to today on NTP: no billions of zero rows."""
    s = featurize(table(2, ts_ns=[5 * S, T0]))
    assert s.packets.tolist() == [1] + [0] * 3600 + [1]
    assert s.start_ns[-1] == T0
    assert s.start_ns[3600] == 3605 * S
    f = TrafficFeaturizer(max_idle_steps=2)
    f.push(table(1))
    assert f.advance(T0 + 10 * S).start_ns.tolist() == [T0, T0 + S, T0 + 2 * S]


def session_packets() -> list[tuple[int, int, bytes]]:
    """(time ns, ethertype, L3 packet) of a short gateway conversation, built byte by byte."""
    c, b = "10.0.0.7", "10.0.0.1"  # a sensor and its broker
    syn, ack, psh = pk.TCP_SYN, pk.TCP_ACK, pk.TCP_PSH
    packets = [
        craft.ipv4(6, craft.tcp(50000, 1883, syn), src=c, dst=b),
        craft.ipv4(6, craft.tcp(1883, 50000, syn | ack), src=b, dst=c, ttl=128),
        craft.ipv4(6, craft.tcp(50000, 1883, psh | ack, craft.mqtt(1, b"\0" * 10)), src=c, dst=b),
        craft.ipv4(
            6, craft.tcp(50000, 1883, psh | ack, craft.mqtt(3, b"\0\1t" + b"21.5")), src=c, dst=b
        ),
        craft.ipv4(6, craft.tcp(50000, 1883, psh | ack, craft.mqtt(12)), src=c, dst=b),
        craft.ipv4(17, craft.udp(5353, 53, b"\0" * 12), src=c, dst="10.0.0.53"),
        craft.ipv4(1, craft.icmp(8, 0, b"\0" * 4), src=c, dst=b),
        craft.ipv6(58, craft.icmp(128, 0, b"\0" * 4)),
    ]
    typed = [(craft.ETH_IPV6 if p[0] >> 4 == 6 else craft.ETH_IPV4, p) for p in packets]
    typed.append((craft.ETH_ARP, craft.arp(2, b, c)))
    return [(T0 + i * S // 20, kind, p) for i, (kind, p) in enumerate(typed)]


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [(1, craft.ethernet), (113, craft.sll), (276, craft.sll2)],
    ids=["ethernet", "sll", "sll2"],
)
def test_decoded_capture_end_to_end(tmp_path: Path, linktype: int, frame: Any) -> None:
    """Real pcap bytes through the real reader: the counts, whatever the link layer."""
    path = tmp_path / "session.pcap"
    records = [(ts, frame(kind, p)) for ts, kind, p in session_packets()]
    path.write_bytes(craft.pcap(records, linktype=linktype))
    s = featurize(read_capture(path).packets)
    want = {"packets": 9, "tcp": 5, "udp": 1, "icmp": 2, "arp": 1, "arp_reply": 1, "mqtt": 5}
    want |= {"dns": 1, "icmp_echo_req": 2, "tcp_syn_no_ack": 1, "tcp_syn_ack": 1}
    want |= {"mqtt_connect": 1, "mqtt_publish": 1, "mqtt_pingreq": 1, "new_flows": 5}
    want |= {"ttl_max": 128, "ttl_min": 64}
    assert {k: int(col(s, k)[0]) for k in want} == want
    ip_bytes = sum(len(p) for _, _, p in session_packets())
    assert col(s, "bytes")[0] == ip_bytes  # never the wire length
    ethernet = craft.pcap([(ts, craft.ethernet(k, p)) for ts, k, p in session_packets()])
    (tmp_path / "eth.pcap").write_bytes(ethernet)
    assert np.array_equal(s.values, featurize(read_capture(tmp_path / "eth.pcap").packets).values)

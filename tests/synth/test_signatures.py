"""Each attack's signature shows in real traffic-v1 windows exactly where the ground truth says.

The pcap is read back by the agent's own reader (agent.features.capture) and featurized by the
agent's own pipeline (agent.features.traffic), so these checks cover the path a model trains on.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from agent.features.capture import read_capture
from agent.features.steps import StepSpec
from agent.features.traffic import TRAFFIC_V1, featurize
from training.synth.scenario import ATTACK_KINDS, preset
from training.synth.traffic import generate_traffic

SCENARIO = preset("demo-train").with_overrides(duration=120)  # 13 attacks, ~6 s each
STARTUP_S = 5  # sensors connect during the first seconds: MQTT CONNECTs there are benign


@dataclass(frozen=True)
class Windows:
    values: npt.NDArray[np.float32]  # (steps, features)
    labels: npt.NDArray[np.str_]  # (steps,): the ground truth of steps.csv

    def col(self, name: str) -> npt.NDArray[np.float32]:
        return self.values[:, TRAFFIC_V1.index(name)]

    def attack(self, kind: str, name: str) -> npt.NDArray[np.float32]:
        mask: npt.NDArray[np.bool_] = self.labels == kind
        return self.col(name)[mask]

    def benign(self, name: str) -> npt.NDArray[np.float32]:
        mask: npt.NDArray[np.bool_] = self.labels == "benign"
        mask[:STARTUP_S] = False
        return self.col(name)[mask]


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> Windows:
    out = tmp_path_factory.mktemp("signatures")
    result = generate_traffic(SCENARIO, out)
    capture = read_capture(result.pcap)
    assert len(capture.packets) == result.packets
    assert capture.malformed_total == 0
    steps = featurize(capture.packets, StepSpec("time", SCENARIO.step))
    with (out / "steps.csv").open() as f:
        truth = {round(float(r["step_start"]) * 1e9): r["label"] for r in csv.DictReader(f)}
    labels = np.array([truth[int(s)] for s in steps.start_ns])
    assert set(labels) == {"benign", *ATTACK_KINDS}
    return Windows(steps.values, labels)


def _median(values: npt.NDArray[np.float32]) -> float:
    return float(np.median(values))


def test_syn_flood_spoofed_sources_and_syn_without_ack(windows: Windows) -> None:
    assert _median(windows.attack("syn_flood", "syn_no_ack_ratio")) > 0.9
    assert windows.benign("syn_no_ack_ratio").max() < 0.5
    assert (
        _median(windows.attack("syn_flood", "distinct_src"))
        > 50 * windows.benign("distinct_src").max()
    )


def test_udp_flood_packets_and_destination_ports(windows: Windows) -> None:
    assert _median(windows.attack("udp_flood", "udp")) > 10 * windows.benign("udp").max()
    assert (
        _median(windows.attack("udp_flood", "distinct_dport"))
        > 50 * windows.benign("distinct_dport").max()
    )


def test_icmp_flood_echo_requests(windows: Windows) -> None:
    assert _median(windows.attack("icmp_flood", "icmp_echo_req")) > 100
    assert windows.benign("icmp_echo_req").max() == 0


def test_http_get_flood_requests_on_port_80(windows: Windows) -> None:
    assert _median(windows.attack("http_get_flood", "http")) > 100
    assert windows.benign("http").max() == 0
    assert (
        _median(windows.attack("http_get_flood", "new_flows"))
        > 5 * windows.benign("new_flows").max()
    )


@pytest.mark.parametrize("kind", ["tcp_syn_scan", "udp_scan"])
def test_port_scans_explode_destination_ports(windows: Windows, kind: str) -> None:
    scan = _median(windows.attack(kind, "distinct_dport"))
    assert scan > 10 * windows.benign("distinct_dport").max()
    assert (
        _median(windows.attack(kind, "entropy_dport")) > windows.benign("entropy_dport").max() + 2
    )


def test_tcp_syn_scan_is_answered_with_resets(windows: Windows) -> None:
    assert _median(windows.attack("tcp_syn_scan", "rst_ratio")) > 0.3
    assert windows.benign("rst_ratio").max() == 0


@pytest.mark.parametrize(
    ("kind", "port_column"), [("telnet_bruteforce", "telnet"), ("ssh_bruteforce", "ssh")]
)
def test_bruteforce_scans_many_hosts_then_logs_in(
    windows: Windows, kind: str, port_column: str
) -> None:
    assert windows.attack(kind, "distinct_dst").max() > 10 * windows.benign("distinct_dst").max()
    assert _median(windows.attack(kind, port_column)) > 5 * max(
        windows.benign(port_column).max(), 1
    )


def test_mqtt_connect_flood_and_bruteforce_connects(windows: Windows) -> None:
    assert windows.benign("mqtt_connect").max() <= 1
    assert _median(windows.attack("mqtt_connect_flood", "mqtt_connect")) > 30
    assert _median(windows.attack("mqtt_bruteforce", "mqtt_connect")) >= 5
    assert _median(windows.attack("mqtt_bruteforce", "mqtt_connack")) >= 5


def test_mqtt_publish_flood(windows: Windows) -> None:
    assert (
        _median(windows.attack("mqtt_publish_flood", "mqtt_publish"))
        > 20 * windows.benign("mqtt_publish").max()
    )


def test_mqtt_slowdos_opens_connections_without_publishing(windows: Windows) -> None:
    slow = windows.attack("mqtt_slowdos", "mqtt_connect")
    assert _median(slow) >= 5
    assert (
        _median(windows.attack("mqtt_slowdos", "mqtt_publish"))
        <= windows.benign("mqtt_publish").max()
    )


def test_arp_spoof_replies(windows: Windows) -> None:
    assert _median(windows.attack("arp_spoof", "arp_reply")) > 10 * max(
        windows.benign("arp_reply").max(), 1
    )


def test_benign_steps_stay_quiet(windows: Windows) -> None:
    packets = windows.benign("packets")
    assert 20 < _median(packets) < 80  # camera ~27/s plus sensors, DNS, NTP, HTTPS, SSH
    floods = min(
        _median(windows.attack(k, "packets")) for k in ("syn_flood", "udp_flood", "icmp_flood")
    )
    assert floods > 5 * np.percentile(packets, 95)

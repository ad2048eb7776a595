"""Sources on real bytes: a generated pcap, a CSV, a real broker, a real veth pair."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError, parse_config
from agent.features.telemetry import telemetry_feature_set
from agent.features.traffic import TRAFFIC_V1
from agent.sources import StepBatch, open_source, source_class
from agent.sources.registry import SOURCE_KINDS
from agent.sources.sensors_payload import PayloadError, reading_value
from tests.agent.bundles import ethernet, flood_frames, ipv4, pcap_bytes, udp
from tests.broker import Broker, Probe, make_pki


def _config(*sources: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_config({"agent": {"device_id": "gw"}, "sources": list(sources)})


def _drain(source, limit_s: float = 10.0) -> list[StepBatch]:  # type: ignore[no-untyped-def]
    batches = []
    began = time.monotonic()
    while not source.finished and time.monotonic() - began < limit_s:
        batch = source.read(timeout=1.0)
        if batch is not None and len(batch):
            batches.append(batch)
    return batches


def test_unknown_kind_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown source 'pcapp' \(valid: csv, host, live"):
        source_class("pcapp")
    assert all(":" in kind.factory and ":" in kind.options for kind in SOURCE_KINDS.values())


def test_pcap_replay_gives_steps_with_evidence(tmp_path: Path) -> None:
    frames, flood_start = flood_frames(calm_s=3, flood_s=2, calm_after_s=2, flood_rate=500)
    frames.append((frames[-1][0] + 0.1, b"\x00" * 10))  # a runt frame: counted, not raised
    path = tmp_path / "flood.pcap"
    path.write_bytes(pcap_bytes(frames))
    config = _config({"name": "cap", "kind": "pcap", "path": str(path)})
    source = open_source(config.sources[0], config)
    batches = _drain(source)
    source.close()
    starts = np.concatenate([b.start_ns for b in batches])
    values = np.concatenate([b.values for b in batches])
    evidence = [e for b in batches for e in b.evidence]
    assert len(starts) == 7  # 3 calm + 2 flood + 2 calm seconds
    assert np.all(np.diff(starts) == 1_000_000_000)
    assert values.shape == (7, TRAFFIC_V1.width)
    packets = values[:, TRAFFIC_V1.index("packets")]
    assert packets.tolist()[:3] == [5, 5, 5]
    assert packets.sum() == 7 * 5 + 1000
    assert packets[3] > 400
    assert packets[4] > 400
    flood = evidence[4]
    assert flood is not None
    assert flood.packets == packets[4]
    assert flood.top_ports[0] == (80, packets[4] - 5)
    assert source.stats.packets == len(frames) - 1
    assert source.stats.malformed.total() == 1
    assert flood_start > starts[3] / 1e9


def test_pcap_realtime_is_paced_by_capture_time(tmp_path: Path) -> None:
    packet = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)))
    path = tmp_path / "slow.pcap"
    path.write_bytes(pcap_bytes([(1000.0 + i * 0.25, packet) for i in range(5)]))
    config = _config({"name": "cap", "kind": "pcap", "path": str(path), "realtime": True})
    source = open_source(config.sources[0], config)
    began = time.monotonic()
    _drain(source)
    assert time.monotonic() - began >= 0.95  # the capture spans 1.0 s


def test_pcap_realtime_speed_divides_the_pacing(tmp_path: Path) -> None:
    packet = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)))
    path = tmp_path / "long.pcap"
    path.write_bytes(pcap_bytes([(1000.0 + i * 1.0, packet) for i in range(9)]))  # spans 8 s
    config = _config(
        {"name": "cap", "kind": "pcap", "path": str(path), "realtime": True, "speed": 8.0}
    )
    source = open_source(config.sources[0], config)
    began = time.monotonic()
    _drain(source)
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 6.0  # about 1 s of wall time, far from the capture's 8 s


def test_a_realtime_replay_waits_out_no_more_of_a_gap_than_its_steps_show(
    tmp_path: Path,
) -> None:
    # a packet ten days after the rest: the featurizer keeps 3,600 empty 1-s steps of such a
    # gap, which at speed 2,000 is 1.8 s of waiting; the whole gap would be 432 s
    packet = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)))
    path = tmp_path / "gap.pcap"
    stamps = [1000.0, 1000.1, 1000.0 + 10 * 86400]
    path.write_bytes(pcap_bytes([(t, packet) for t in stamps]))
    config = _config(
        {"name": "cap", "kind": "pcap", "path": str(path), "realtime": True, "speed": 2000.0}
    )
    source = open_source(config.sources[0], config)
    began = time.monotonic()
    batches = _drain(source, limit_s=20.0)
    assert source.finished
    assert 1.5 <= time.monotonic() - began < 10.0
    assert source.stats.packets == 3
    starts = np.concatenate([b.start_ns for b in batches])
    assert starts[-1] == 1000 * 10**9 + 10 * 86400 * 10**9  # the last packet's own step


def test_a_realtime_csv_replay_waits_out_no_more_of_a_gap_than_its_steps_show(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("timestamp,temp\n1700000000,20\n1700000001,21\n1700864000,22\n")
    config = _config(
        {
            "name": "plant",
            "kind": "csv",
            "path": str(path),
            "sensors": ["temp"],
            "realtime": True,
            "speed": 2000.0,
            "step": "1s",
        }
    )
    source = open_source(config.sources[0], config)
    began = time.monotonic()
    _drain(source, limit_s=20.0)
    assert source.finished
    assert 1.5 <= time.monotonic() - began < 10.0  # the day's gap at speed 2,000 is 432 s
    assert source.stats.readings == 3


def test_pcap_loop_keeps_time_moving_forward(tmp_path: Path) -> None:
    packet = ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)))
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap_bytes([(1000.0 + i * 0.5, packet) for i in range(4)]))
    config = _config({"name": "cap", "kind": "pcap", "path": str(path), "loop": True})
    source = open_source(config.sources[0], config)
    starts: list[int] = []
    for _ in range(20):
        batch = source.read(timeout=0.5)
        if batch is not None:
            starts += batch.start_ns.tolist()
        if len(starts) >= 6:
            break
    source.close()
    assert len(starts) >= 6
    assert all(b > a for a, b in itertools.pairwise(starts))


def test_csv_replay_forward_fills_and_counts_bad_cells(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    rows = ["timestamp,temp,door"]
    rows += [f"{1000 + t},{20 + t},{t % 2}" for t in range(6)]
    rows += ["1006,oops,1", "not-a-time,1,1", "1007.5,30,0"]
    path.write_text("\n".join(rows) + "\n")
    config = _config(
        {"name": "plant", "kind": "csv", "path": str(path), "sensors": ["temp", "door"]}
    )
    source = open_source(config.sources[0], config)
    assert source.feature_set == telemetry_feature_set(["temp", "door"])
    batches = _drain(source)
    source.close()
    values = np.concatenate([b.values for b in batches])
    temp = values[:, source.feature_set.index("temp.value")]
    assert temp.tolist()[:6] == [20, 21, 22, 23, 24, 25]
    assert temp[6] == 25  # the bad cell at 1006 is skipped, the last value carries forward
    assert temp[-1] == 30
    assert source.stats.malformed == {"bad_value": 1, "bad_timestamp": 1}


def test_csv_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plant.csv"
    path.write_text("timestamp,temp\n1,2\n")
    config = _config({"name": "p", "kind": "csv", "path": str(path), "sensors": ["pressure"]})
    with pytest.raises(ValueError, match="no column 'pressure'"):
        open_source(config.sources[0], config)


def test_reading_values_from_payloads() -> None:
    assert reading_value(b" 21.5 ", "") == 21.5
    assert reading_value(b"ON", "", {"ON": 1.0}) == 1.0
    assert reading_value(b'{"state": {"bar": 3}}', "state.bar") == 3.0
    with pytest.raises(PayloadError, match="no field"):
        reading_value(b'{"x": 1}', "bar")
    with pytest.raises(PayloadError, match="not a number"):
        reading_value(b"hot", "")
    door = {"true": 1.0, "false": 0.0, "open": 1.0}
    assert reading_value(b'{"contact": false}', "contact", door) == 0.0
    assert reading_value(b'{"contact": "open"}', "contact", door) == 1.0
    for payload, field in ((b"true", ""), (b'{"c": true}', "c"), (b"1_0", ""), (b"0x10", "")):
        with pytest.raises(PayloadError) as refused:
            reading_value(payload, field)
        assert refused.value.reason == "not_a_number"


@pytest.mark.broker
def test_mqtt_sensor_source_steps_real_messages(
    mosquitto: Broker,
) -> None:
    import paho.mqtt.publish as publish

    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "mqtt": {"port": mosquitto.port, "host": mosquitto.host},
            "sources": [
                {
                    "name": "plant",
                    "kind": "mqtt-sensors",
                    "step": "0.5s",
                    "topics": [
                        {"topic": "plant/+/temp", "sensor": "temp"},
                        {"topic": "plant/boiler/state", "sensor": "bar", "field": "bar"},
                    ],
                }
            ],
        }
    )
    source = open_source(config.sources[0], config)
    try:
        time.sleep(0.5)  # let the subscription land
        publish.single("plant/boiler/temp", "71.5", hostname=mosquitto.host, port=mosquitto.port)
        publish.single(
            "plant/boiler/state", '{"bar": 2.5}', hostname=mosquitto.host, port=mosquitto.port
        )
        publish.single("plant/boiler/temp", "garbage", hostname=mosquitto.host, port=mosquitto.port)
        rows = []
        began = time.monotonic()
        while time.monotonic() - began < 5:
            batch = source.read(timeout=0.5)
            if batch is not None and len(batch):
                rows.append(batch.values)
                if np.concatenate(rows)[:, 0].max() > 0 and np.concatenate(rows)[:, 3].max() > 0:
                    break
    finally:
        source.close()
    values = np.concatenate(rows)
    assert values[-1, source.feature_set.index("temp.value")] == pytest.approx(71.5)
    assert values[-1, source.feature_set.index("bar.value")] == pytest.approx(2.5)
    assert source.stats.readings == 2
    assert source.stats.malformed["not_a_number"] == 1


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    """A veth pair: one end here (10.77.0.1), the peer inside a fresh namespace (10.77.0.2)."""
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (CAP_NET_RAW) to open AF_PACKET and make a netns")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is missing")
    tag = f"{os.getpid() % 100000}"
    ns, host_if, peer_if = f"iotids{tag}", f"iot{tag}a", f"iot{tag}b"
    try:
        _ip("netns", "add", ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        _ip("link", "set", peer_if, "netns", ns)
        _ip("addr", "add", "10.77.0.1/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", "10.77.0.2/24", "dev", peer_if)
        _ip("netns", "exec", ns, "ip", "link", "set", peer_if, "up")
        yield ns, host_if
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


SENDER = """
import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    u.sendto(b"reading %d" % i, ("10.77.0.1", 5683))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.settimeout(0.5)
try:
    t.connect(("10.77.0.1", 2323))
except OSError:
    pass
"""


def test_live_capture_on_a_veth_pair(veth_pair: tuple[str, str]) -> None:
    ns, host_if = veth_pair
    config = _config(
        {"name": "lan", "kind": "live", "interface": host_if, "promiscuous": True, "step": "0.5s"}
    )
    source = open_source(config.sources[0], config)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", SENDER], check=True, timeout=20)
        batches = []
        began = time.monotonic()
        while time.monotonic() - began < 3:
            batch = source.read(timeout=0.5)
            if batch is not None:
                batches.append(batch)
    finally:
        source.close()
    values = np.concatenate([b.values for b in batches])
    udp_packets = values[:, TRAFFIC_V1.index("udp")].sum()
    tcp_packets = values[:, TRAFFIC_V1.index("tcp")].sum()
    assert udp_packets >= 20
    assert tcp_packets >= 1  # the SYN (and our RST back)
    ports = {p for b in batches for e in b.evidence if e is not None for p, _ in e.top_ports}
    assert {5683, 2323} <= ports
    assert source.stats.packets >= 21
    assert source.stats.drops == 0


class _Clock:
    """The wall clock plus an offset a test can change: NTP stepping a Pi's clock back."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns


HOUR_NS = 3600 * 1_000_000_000


def _read_for(source, seconds: float) -> list[StepBatch]:  # type: ignore[no-untyped-def]
    batches = []
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        batch = source.read(timeout=0.2)
        if batch is not None and len(batch):
            batches.append(batch)
    return batches


def test_host_source_keeps_stepping_when_the_clock_goes_back() -> None:
    from agent.sources.host import HostSource

    clock = _Clock()
    config = _config({"name": "host", "kind": "host", "step": "0.2s"})
    source = HostSource(config.sources[0], config, clock=clock)
    assert _read_for(source, 0.6)
    clock.offset_ns = -HOUR_NS
    after = _read_for(source, 0.6)
    assert after, "no host step for as long as the clock jump"
    assert abs(int(after[-1].start_ns[-1]) - clock()) < 2 * 10**9


def _live_across_a_clock_jump(
    veth_pair: tuple[str, str], offset_ns: int
) -> tuple[list[StepBatch], list[StepBatch], _Clock]:
    """A live source's steps of a burst, then of another after its clock moved ``offset_ns``."""
    from agent.sources.live import LiveSource

    ns, host_if = veth_pair
    clock = _Clock()
    config = _config({"name": "lan", "kind": "live", "interface": host_if, "step": "0.2s"})
    source = LiveSource(config.sources[0], config, clock=clock)
    send = ["ip", "netns", "exec", ns, "python3", "-c", SENDER]
    try:
        subprocess.run(send, check=True, timeout=20)
        before = _read_for(source, 0.8)
        clock.offset_ns = offset_ns
        subprocess.run(send, check=True, timeout=20)
        after = _read_for(source, 1.5)
    finally:
        source.close()
    return before, after, clock


def test_live_capture_keeps_stepping_when_the_clock_goes_back(
    veth_pair: tuple[str, str],
) -> None:
    before, after, clock = _live_across_a_clock_jump(veth_pair, -HOUR_NS)
    assert sum(b.values[:, TRAFFIC_V1.index("udp")].sum() for b in before) >= 20
    assert after, "no step for as long as the clock jump: every packet joined one open step"
    starts = np.concatenate([b.start_ns for b in after])
    assert abs(int(starts[-1]) - clock()) < 2 * 10**9  # steps follow the clock as it is now
    udp_after = sum(b.values[:, TRAFFIC_V1.index("udp")].sum() for b in after)
    assert udp_after >= 20  # the packets sent after the jump were counted in closed steps


def test_live_capture_restarts_its_steps_when_the_clock_leaps_ahead(
    veth_pair: tuple[str, str],
) -> None:
    # NTP setting a clock fake-hwclock left an hour behind
    before, after, clock = _live_across_a_clock_jump(veth_pair, HOUR_NS)
    assert before
    rows = sum(len(b) for b in after)
    # steps of the 1.5 s read, not the 3,600 idle ones the featurizer filled the hour with
    assert 0 < rows <= 20, rows
    starts = np.concatenate([b.start_ns for b in after])
    assert abs(int(starts[-1]) - clock()) < 2 * 10**9
    assert sum(b.values[:, TRAFFIC_V1.index("udp")].sum() for b in after) >= 20


def _sensor_config(broker: Broker, **mqtt: object):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "agent": {"device_id": "gw"},
            "mqtt": {"port": broker.port, "host": broker.host, **mqtt},
            "sources": [
                {
                    "name": "plant",
                    "kind": "mqtt-sensors",
                    "step": "0.5s",
                    "topics": [{"topic": "plant/temp", "sensor": "temp"}],
                }
            ],
        }
    )


def _temperatures(source, probe: Probe, value: bytes, seconds: float) -> list[float]:  # type: ignore[no-untyped-def]
    """Publish ``value`` every read; the source's ``temp.value`` column until ``value`` shows."""
    column = source.feature_set.index("temp.value")
    seen: list[float] = []
    began = time.monotonic()
    while time.monotonic() - began < seconds and float(value) not in seen:
        probe.publish("plant/temp", value)
        batch = source.read(timeout=0.5)
        if batch is not None and len(batch):
            seen += batch.values[:, column].tolist()
    return seen


@pytest.mark.broker
def test_mqtt_sensor_source_uses_the_report_brokers_tls_and_credentials(
    broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    pki = make_pki(tmp_path / "pki")
    tls_broker = broker(tls=pki, users={"gw": "s3cret"})
    monkeypatch.setenv("IOTIDS_MQTT_USERNAME", "gw")
    monkeypatch.setenv("IOTIDS_MQTT_PASSWORD", "s3cret")
    config = _sensor_config(tls_broker, tls={"ca_file": str(pki.ca_cert)})
    source = open_source(config.sources[0], config)
    try:
        with Probe(tls_broker, username="gw", password="s3cret") as probe:
            seen = _temperatures(source, probe, b"21.5", 4.0)
    finally:
        source.close()
    assert 21.5 in seen, "the sensor source never reached the TLS broker"


@pytest.mark.broker
def test_mqtt_sensor_source_keeps_stepping_when_the_clock_jumps(mosquitto: Broker) -> None:
    from agent.sources.sensors_mqtt import MqttSensorSource

    clock = _Clock()
    config = _sensor_config(mosquitto)
    source = MqttSensorSource(config.sources[0], config, clock=clock)
    try:
        with Probe(mosquitto) as probe:
            time.sleep(0.5)
            assert 20.0 in _temperatures(source, probe, b"20.0", 1.5)
            clock.offset_ns = -HOUR_NS  # back: readings looked late, no step for an hour
            assert 30.0 in _temperatures(source, probe, b"30.0", 2.0)
            clock.offset_ns = 0  # and forward again: one step per 0.5 s of the hour at once
            after = []
            began = time.monotonic()
            while time.monotonic() - began < 1.2:
                probe.publish("plant/temp", b"40.0")
                batch = source.read(timeout=0.5)
                if batch is not None and len(batch):
                    after.append(batch)
    finally:
        source.close()
    rows = sum(len(b) for b in after)
    assert 0 < rows <= 10  # steps of the last two seconds, not 7,200 of the jumped hour
    assert after[-1].values[-1, source.feature_set.index("temp.value")] == 40.0


def test_mqtt_sensor_source_says_once_that_its_broker_is_away(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.broker import free_port

    port = free_port()  # nothing listens: every connect is refused, again and again
    config = parse_config(
        {
            "agent": {"device_id": "gw"},
            "mqtt": {"host": "127.0.0.1", "port": port, "backoff_min": 0.1, "backoff_max": 0.2},
            "sources": [
                {
                    "name": "plant",
                    "kind": "mqtt-sensors",
                    "step": "0.5s",
                    "topics": [{"topic": "plant/temp", "sensor": "temp"}],
                }
            ],
        }
    )
    with caplog.at_level(logging.DEBUG, logger="agent.sources.sensors_mqtt"):
        source = open_source(config.sources[0], config)
        try:
            time.sleep(4.0)
        finally:
            source.close()
    said = [r for r in caplog.records if f"cannot connect to 127.0.0.1:{port}" in r.getMessage()]
    assert [r.levelno for r in said][:1] == [logging.ERROR]
    assert said[0].getMessage().startswith("sensor source plant: cannot connect to")
    assert len(said) >= 2  # it kept trying ...
    assert all(r.levelno == logging.DEBUG for r in said[1:])  # ... and said so once


@pytest.mark.broker
def test_a_broker_certificate_not_yet_valid_is_said_with_the_gateway_s_date(
    broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    pki = make_pki(tmp_path / "pki", server_valid_in=dt.timedelta(days=30))
    tls_broker = broker(tls=pki)
    config = _sensor_config(tls_broker, tls={"ca_file": str(pki.ca_cert)})
    with caplog.at_level(logging.ERROR, logger="agent.sources.sensors_mqtt"):
        source = open_source(config.sources[0], config)
        try:
            began = time.monotonic()
            while time.monotonic() - began < 5 and not caplog.records:
                time.sleep(0.1)
        finally:
            source.close()
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("sensor source plant: TLS handshake with")
    assert "not yet valid" in said
    assert f"(this gateway's clock says {time.strftime('%Y-%m-%d')})" in said

"""The MQTT sink against a real Mosquitto: contract, outages, crashes, TLS, auth, ACL."""

from __future__ import annotations

import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.config import TlsConfig
from agent.contract import EVENT_SCHEMA, MODEL_SCHEMA, STATS_SCHEMA
from tests.broker import EXAMPLE_ACL, REPO, Broker, Probe, Received, make_pki
from tests.report.conftest import SinkFactory, sink_config

pytestmark = pytest.mark.broker

BrokerFactory = Callable[..., Broker]
DEVICE = "gw-1"
EVENTS = f"iotids/{DEVICE}/events"
STATUS = f"iotids/{DEVICE}/status"


def _is(topic: str, payload: bytes | None = None) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic and (payload is None or m.payload == payload)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _unique_in_order(messages: list[Received]) -> list[str]:
    """Event ids in first-arrival order; every duplicate must repeat its first copy exactly."""
    first: dict[str, bytes] = {}
    order: list[str] = []
    for message in messages:
        event_id = json.loads(message.payload)["id"]
        if event_id in first:
            assert message.payload == first[event_id], "a duplicate differs from its original"
            continue
        first[event_id] = message.payload
        order.append(event_id)
    return order


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_payloads_follow_the_documented_schemas(
    broker: BrokerFactory, sinks: SinkFactory, protocol: str
) -> None:
    mosq = broker()
    with Probe(mosq, [f"iotids/{DEVICE}/#"]) as probe:
        sink, box = sinks(sink_config(mosq, protocol=protocol))
        sink.start()
        assert probe.wait_for(_is(STATUS, b"online")) is not None
        evidence = {"top_sources": ["10.0.0.9"], "top_ports": [80], "packets": 900, "bytes": 54000}
        sink.publish_event(
            {
                "type": "new",
                "detection": "det-1",
                "label": "ddos-syn",
                "category": "ddos",
                "score": np.float32(0.75),  # the decider's numpy values must serialise
                "model": "cnn-int8",
                "evidence": evidence,
            }
        )
        sink.publish_event({"type": "end", "detection": "det-1", "label": "ddos-syn"})
        sink.publish_stats({"packets_per_s": 1234.5})
        sink.publish_model({"bundle_id": "cnn-int8", "last_update": {"result": "activated"}})
        new = probe.wait_for(_is(EVENTS))
        end = probe.wait_for(_is(EVENTS))
        stats = probe.wait_for(_is(f"iotids/{DEVICE}/stats"))
        model = probe.wait_for(_is(f"iotids/{DEVICE}/model"))
    assert new is not None
    assert end is not None
    assert stats is not None
    assert model is not None
    first, last = json.loads(new.payload), json.loads(end.payload)
    assert first["schema"] == last["schema"] == EVENT_SCHEMA
    assert first["device"] == DEVICE
    assert isinstance(first["time"], float)
    assert len(first["id"]) == 32
    assert first["id"] != last["id"]
    assert (first["type"], first["active_events"]) == ("new", 1)
    assert (last["type"], last["active_events"]) == ("end", 0)
    assert first["score"] == pytest.approx(0.75)
    assert first["evidence"] == evidence
    assert new.qos == 1
    stats_json = json.loads(stats.payload)
    assert stats_json["schema"] == STATS_SCHEMA
    assert stats_json["packets_per_s"] == 1234.5
    assert set(stats_json["outbox"]) == {"depth", "bytes", "dropped"}
    assert stats_json["outbox"]["dropped"]["stats"] == 0
    assert json.loads(model.payload)["schema"] == MODEL_SCHEMA
    assert _wait(lambda: box.depth() == 0, 5), "acknowledged rows must leave the outbox"
    # status and model are retained: a late subscriber gets them at once
    with Probe(mosq, [STATUS, f"iotids/{DEVICE}/model"], client_id="late") as late:
        retained = [late.wait_for(lambda m: m.retain, 5) for _ in range(2)]
    assert {(m.topic, m.retain) for m in retained if m} == {
        (STATUS, True),
        (f"iotids/{DEVICE}/model", True),
    }


def _outage(broker: BrokerFactory, sinks: SinkFactory, outage_s: float) -> None:
    """Publish events before, during and after a broker outage; every one must arrive in order."""
    mosq = broker()
    probe = Probe(mosq, [EVENTS], client_id="probe-outage", clean=False)
    probe.start()
    try:
        sink, box = sinks(sink_config(mosq))
        sink.start()
        assert probe.wait_for(_is(EVENTS), 0.1) is None
        sent: list[str] = []

        def emit(count: int, pause: float) -> None:
            for _ in range(count):
                event_id = f"ev-{len(sent):04d}"
                sink.publish_event({"id": event_id, "type": "update", "detection": "d"})
                sent.append(event_id)
                time.sleep(pause)

        assert _wait(lambda: sink.connected, 10)
        emit(20, 0.02)
        mosq.stop()
        emit(int(outage_s * 5), 0.2)  # the attack goes on while the broker is away
        mosq.start()
        emit(20, 0.02)
        assert _wait(lambda: box.depth() == 0, 30), f"{box.depth()} events never acknowledged"
        assert _wait(lambda: len(_unique_in_order(probe.seen)) == len(sent), 15)
        assert _unique_in_order(probe.seen) == sent
    finally:
        probe.close()


@pytest.mark.slow
def test_broker_outage_loses_nothing_and_keeps_order(
    broker: BrokerFactory, sinks: SinkFactory
) -> None:
    _outage(broker, sinks, outage_s=6.0)


@pytest.mark.slow
def test_thirty_second_broker_outage(broker: BrokerFactory, sinks: SinkFactory) -> None:
    """The delivery target: the broker is away for 30 s in the middle of an attack."""
    _outage(broker, sinks, outage_s=30.0)


def _publisher(port: int, outbox: Path, *extra: str) -> subprocess.Popen[str]:
    """Start tests/report/publisher.py as its own process."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.report.publisher",
            "--port",
            str(port),
            "--outbox",
            str(outbox),
            "--device",
            DEVICE,
            *extra,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Publisher processes a test started; killed at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_queued_events_survive_sigkill_while_the_broker_is_down(
    broker: BrokerFactory, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    mosq = broker()
    mosq.stop()
    outbox = tmp_path / "agent-outbox.sqlite"
    first = _publisher(mosq.port, outbox, "--events", "25", "--hold")
    processes.append(first)
    assert first.stdout is not None
    assert first.stdout.readline().strip() == "queued"
    first.send_signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    mosq.start()
    with Probe(mosq, [EVENTS]) as probe:
        second = _publisher(mosq.port, outbox, "--timeout", "20")
        processes.append(second)
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 0, out
        assert _wait(lambda: len(_unique_in_order(probe.seen)) == 50, 10)
    order = _unique_in_order(probe.seen)
    assert order[:25] == [f"{DEVICE}-{n}" for n in range(25)]
    # The killed publisher left 25 detections open: the next start ends each, after them.
    ends = [json.loads(m.payload) for m in probe.seen if json.loads(m.payload)["id"] in order[25:]]
    assert sorted({e["detection"] for e in ends}) == sorted(f"d{n}" for n in range(25))
    assert {(e["type"], e["end_reason"]) for e in ends} == {("end", "agent-restart")}
    assert ends[-1]["active_events"] == 0


def test_sigkill_makes_the_broker_publish_offline(
    broker: BrokerFactory, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    mosq = broker()
    with Probe(mosq, [STATUS]) as probe:
        agent = _publisher(mosq.port, tmp_path / "outbox.sqlite", "--hold")
        processes.append(agent)
        assert probe.wait_for(_is(STATUS, b"online"), 15) is not None
        agent.send_signal(signal.SIGKILL)
        assert probe.wait_for(_is(STATUS, b"offline"), 10) is not None
    with Probe(mosq, [STATUS], client_id="late") as late:
        retained = late.wait_for(_is(STATUS), 5)
    assert retained is not None
    assert retained.retain
    assert retained.payload == b"offline"


def test_clean_close_publishes_offline(broker: BrokerFactory, sinks: SinkFactory) -> None:
    mosq = broker()
    with Probe(mosq, [STATUS]) as probe:
        sink, _ = sinks(sink_config(mosq))
        sink.start()
        assert probe.wait_for(_is(STATUS, b"online")) is not None
        sink.close()
        assert probe.wait_for(_is(STATUS, b"offline"), 5) is not None


def test_backlog_replay_is_rate_limited(broker: BrokerFactory, sinks: SinkFactory) -> None:
    mosq = broker()
    sink, box = sinks(sink_config(mosq, replay_rate=20.0))
    for n in range(60):  # a backlog left by an earlier run
        sink.publish_event({"id": f"b{n}", "type": "update"})
    sink.start()
    assert _wait(lambda: sink.connected, 10)
    connected = time.monotonic()
    assert _wait(lambda: box.depth() == 0, 15)
    elapsed = time.monotonic() - connected
    # 20 go at once (the burst), the other 40 at 20/s: about 2 s, never a flood
    assert elapsed >= 1.5, f"60 messages at 20/s drained in {elapsed:.2f} s"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_model_set_reaches_the_callback(
    broker: BrokerFactory, sinks: SinkFactory, protocol: str
) -> None:
    mosq = broker()
    bundles: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    sink, _ = sinks(sink_config(mosq, protocol=protocol), on_model_set=bundles.put)
    with Probe(mosq, [STATUS]) as operator:
        sink.start()
        assert operator.wait_for(_is(STATUS, b"online")) is not None
        bundle = bytes(range(256)) * 8
        operator.publish(f"iotids/{DEVICE}/model/set", bundle)
        assert bundles.get(timeout=5) == bundle


@pytest.mark.allow_log_exception
def test_a_failing_model_hand_over_is_logged_and_delivery_goes_on(
    broker: BrokerFactory, sinks: SinkFactory
) -> None:
    mosq = broker()

    def broken(payload: bytes) -> None:
        raise RuntimeError("a bug in the model-update hand-over")

    sink, _ = sinks(sink_config(mosq), on_model_set=broken)
    with Probe(mosq, [STATUS, EVENTS]) as operator:
        sink.start()
        assert operator.wait_for(_is(STATUS, b"online")) is not None
        operator.publish(f"iotids/{DEVICE}/model/set", b"not a bundle")
        time.sleep(0.5)  # paho runs the failing callback on its network thread
        sink.publish_event({"type": "new", "label": "syn_flood"})
        got = operator.wait_for(_is(EVENTS))
        assert got is not None
        assert json.loads(got.payload)["label"] == "syn_flood"


def _tls_sink(
    sinks: SinkFactory,
    mosq: Broker,
    tls: TlsConfig,
    caplog: pytest.LogCaptureFixture,
    linger: float = 0.0,
) -> tuple[bool, str]:
    """Start a TLS sink; return whether it got online and the errors it logged meanwhile."""
    sink, _ = sinks(sink_config(mosq, tls=tls))
    caplog.clear()
    sink.start()

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    _wait(lambda: sink.connected or bool(errors()), 5)
    time.sleep(linger)
    online = sink.connected
    sink.close()
    return online, " | ".join(errors())


def test_tls_with_generated_ca(
    broker: BrokerFactory, sinks: SinkFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pki = make_pki(tmp_path / "pki", dns_names=("broker.test",))
    stranger = make_pki(tmp_path / "other", ca_name="somebody else's CA")
    mosq = broker(tls=pki)
    ca = str(pki.ca_cert)
    with Probe(mosq, [STATUS]) as probe:
        online, errors = _tls_sink(sinks, mosq, TlsConfig(ca_file=ca), caplog)
        assert online
        assert not errors
        assert probe.wait_for(_is(STATUS, b"online"), 5) is not None
        # the name in the certificate, not the dialled address, when server_hostname is set
        online, errors = _tls_sink(
            sinks, mosq, TlsConfig(ca_file=ca, server_hostname="broker.test"), caplog
        )
        assert online
        assert not errors
        assert probe.wait_for(_is(STATUS, b"online"), 5) is not None
        online, errors = _tls_sink(
            sinks, mosq, TlsConfig(ca_file=ca, server_hostname="evil.test"), caplog
        )
        assert not online
        assert "TLS handshake with 127.0.0.1" in errors
        assert "mismatch" in errors
        assert probe.wait_for(_is(STATUS, b"online"), 0.5) is None
        # long enough for paho to retry (backoff 1 s): the retry must not log a second error
        wrong_ca = TlsConfig(ca_file=str(stranger.ca_cert))
        online, errors = _tls_sink(sinks, mosq, wrong_ca, caplog, linger=2.5)
    assert not online
    assert "certificate verify failed" in errors
    assert errors.count("TLS handshake") == 1, "one clear error, not one per retry"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_wrong_password_is_one_error_and_no_reconnect_storm(
    protocol: str,
    broker: BrokerFactory,
    sinks: SinkFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mosq = broker(users={DEVICE: "right-password", "operator": "op"})
    monkeypatch.setenv("IOTIDS_TEST_USER", DEVICE)
    monkeypatch.setenv("IOTIDS_TEST_PASSWORD", "wrong-password")
    creds = dict(
        username_env="IOTIDS_TEST_USER",
        password_env="IOTIDS_TEST_PASSWORD",
        credentials_dir_env="IOTIDS_TEST_CREDS",
        auth_backoff=30.0,
        protocol=protocol,
    )
    sink, _ = sinks(sink_config(mosq, **creds))
    sink.start()
    time.sleep(3.5)  # with backoff_min=backoff_max=1 s a naive client would try 3-4 times
    assert not sink.connected
    attempts = mosq.count("Sending CONNACK")  # MQTT attempts, not the readiness probe
    refusals = [r.getMessage() for r in caplog.records if "refused the credentials" in r.message]
    sink.close()
    assert attempts == 1, mosq.log()[-3000:]
    assert len(refusals) == 1, refusals
    assert refusals[0].startswith(f"mqtt: broker refused the credentials for user '{DEVICE}' (")
    assert refusals[0].endswith("); retrying in 30 s")
    # systemd's credentials directory wins over the (wrong) environment
    cred_dir = tmp_path / "credentials"
    cred_dir.mkdir()
    (cred_dir / "mqtt-username").write_text(f"{DEVICE}\n")
    (cred_dir / "mqtt-password").write_text("right-password\n")
    monkeypatch.setenv("IOTIDS_TEST_CREDS", str(cred_dir))
    with Probe(mosq, [STATUS], client_id="op", username="operator", password="op") as probe:
        good, _ = sinks(sink_config(mosq, **creds))
        good.start()
        assert probe.wait_for(_is(STATUS, b"online"), 10) is not None


def test_example_acl_confines_each_device(broker: BrokerFactory, sinks: SinkFactory) -> None:
    users = {"gw-a": "pa", "gw-b": "pb", "iotids-operator": "op"}
    mosq = broker(users=users, acl_file=EXAMPLE_ACL)
    operator = Probe(
        mosq,
        ["iotids/#", "homeassistant/#"],
        client_id="operator",
        username="iotids-operator",
        password="op",
    )
    rogue = Probe(
        mosq,
        ["iotids/gw-b/model/set", "iotids/gw-a/model/set"],
        client_id="gw-a-rogue",
        username="gw-a",
        password="pa",
    )
    with operator, rogue:
        rogue.publish("iotids/gw-b/events", b'{"forged": true}')
        rogue.publish("iotids/gw-b/status", b"offline", retain=True)
        rogue.publish("iotids/gw-a/events", b'{"own": true}')
        assert operator.wait_for(_is("iotids/gw-a/events"), 5) is not None
        operator.publish("iotids/gw-b/model/set", b"bundle for b")
        operator.publish("iotids/gw-a/model/set", b"bundle for a")
        assert rogue.wait_for(_is("iotids/gw-a/model/set"), 5) is not None
        time.sleep(0.5)
        forged = {"iotids/gw-b/events", "iotids/gw-b/status"}
        assert not [m for m in operator.seen if m.topic in forged]
        assert not [m for m in rogue.seen if m.topic == "iotids/gw-b/model/set"]
        # (Mosquitto grants the subscription and filters on delivery: the check is what arrives.)
        # the real sink works inside the same rules: will, online, events, state
        config = sink_config(
            mosq,
            username_env="IOTIDS_TEST_ACL_USER",
            password_env="IOTIDS_TEST_ACL_PASSWORD",
        )
        with pytest.MonkeyPatch.context() as env:
            env.setenv("IOTIDS_TEST_ACL_USER", "gw-a")
            env.setenv("IOTIDS_TEST_ACL_PASSWORD", "pa")
            sink, box = sinks(config, "gw-a")
        sink.start()
        assert operator.wait_for(_is("iotids/gw-a/status", b"online"), 10) is not None
        sink.publish_event({"type": "new", "label": "scan"})
        assert operator.wait_for(_is("iotids/gw-a/events"), 5) is not None
        assert operator.wait_for(_is("iotids/gw-a/state"), 5) is not None
        assert _wait(lambda: box.depth() == 0, 5)
        configs = [m.topic for m in operator.seen if m.topic.startswith("homeassistant/")]
    # Discovery is the operator's to publish: the example ACL keeps gateways out of it (a
    # config names its device in the payload, which no ACL can check).
    assert configs == []
    assert mosq.count("Denied PUBLISH from iotids-gw-a") == 4  # the four discovery configs


def test_concurrent_producers_and_a_flaky_broker(broker: BrokerFactory, sinks: SinkFactory) -> None:
    """Two app threads publish while the broker restarts."""
    mosq = broker()
    probe = Probe(mosq, [EVENTS], client_id="probe-kill", clean=False)
    probe.start()
    try:
        sink, box = sinks(sink_config(mosq))
        sink.start()
        assert _wait(lambda: sink.connected, 10)

        def produce(tag: str) -> None:
            for n in range(40):
                sink.publish_event({"id": f"{tag}-{n:02d}", "type": "update"})
                time.sleep(0.01)

        threads = [threading.Thread(target=produce, args=(t,), name=f"app-{t}") for t in "xy"]
        for thread in threads:
            thread.start()
        mosq.stop()
        mosq.start()
        for thread in threads:
            thread.join()
        assert _wait(lambda: box.depth() == 0, 20)
        assert _wait(lambda: len(_unique_in_order(probe.seen)) == 80, 10)
        order = _unique_in_order(probe.seen)
        for tag in "xy":
            assert [i for i in order if i.startswith(tag)] == [f"{tag}-{n:02d}" for n in range(40)]
    finally:
        probe.close()

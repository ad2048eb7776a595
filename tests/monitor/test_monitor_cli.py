"""``iotids monitor`` against real brokers: Mosquitto and the demo's embedded amqtt."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.broker import Broker, Probe, free_port, make_pki
from tests.monitor.gateway import FakeGateway

pytestmark = pytest.mark.broker


def _attack(gateway: FakeGateway) -> None:
    """One detection that stays active, one that ends, a QoS 1 redelivery, and stats."""
    now = time.time()
    gateway.event("m1", "new", "det-1", label="syn_flood", category="ddos", score=0.97, start=now)
    gateway.event("m1", "new", "det-1", label="syn_flood", category="ddos", score=0.97, start=now)
    gateway.event("m2", "update", "det-1", label="syn_flood", category="ddos", score=0.99)
    gateway.event("m3", "new", "det-2", label="port_scan", category="recon", score=0.8, start=now)
    gateway.event("m4", "end", "det-2", label="port_scan", category="recon", end=now + 1)
    gateway.stats(
        packets_per_s=1234.5,
        latency_ms_p50=1.25,
        latency_ms_p99=4.5,
        drops={"kernel": 1, "queue": 2},
        outbox={"depth": 7, "bytes": 900, "dropped": {}},
    )


def _after_subscribe(subscribed: threading.Event, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread once the monitor is subscribed; re-raise its failure on join."""
    failures: list[BaseException] = []

    def body() -> None:
        try:
            assert subscribed.wait(10), "the monitor never subscribed"
            action()
        except BaseException as exc:
            failures.append(exc)

    class _Thread(threading.Thread):
        def join(self, timeout: float | None = None) -> None:
            super().join(timeout)
            if failures:
                raise failures[0]

    thread = _Thread(target=body, name="fake-gateway")
    thread.start()
    return thread


def _monitor(url: str, *extra: str, timeout: str = "2") -> list[str]:
    return ["monitor", "--broker", url, "--timeout", timeout, *extra]


def test_snapshot_tracks_a_gateway_then_its_last_will(
    broker_address: tuple[str, int],
    gateways: Callable[..., FakeGateway],
    monitor_subscribed: threading.Event,
    capsys: pytest.CaptureFixture[str],
) -> None:
    host, port = broker_address
    url = f"mqtt://{host}:{port}"
    gateway = gateways(host, port)
    gateway.status("online")
    gateway.model("cnn-7f3a", result="refused", reason="signature by an untrusted key")

    thread = _after_subscribe(monitor_subscribed, lambda: _attack(gateway))
    assert main(_monitor(url, "--once", "--json")) == 0
    thread.join(10)
    snapshot = json.loads(capsys.readouterr().out)

    assert snapshot["broker"] == url
    state = snapshot["gateways"]["gw-1"]
    assert state["status"] == "online"
    assert [e["detection"] for e in state["active_events"]] == ["det-1"]
    assert state["active_events"][0]["score"] == pytest.approx(0.99)
    assert [d["detection"] for d in state["recent_detections"]] == ["det-2", "det-1"]
    assert state["recent_detections"][0]["end"] == pytest.approx(time.time(), abs=30)
    assert state["events_received"] == 4
    assert state["duplicates_dropped"] == 1
    assert state["packets_per_s"] == pytest.approx(1234.5)
    assert state["latency_ms_p50"] == pytest.approx(1.25)
    assert state["latency_ms_p99"] == pytest.approx(4.5)
    assert state["drops"] == 3
    assert state["outbox_depth"] == 7
    assert state["model"]["bundle_id"] == "cnn-7f3a"
    assert state["model"]["last_update"]["result"] == "refused"

    gateway.crash()
    assert main(_monitor(url, "--once", "--json")) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["gateways"]["gw-1"]["status"] == "offline"
    # The retained model survives the gateway; the non-retained events died with the old view.
    assert after["gateways"]["gw-1"]["model"]["bundle_id"] == "cnn-7f3a"
    assert after["gateways"]["gw-1"]["active_events"] == []


def test_live_view_without_a_terminal_prints_one_line_per_change(
    mosquitto: Broker,
    gateways: Callable[..., FakeGateway],
    monitor_subscribed: threading.Event,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway = gateways(mosquitto.host, mosquitto.port)
    gateway.status("online")
    thread = _after_subscribe(monitor_subscribed, lambda: _attack(gateway))
    assert main(_monitor(f"mqtt://{mosquitto.host}:{mosquitto.port}")) == 0
    thread.join(10)
    lines = capsys.readouterr().out.splitlines()

    assert not any("\x1b" in line for line in lines), "no ANSI escapes outside a terminal"
    bodies = [line.split(" ", 1)[1] for line in lines]
    assert bodies[0] == "gw-1 online"
    news = [b for b in bodies if b.startswith("gw-1 detection new ddos: syn_flood")]
    assert len(news) == 1, "the redelivered event must not print twice"
    assert any(b.startswith("gw-1 detection update ddos: syn_flood score 0.99") for b in bodies)
    assert any(b.startswith("gw-1 detection end recon: port_scan") for b in bodies)
    assert any(b.startswith("gw-1 stats 1234.5 pkt/s") for b in bodies)


def test_text_snapshot_is_a_table(
    mosquitto: Broker, gateways: Callable[..., FakeGateway], capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = gateways(mosquitto.host, mosquitto.port, device="pump-house")
    gateway.status("online")
    gateway.model("gru-01")
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    assert main(_monitor(url, "--once", timeout="1")) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("pump-house"))
    assert row.split()[1] == "online"
    assert row.split()[-1] == "gru-01"
    assert "ACTIVE EVENTS (0)" in out


def test_unreachable_broker_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(_monitor(f"mqtt://127.0.0.1:{port}", "--once")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"iotids monitor: cannot reach broker mqtt://127.0.0.1:{port}: connection refused"


def test_credentials_in_the_url_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_monitor("mqtt://operator:hunter2@127.0.0.1:1883", "--once")) == 2
    err = capsys.readouterr().err
    assert "IOTIDS_MQTT_USERNAME" in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--json",), "iotids monitor: --json needs --once"),
        (
            ("--prefix", "iotids/#"),
            "iotids monitor: --prefix must be a plain topic prefix, got 'iotids/#'",
        ),
        (("--recent", "0"), "iotids monitor: --recent must be >= 1, got 0"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    extra: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_monitor("mqtt://127.0.0.1:1883", *extra)) == 2
    assert capsys.readouterr().err.strip() == message


def _retained_online(broker: Broker, device: str, **probe: Any) -> None:
    with Probe(broker, client_id="publisher", **probe) as publisher:
        publisher.publish(f"iotids/{device}/status", b"online", retain=True)


def test_tls_with_the_right_ca_and_a_clear_error_with_the_wrong_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = make_pki(tmp_path / "pki")
    stranger = make_pki(tmp_path / "other", ca_name="someone else's CA")
    broker = Broker(tmp_path / "tls", tls=pki, persistence=False)
    broker.start()
    try:
        _retained_online(broker, "gw-tls")
        url = f"mqtts://127.0.0.1:{broker.port}"
        code = main(_monitor(url, "--once", "--json", "--ca-file", str(pki.ca_cert), timeout="1"))
        assert code == 0
        assert json.loads(capsys.readouterr().out)["gateways"]["gw-tls"]["status"] == "online"

        code = main(_monitor(url, "--once", "--ca-file", str(stranger.ca_cert), timeout="1"))
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(
            f"iotids monitor: cannot reach broker {url}: TLS certificate verification"
        )
    finally:
        broker.kill()


def test_credentials_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Broker(tmp_path / "auth", users={"operator": "s3cret"}, persistence=False)
    broker.start()
    try:
        _retained_online(broker, "gw-auth", username="operator", password="s3cret")
        url = f"mqtt://127.0.0.1:{broker.port}"
        monkeypatch.delenv("IOTIDS_MQTT_USERNAME", raising=False)
        monkeypatch.delenv("IOTIDS_MQTT_PASSWORD", raising=False)
        assert main(_monitor(url, "--once", timeout="1")) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(
            f"iotids monitor: broker {url} refused the connection: Not authorized"
        )
        assert "IOTIDS_MQTT_USERNAME" in err

        monkeypatch.setenv("IOTIDS_MQTT_USERNAME", "operator")
        monkeypatch.setenv("IOTIDS_MQTT_PASSWORD", "wrong")
        assert main(_monitor(url, "--once", timeout="1")) == 2
        assert "refused the connection" in capsys.readouterr().err

        monkeypatch.setenv("IOTIDS_MQTT_PASSWORD", "s3cret")
        assert main(_monitor(url, "--once", "--json", timeout="1")) == 0
        assert json.loads(capsys.readouterr().out)["gateways"]["gw-auth"]["status"] == "online"
    finally:
        broker.kill()

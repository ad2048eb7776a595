"""The collector on a real Mosquitto: stored once, hostile payloads skipped, a group splits."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from console.collector.consumer import Collector, CollectorOptions
from console.collector.metrics import FleetMetrics
from console.collector.store import SqlStore, open_store
from tests.broker import Broker, Probe
from tests.console.collector.postgres import Postgres

pytestmark = pytest.mark.broker


def event(
    device: str, kind: str = "new", event_id: str | None = None, incident: str = "det-1"
) -> bytes:
    return json.dumps(
        {
            "schema": "iotids.event/1",
            "device": device,
            "time": time.time(),
            "id": event_id or uuid.uuid4().hex,
            "type": kind,
            "detection": "det-1",
            "incident": incident,  # det-1's own: it opens one
            "active_events": 1,
            "label": "DDoS-SYN_Flood",
            "category": "ddos",
            "score": 0.97,
            "peak_score": 0.99,
            "model": "cnn",
            "start": time.time() - 2,
            "evidence": {"packets": 10, "bytes": 600},
        }
    ).encode()


def stats(device: str) -> bytes:
    return json.dumps(
        {
            "schema": "iotids.stats/1",
            "device": device,
            "time": time.time(),
            "packets_per_s": 120.0,
            "cpu_percent": 7.5,
            "outbox": {"depth": 4, "bytes": 900, "dropped": {}},
        }
    ).encode()


def count(store: SqlStore, query: str) -> int:
    with store._transaction() as cur:
        cur.execute(query)
        row = cur.fetchone()  # type: ignore[attr-defined]
    return int(row[0])


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    """Start collectors (same options but client id); all stop at teardown."""
    started: list[Collector] = []

    def make(broker: Broker, store: SqlStore, name: str = "c1", group: str = "g") -> Collector:
        options = CollectorOptions(broker.host, broker.port, share_group=group, client_id=name)
        collector = Collector(options, store, FleetMetrics())
        collector.start()
        assert collector.wait_subscribed(10.0)
        started.append(collector)
        return collector

    yield make
    for collector in started:
        collector.stop()
        collector.store.close()


@pytest.fixture
def stores() -> Iterator[Callable[[str], SqlStore]]:
    """Open stores (for reading back); all closed at teardown."""
    opened: list[SqlStore] = []

    def make(url: str) -> SqlStore:
        opened.append(open_store(url))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def test_events_stats_and_status_are_stored_and_exposed(
    mosquitto: Broker, collectors: Callable[..., Collector], tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "fleet.db"))
    collector = collectors(mosquitto, store)
    duplicate = uuid.uuid4().hex
    with Probe(mosquitto, client_id="gw") as gateway:
        gateway.publish("iotids/gw-1/status", b"online", retain=True)
        gateway.publish("iotids/gw-1/events", event("gw-1", "new", duplicate))
        gateway.publish("iotids/gw-1/events", event("gw-1", "new", duplicate))  # a replay
        gateway.publish("iotids/gw-1/events", event("gw-1", "end"))
        # the same attack back later: a new detection in the first one's incident
        gateway.publish("iotids/gw-1/events", event("gw-1", "new", incident="det-0"))
        gateway.publish("iotids/gw-1/stats", stats("gw-1"))
    assert wait_until(lambda: count(store, "SELECT count(*) FROM stats") == 1)
    assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == 3)
    assert count(store, "SELECT count(*) FROM events WHERE incident = 'det-0'") == 1
    assert count(store, "SELECT count(*) FROM devices WHERE status = 'online'") == 1
    text = collector.metrics.render()
    assert 'iotids_collector_messages_total{kind="events",result="duplicate"} 1.0' in text
    assert 'iotids_events_total{type="end",category="ddos"} 1.0' in text
    assert 'iotids_events_total{type="new",category="ddos"} 2.0' in text
    assert 'iotids_incidents_total{category="ddos"} 1.0' in text
    assert 'iotids_gateway_outbox_depth{device="gw-1"} 4.0' in text
    assert 'iotids_gateway_up{device="gw-1"} 1.0' in text


HOSTILE: dict[str, bytes] = {
    "not json": b"\xff\xfe{",
    "not an object": b"[1, 2, 3]",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "wrong schema": json.dumps({"schema": "iotids.event/9", "id": "x", "type": "new"}).encode(),
    "no id": json.dumps({"schema": "iotids.event/1", "type": "new", "time": 1.0}).encode(),
    "nan time": b'{"schema":"iotids.event/1","id":"n1","type":"new","time":NaN}',
    "device mismatch": event("someone-else"),
    "huge id": json.dumps(
        {"schema": "iotids.event/1", "id": "x" * 100_000, "type": "new", "time": 1.0}
    ).encode(),
    # both stopped paho's network thread: the collector ran on and stored nothing more
    "integer no float holds": b'{"schema":"iotids.event/1","id":"b","type":"new","time":1'
    + b"0" * 400
    + b"}",
    "lone surrogate": b'{"schema":"iotids.event/1","id":"s","type":"new","time":1,'
    b'"label":"\\ud800"}',
}


def test_hostile_payloads_are_counted_and_skipped_never_stored_half(
    mosquitto: Broker, collectors: Callable[..., Collector], tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "fleet.db"))
    collector = collectors(mosquitto, store)
    with Probe(mosquitto, client_id="attacker") as attacker:
        for payload in HOSTILE.values():
            attacker.publish("iotids/gw-1/events", payload)
        attacker.publish("iotids/gw-1/stats", b"{}")
        attacker.publish("iotids/gw-1/status", b"maybe")
        attacker.publish("iotids/gw-1/events", event("gw-1"))  # one good message after them
    assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == 1)
    text = collector.metrics.render()
    bad = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("iotids_collector_bad_payloads_total{")
    )
    assert bad == len(HOSTILE) + 2
    assert count(store, "SELECT count(*) FROM stats") == 0
    assert count(store, "SELECT count(*) FROM devices") == 1  # only the good event's device


def test_a_message_that_breaks_its_handler_is_skipped_and_the_rest_goes_on(
    mosquitto: Broker,
    collectors: Callable[..., Collector],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = open_store(str(tmp_path / "fleet.db"))
    add = store.add

    def add_or_break(row: Any) -> bool:
        if getattr(row, "id", "") == "boom":
            raise RuntimeError("a bug no payload check foresaw")
        return add(row)

    monkeypatch.setattr(store, "add", add_or_break)
    collector = collectors(mosquitto, store)
    with Probe(mosquitto, client_id="gw") as gateway:
        gateway.publish("iotids/gw-1/events", event("gw-1", event_id="boom"))
        gateway.publish("iotids/gw-1/events", event("gw-1", event_id="after"))
    assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == 1)
    assert 'iotids_collector_bad_payloads_total{reason="failed to handle"} 1' in (
        collector.metrics.render()
    )
    said = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert said == [
        "collector: skipped a message on iotids/gw-1/events that failed: RuntimeError: "
        "a bug no payload check foresaw"
    ]


def test_two_collectors_with_one_client_id_are_told_apart_in_one_line(
    mosquitto: Broker,
    collectors: Callable[..., Collector],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # each takes the session from the other at every reconnect; Mosquitto 2.0 gives no reason
    collectors(mosquitto, open_store(str(tmp_path / "a.db")), name="same")
    second = Collector(
        CollectorOptions(mosquitto.host, mosquitto.port, share_group="g", client_id="same"),
        open_store(str(tmp_path / "b.db")),
        FleetMetrics(),
    )
    second.start()
    try:
        said = "is another collector using client id same? Give each its own --client-id"
        assert wait_until(lambda: said in caplog.text, 30.0)
        assert caplog.text.count(said) == 1
    finally:
        second.stop()
        second.store.close()


def test_the_default_client_id_is_the_same_on_every_start() -> None:
    from console.collector.consumer import default_client_id

    options = CollectorOptions("broker", 1883)
    assert default_client_id(options, "gw-ops") == default_client_id(options, "gw-ops")
    assert default_client_id(options, "gw-ops").startswith("iotids-collector-gw-ops-")
    other = CollectorOptions("broker", 1883, share_group="other")
    assert default_client_id(other, "gw-ops") != default_client_id(options, "gw-ops")
    assert len(default_client_id(options, "h" * 300)) == len("iotids-collector-") + 40 + 9


def test_without_a_group_what_came_over_a_broker_restart_waits_for_the_collector(
    collectors: Callable[..., Collector], tmp_path: Path
) -> None:
    # Mosquitto 2.0 restores a session's plain subscriptions after a restart, not shared ones
    broker = Broker(tmp_path / "persistent", persistence=True)
    broker.start()
    try:
        store = open_store(str(tmp_path / "fleet.db"))
        collector = collectors(broker, store, group="")
        assert collector.options.subscriptions()[0] == ("iotids/+/events", 1)
        collector.stop()
        broker.restart()
        sent = [uuid.uuid4().hex for _ in range(5)]
        with Probe(broker, client_id="gw") as gateway:
            for event_id in sent:
                gateway.publish("iotids/gw-1/events", event("gw-1", "new", event_id))
        collector.start()
        assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == len(sent))
    finally:
        broker.kill()


def test_a_broker_that_cannot_be_reached_is_said_once_and_when_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Broker(tmp_path / "later", persistence=False)
    collector = Collector(
        CollectorOptions(broker.host, broker.port, client_id="c-late"),
        open_store(str(tmp_path / "fleet.db")),
        FleetMetrics(),
    )
    collector.start()
    try:
        unreachable = f"cannot reach the broker at {broker.host}:{broker.port}; retrying"
        assert wait_until(lambda: unreachable in caplog.text, 10.0)
        time.sleep(3.5)  # paho retries every 1-2 s here: still the one line
        assert caplog.text.count(unreachable) == 1
        broker.start()
        assert collector.wait_subscribed(15.0)
        assert "collector: connected (session present: False)" in caplog.text
    finally:
        collector.stop()
        collector.store.close()
        broker.kill()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "shared.db")
        return
    server: Postgres = request.getfixturevalue("postgres")
    yield server.url
    store = open_store(server.url)
    with store._transaction() as cur:
        for table in ("events", "stats", "devices"):
            cur.execute(f"DELETE FROM {table}")
    store.close()


def test_two_collectors_in_a_group_split_the_fleet_and_store_each_event_once(
    mosquitto: Broker,
    collectors: Callable[..., Collector],
    stores: Callable[[str], SqlStore],
    store_url: str,
) -> None:
    first = collectors(mosquitto, open_store(store_url), "c1")
    second = collectors(mosquitto, open_store(store_url), "c2")
    reader = stores(store_url)
    ids: list[str] = []
    with Probe(mosquitto, client_id="fleet") as fleet:
        for n in range(200):
            ids.append(uuid.uuid4().hex)
            fleet.publish(f"iotids/gw-{n % 20}/events", event(f"gw-{n % 20}", "new", ids[-1]))
    assert wait_until(lambda: count(reader, "SELECT count(*) FROM events") == len(ids))
    # a collector counts a message just after committing its row: the reader may see it first
    assert wait_until(lambda: first.stored + second.stored == len(ids))
    assert first.stored > 0, (first.stored, second.stored)
    assert second.stored > 0, (first.stored, second.stored)
    assert count(reader, "SELECT count(DISTINCT id) FROM events") == len(ids)


def test_events_sent_while_a_collector_was_away_arrive_once_after_it_reconnects(
    mosquitto: Broker, collectors: Callable[..., Collector], tmp_path: Path
) -> None:
    store = open_store(str(tmp_path / "fleet.db"))
    collector = collectors(mosquitto, store)
    replayed = uuid.uuid4().hex
    with Probe(mosquitto, client_id="gw") as gateway:
        gateway.publish("iotids/gw-1/events", event("gw-1", "new", replayed))
        assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == 1)
        collector.stop()
        # While it is away: a new event, and the outbox replaying one it already stored.
        gateway.publish("iotids/gw-1/events", event("gw-1", "end"))
        gateway.publish("iotids/gw-1/events", event("gw-1", "new", replayed))
        collector.start()  # same client id: the broker kept its session and queued both
        assert collector.wait_subscribed(10.0)
    assert wait_until(lambda: count(store, "SELECT count(*) FROM events") == 2)
    time.sleep(0.5)
    assert count(store, "SELECT count(*) FROM events") == 2
    duplicates: dict[str, Any] = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in collector.metrics.render().splitlines()
        if 'result="duplicate"' in line
    }
    assert sum(duplicates.values()) == 1


@pytest.mark.slow
def test_a_database_outage_loses_nothing_the_broker_redelivers_after_it(
    mosquitto: Broker, stores: Callable[[str], SqlStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from console.collector import consumer

    pytest.importorskip("psycopg", reason="the [console] extra (psycopg 3) is not installed")
    monkeypatch.setattr(consumer, "RETRY_AFTER_STORE_ERROR_S", 1.0)
    server = Postgres()
    server.start()
    stop = threading.Event()
    store = open_store(server.url)
    options = CollectorOptions(mosquitto.host, mosquitto.port, client_id="pg-collector")
    collector = Collector(options, store, FleetMetrics())
    runner = threading.Thread(target=collector.run, args=(stop,), daemon=True)
    runner.start()
    try:
        reader = stores(server.url)
        with Probe(mosquitto, client_id="gw") as gateway:
            time.sleep(1.0)  # subscribed
            gateway.publish("iotids/gw-1/events", event("gw-1", "new"))
            assert wait_until(lambda: count(reader, "SELECT count(*) FROM events") == 1)
            server.halt()
            for kind in ("update", "end"):
                gateway.publish("iotids/gw-1/events", event("gw-1", kind))
            assert wait_until(lambda: "store_error" in collector.metrics.render(), timeout=15.0)
            server.start()
            assert wait_until(
                lambda: _safe_count(reader, "SELECT count(*) FROM events") == 3, timeout=30.0
            )
        assert "iotids_collector_store_up 1.0" in collector.metrics.render()
    finally:
        stop.set()
        runner.join(timeout=10)
        store.close()
        server.stop()


def _safe_count(store: SqlStore, query: str) -> int:
    """``count`` that says -1 while the server is still coming back."""
    from console.collector.store import StoreError

    try:
        return count(store, query)
    except StoreError:
        return -1

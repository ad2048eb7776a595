"""The store on SQLite and on a real PostgreSQL: idempotent on event id, one transaction each."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.collector.store import (
    _POSTGRES,
    EventRow,
    SqlStore,
    StatsRow,
    StatusRow,
    StoreError,
    _add_incident,
    open_store,
)
from tests.console.collector.postgres import Postgres


def _event(event_id: str, device: str = "gw-1", kind: str = "new") -> EventRow:
    payload = {"schema": "iotids.event/1", "id": event_id, "device": device, "type": kind}
    return EventRow(
        id=event_id,
        device=device,
        type=kind,
        detection="d1",
        incident="d1",
        label="DDoS-SYN_Flood",
        category="ddos",
        score=0.97,
        time=1000.0,
        received=1000.5,
        payload=json.dumps(payload),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'fleet.db'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.url


@pytest.fixture
def store(url: str) -> Iterator[SqlStore]:
    instance = open_store(url)
    yield instance
    with instance._transaction() as cur:  # leave the shared server clean for the next test
        for table in ("events", "stats", "devices"):
            cur.execute(f"DELETE FROM {table}")
    instance.close()


def _count(store: SqlStore, query: str) -> int:
    with store._transaction() as cur:
        cur.execute(query)
        row = cur.fetchone()  # type: ignore[attr-defined]
    return int(row[0])


def test_an_event_is_stored_once_however_often_it_arrives(store: SqlStore) -> None:
    assert store.add(_event("e1")) is True
    assert store.add(_event("e1")) is False
    assert store.add(_event("e2", kind="end")) is True
    assert _count(store, "SELECT count(*) FROM events") == 2
    assert _count(store, "SELECT count(*) FROM devices") == 1


def test_stats_and_status_land_with_the_device(store: SqlStore) -> None:
    stats = StatsRow("gw-2", time=10.0, received=11.0, payload='{"packets_per_s": 5}')
    assert store.add(stats) is True
    assert store.add(stats) is False  # the same message again: (device, time) is its key
    assert store.add(StatusRow("gw-2", "offline", received=12.0)) is True
    with store._transaction() as cur:
        cur.execute("SELECT status, last_seen FROM devices WHERE device = 'gw-2'")
        assert cur.fetchone() == ("offline", 12.0)  # type: ignore[attr-defined]


# the events table as collectors made it before incidents
BEFORE_INCIDENTS = """CREATE TABLE events (
    id TEXT PRIMARY KEY, device TEXT NOT NULL, type TEXT NOT NULL, detection TEXT NOT NULL,
    label TEXT NOT NULL, category TEXT NOT NULL, score DOUBLE PRECISION,
    time DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION NOT NULL, payload {json} NOT NULL
)"""


def test_a_table_from_before_incidents_gets_them_from_its_stored_payloads(
    store: SqlStore, url: str
) -> None:
    postgres = url.startswith("postgresql://")
    mark = "%s" if postgres else "?"
    stored = {  # detection -> the payload's incident, as an agent sent it (absent: none)
        "d1": "d0",
        "d2": None,
        "d3": "",
        "d4": 7,
        "d5": "x" * 300,
    }
    with store._transaction() as cur:
        cur.execute("DROP TABLE events")
        cur.execute(BEFORE_INCIDENTS.format(json="JSONB" if postgres else "TEXT"))
        for detection, incident in stored.items():
            body = {"id": detection} | ({} if incident is None else {"incident": incident})
            cur.execute(
                "INSERT INTO events VALUES (" + ", ".join([mark] * 10) + ")",
                (detection, "gw", "new", detection, "l", "c", 0.9, 1.0, 1.0, json.dumps(body)),
            )
    again = open_store(url)
    try:
        with again._transaction() as cur:
            cur.execute("SELECT detection, incident FROM events ORDER BY detection")
            found = dict(cur.fetchall())  # type: ignore[attr-defined]
        # as the parser reads a payload now: a string, cut to 128; anything else: its own
        assert found == {"d1": "d0", "d2": "d2", "d3": "d3", "d4": "d4", "d5": "x" * 128}
        assert again.add(_event("e9")) is True  # and it takes new rows with the column
        assert _count(again, "SELECT count(*) FROM events WHERE incident = 'd1'") == 1
        if postgres:  # a second collector that saw the old table too: its upgrade is a no-op
            with again._transaction() as cur:
                for statement in _add_incident(_POSTGRES):
                    cur.execute(statement)
            assert _count(again, "SELECT count(*) FROM events WHERE incident = 'd1'") == 1
            assert _count(again, "SELECT count(*) FROM events") == 6
    finally:
        again.close()


def test_a_store_that_already_has_the_tables_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "again.db"
    open_store(str(path)).close()
    again = open_store(str(path))
    assert again.add(_event("e1")) is True
    again.close()


def test_a_failed_write_stores_nothing_and_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    instance = open_store(str(path))
    instance.add(_event("e1"))
    blocker = sqlite3.connect(path, timeout=0.1)
    blocker.execute("BEGIN EXCLUSIVE")
    instance._conn.execute("PRAGMA busy_timeout = 100")
    with pytest.raises(StoreError):
        instance.add(_event("e2"))
    blocker.rollback()
    blocker.close()
    assert instance.add(_event("e2")) is True  # a new connection after the failure
    assert _count(instance, "SELECT count(*) FROM events") == 2
    instance.close()


def test_a_postgres_url_without_a_server_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        open_store("postgresql://nobody@127.0.0.1:1/none")

"""From message to row: what a database could not take, or should not, is a counted reason."""

from __future__ import annotations

import json

import pytest

from console.collector.rows import Bad, Parsed, Parser
from console.collector.store import EventRow, StatsRow, StatusRow


def _event(**fields: object) -> bytes:
    body = {"schema": "iotids.event/1", "id": "e1", "type": "new", "time": 5.0, **fields}
    return json.dumps(body).encode()


def test_good_messages_become_rows_with_their_gauges() -> None:
    parser = Parser("iotids")
    parsed = parser.parse("iotids/gw-1/events", _event(active_events=2, score=0.9), 9.0)
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.row, EventRow)
    assert (parsed.row.id, parsed.row.time, parsed.row.received) == ("e1", 5.0, 9.0)
    assert parsed.gauges == {"active_events": 2.0}
    stats = json.dumps({"time": 1.0, "cpu_percent": 3, "outbox": {"depth": 7}}).encode()
    parsed = parser.parse("iotids/gw-1/stats", stats, 2.0)
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.row, StatsRow)
    assert parsed.gauges == {"cpu_percent": 3.0, "outbox_depth": 7.0}
    parsed = parser.parse("iotids/gw-1/status", b"offline", 3.0)
    assert isinstance(parsed, Parsed)
    assert parsed.row == StatusRow("gw-1", "offline", 3.0)


@pytest.mark.parametrize(
    ("fields", "incident", "opens"),
    [
        ({"detection": "d1", "incident": "d1"}, "d1", True),
        ({"detection": "d2", "incident": "d1", "recurrence": 1}, "d1", False),
        ({"detection": "d3"}, "d3", True),  # an agent from before incidents
        ({"detection": "d4", "incident": ""}, "d4", True),
        ({"detection": "d5", "incident": ["d1"]}, "d5", True),
        ({"detection": "d6", "incident": "i" * 500}, "i" * 128, False),
        ({"detection": "d7", "incident": "d0", "type": "end"}, "d0", False),
    ],
)
def test_an_event_names_its_incident_and_whether_it_opens_one(
    fields: dict[str, object], incident: str, opens: bool
) -> None:
    parsed = Parser("iotids").parse("iotids/gw-1/events", _event(**fields), 1.0)
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.row, EventRow)
    assert (parsed.row.incident, parsed.row.opens_incident) == (incident, opens)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("iotids/gw-1/model", _event(), "unexpected topic"),
        ("other/gw-1/events", _event(), "unexpected topic"),
        ("iotids/" + "g" * 200 + "/events", _event(), "device id"),
        ("iotids/gw-1/events", _event(label="a\x00b"), "not storable JSON"),
        (
            "iotids/gw-1/events",
            b'{"id":"e","type":"new","time":1,"score":NaN}',
            "not storable JSON",
        ),
        ("iotids/gw-1/events", _event(time=True), "time"),
        ("iotids/gw-1/events", _event(time="5"), "time"),
        ("iotids/gw-1/events", _event(type="begin"), "id or type"),
        ("iotids/gw-1/events", _event(id="x" * 129), "id too long"),
        ("iotids/gw-1/events", _event(device="gw-2"), "device differs from topic"),
        ("iotids/gw-1/stats", _event(), "schema"),
        ("iotids/gw-1/status", b"rebooting", "status value"),
        (
            "iotids/gw-1/events",
            b'{"id":"e","type":"new","time":1' + b"0" * 30 + b"}",
            "not a JSON object",
        ),
        (
            "iotids/gw-1/stats",
            b'{"time":1,"cpu_percent":1' + b"0" * 400 + b"}",
            "not a JSON object",
        ),
        ("iotids/gw-1/events", b'{"id":"\\udc00","type":"new","time":1}', "not a JSON object"),
    ],
)
def test_what_cannot_be_stored_is_a_reason(topic: str, payload: bytes, reason: str) -> None:
    parsed = Parser("iotids").parse(topic, payload, 1.0)
    assert isinstance(parsed, Bad)
    assert parsed.reason == reason


def test_long_labels_are_cut_not_refused() -> None:
    parsed = Parser("iotids").parse("iotids/gw-1/events", _event(label="L" * 5000), 1.0)
    assert isinstance(parsed, Parsed)
    assert isinstance(parsed.row, EventRow)
    assert len(parsed.row.label) == 200

"""The MQTT contract module: topics, payload envelope, parsing hostile payloads, de-duplication."""

from __future__ import annotations

import pytest

from agent import contract
from agent.contract import Deduplicator, Topics


def test_topics_and_filters_agree() -> None:
    topics = Topics.for_device("site/a/", "gw-2")
    assert topics.events == "site/a/gw-2/events"
    assert topics.model_set == "site/a/gw-2/model/set"
    filters = contract.fleet_filters("site/a", ("events", "stats"))
    assert filters == ["site/a/+/events", "site/a/+/stats"]
    shared = contract.fleet_filters("site/a", ("events",), share="ops")
    assert shared == ["$share/ops/site/a/+/events"]
    assert contract.split_topic("site/a", topics.events) == ("gw-2", "events")
    assert contract.split_topic("site/a", topics.model_set) is None
    assert contract.split_topic("site/a", "other/gw-2/events") is None
    assert contract.split_topic("site/a", "site/a//events") is None


def test_stamp_keeps_what_the_caller_set() -> None:
    body = contract.stamp({"time": 1.0, "x": 2}, contract.EVENT_SCHEMA, "gw", 5.0)
    assert body == {"time": 1.0, "x": 2, "schema": "iotids.event/1", "device": "gw"}


def test_encode_handles_numpy_like_values() -> None:
    class Scalar:
        def item(self) -> float:
            return 0.5

    assert contract.decode(contract.encode({"score": Scalar()})) == {"score": 0.5}


@pytest.mark.parametrize(
    "payload",
    [
        *(b"", b"not json", b"[1, 2]", b"\xff\xfe", b"[" * 100_000),
        b'"' + b"x" * (1 << 20) + b'"',
        b'{"time": 1' + b"0" * 400 + b"}",  # no float holds it: OverflowError downstream
        b'{"label": "\\ud800"}',  # a str no database, terminal or log can write as UTF-8
    ],
)
def test_decode_refuses_hostile_payloads(payload: bytes) -> None:
    assert contract.decode(payload) is None


def test_decode_keeps_escapes_that_make_whole_characters() -> None:
    assert contract.decode(b'{"label": "\\ud83d\\ude00 \\u00e9"}') == {"label": "\U0001f600 \u00e9"}


def test_schema_major_version_is_checked() -> None:
    assert contract.schema_matches({"schema": "iotids.event/1"}, contract.EVENT_SCHEMA)
    assert contract.schema_matches({"schema": "iotids.event/1.3"}, contract.EVENT_SCHEMA)
    assert contract.schema_matches({}, contract.EVENT_SCHEMA)
    assert not contract.schema_matches({"schema": "iotids.event/2"}, contract.EVENT_SCHEMA)
    assert not contract.schema_matches({"schema": "iotids.stats/1"}, contract.EVENT_SCHEMA)
    assert not contract.schema_matches({"schema": 1}, contract.EVENT_SCHEMA)


def test_event_key_needs_an_id_and_a_known_type() -> None:
    assert contract.event_key({"id": "a", "type": "new"}) == ("a", "new")
    assert contract.event_key({"id": "a", "type": "bogus"}) is None
    assert contract.event_key({"id": 3, "type": "end"}) is None
    assert contract.event_key({"type": "end"}) is None


def test_deduplicator_is_bounded() -> None:
    seen = Deduplicator(capacity=3)
    assert [seen.first_time(i) for i in ("a", "b", "a", "c", "d")] == [
        True,
        True,
        False,
        True,
        True,
    ]
    assert len(seen) == 3
    assert seen.duplicates == 1
    assert seen.first_time("a")  # forgotten: the oldest id went when "d" came
    with pytest.raises(ValueError, match="capacity"):
        Deduplicator(0)


@pytest.mark.parametrize(
    ("body", "incident"),
    [
        ({"detection": "d2", "incident": "d1"}, "d1"),
        ({"detection": "d2"}, "d2"),  # an agent from before incidents
        ({"detection": "d2", "incident": ""}, "d2"),
        ({"detection": "d2", "incident": 7}, "d2"),
        ({"detection": "d" * 300}, "d" * 128),
        ({"incident": None}, ""),
    ],
)
def test_an_event_belongs_to_its_incident_else_to_its_own_detection(
    body: dict[str, object], incident: str
) -> None:
    assert contract.incident_of(body) == incident

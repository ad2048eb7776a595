"""Broker URLs as operators type them."""

from __future__ import annotations

import pytest

from agent.broker_url import BrokerUrl, BrokerUrlError, parse_broker_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt://127.0.0.1:1884", BrokerUrl("mqtt", "127.0.0.1", 1884)),
        ("mqtt://broker.lan", BrokerUrl("mqtt", "broker.lan", 1883)),
        ("mqtts://broker.example.com", BrokerUrl("mqtts", "broker.example.com", 8883)),
        ("MQTTS://[::1]:9000/", BrokerUrl("mqtts", "::1", 9000)),
        ("mqtt://[fe80::1%eth0]", BrokerUrl("mqtt", "fe80::1%eth0", 1883)),
        ("mqtt://mqtt_1.lan.", BrokerUrl("mqtt", "mqtt_1.lan.", 1883)),
        ("mqtt://bröker.example", BrokerUrl("mqtt", "bröker.example", 1883)),
    ],
)
def test_valid_urls(text: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(text) == expected


def test_round_trip_and_tls_flag() -> None:
    assert str(parse_broker_url("mqtts://[::1]")) == "mqtts://[::1]:8883"
    assert parse_broker_url("mqtts://h").tls
    assert not parse_broker_url("mqtt://h").tls


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mqtt://alice:pw@h", "credentials do not belong in the URL"),
        ("mqtt://alice@h", "IOTIDS_MQTT_USERNAME and IOTIDS_MQTT_PASSWORD"),
        ("http://h:1883", "must start with mqtt:// or mqtts://"),
        ("h:1883", "must start with mqtt:// or mqtts://"),
        ("mqtt://", "the host is missing"),
        ("mqtt://h:0", "the port must be 1-65535"),
        ("mqtt://h:70000", "the port must be 1-65535"),
        ("mqtt://h/topic", "only scheme://host:port"),
        ("mqtt://h?x=1", "only scheme://host:port"),
        ("mqtt://[::1", "Invalid IPv6 URL"),  # urlsplit's own ValueError, one line too
        ("mqtt://[zz]:1", "IPv6"),
        # urlsplit drops tabs and newlines: the host would silently become "broker.lan"
        ("mqtt://broker\n.lan", "must not contain spaces or control characters"),
        ("mqtt://bro\tker.lan", "must not contain spaces or control characters"),
        ("mqtt://bro ker.lan", "must not contain spaces or control characters"),
        ('mqtt://a"b;$(id)', "is not a host name or an IP address"),
        ("mqtt://a%2fb", "is not a host name or an IP address"),
        ("mqtt://-a.lan", "is not a host name or an IP address"),
        ("mqtt://a..lan", "is not a host name or an IP address"),
    ],
)
def test_invalid_urls_say_why(text: str, message: str) -> None:
    with pytest.raises(BrokerUrlError, match=message):
        parse_broker_url(text)


def test_a_refused_url_never_echoes_its_password() -> None:
    with pytest.raises(BrokerUrlError) as caught:
        parse_broker_url("ftp://alice:hunter2@h")
    assert "hunter2" not in str(caught.value)

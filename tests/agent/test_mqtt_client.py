"""The one paho client factory: protocol, credentials, TLS and CONNACK reading, without a broker."""

from __future__ import annotations

import ssl

import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt_client import (
    connect_error_text,
    env_credentials,
    is_auth_refused,
    make_client,
    url_tls_context,
)
from agent.tls import ClosingSSLSocket


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [("3.1.1", MQTTProtocolVersion.MQTTv311), ("5", MQTTProtocolVersion.MQTTv5)],
)
def test_make_client_speaks_callback_api_2(protocol: str, expected: MQTTProtocolVersion) -> None:
    client = make_client("c-1", protocol=protocol, username="u", password="p")  # type: ignore[arg-type]
    assert client.protocol == expected
    assert client.callback_api_version == CallbackAPIVersion.VERSION2
    assert client.username == "u"
    assert client.password == "p"


def test_env_credentials_need_a_username() -> None:
    env = {"IOTIDS_MQTT_USERNAME": "ops", "IOTIDS_MQTT_PASSWORD": "s3cret"}
    assert env_credentials(env) == ("ops", "s3cret")
    assert env_credentials({"IOTIDS_MQTT_PASSWORD": "s3cret"}) == (None, None)
    assert env_credentials({}) == (None, None)


def test_bad_credentials_are_told_apart_from_other_refusals() -> None:
    not_authorized = ReasonCode(PacketTypes.CONNACK, identifier=0x87)
    bad_password = ReasonCode(PacketTypes.CONNACK, identifier=0x86)
    busy = ReasonCode(PacketTypes.CONNACK, identifier=0x89)
    accepted = ReasonCode(PacketTypes.CONNACK, identifier=0)
    assert is_auth_refused(not_authorized)
    assert is_auth_refused(bad_password)
    assert not is_auth_refused(busy)
    assert not is_auth_refused(accepted)


def test_url_tls_context_verifies_and_closes_refused_sockets() -> None:
    context = url_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.sslsocket_class is ClosingSSLSocket


def test_connect_errors_read_as_one_short_reason() -> None:
    assert connect_error_text(ConnectionRefusedError(111, "refused")) == "connection refused"
    assert connect_error_text(TimeoutError()) == "timed out"

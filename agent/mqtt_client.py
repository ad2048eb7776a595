"""The one place a paho client is built: callback API 2, protocol, credentials, TLS, CONNACK.

The agent's sink and sensor source, the operator console and the test helpers all take their
clients from :func:`make_client`, so they agree on the callback API (paho 2's ``VERSION2``
signatures), on how credentials are found (systemd credentials win over the environment), on
TLS (verifying, TLS 1.2 or newer, no socket leaked by a refused handshake) and on what a refused
CONNACK means.

``ssl`` and ``agent.tls`` are imported only when TLS is used: a gateway reporting over plain
MQTT never maps OpenSSL (see ``agent.deferred``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV

if TYPE_CHECKING:
    import ssl

    from paho.mqtt.reasoncodes import ReasonCode

    from agent.config import MqttConfig, TlsConfig

ProtocolName = Literal["3.1.1", "5"]

# CONNACK reasons that mean "your credentials are wrong" (3.1.1 codes 4/5 map to 0x86/0x87;
# 0x8C is MQTT 5's "bad authentication method").
AUTH_REFUSED: Final = frozenset({0x86, 0x87, 0x8C})
CREDENTIAL_FILES: Final = ("mqtt-username", "mqtt-password")


def make_client(
    client_id: str,
    *,
    protocol: ProtocolName = "3.1.1",
    clean_session: bool = True,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    will: tuple[str, bytes] | None = None,
    backoff: tuple[float, float] = (1.0, 30.0),
) -> mqtt.Client:
    """A paho 2 client with credentials, TLS, last will and reconnect backoff set; not connected.

    ``clean_session`` applies to MQTT 3.1.1 only (MQTT 5 sets clean start at connect time).
    """
    if protocol == "5":
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
        )
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set_context(tls)
    set_backoff(client, *backoff)
    return client


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The ``[mqtt.tls]`` context, built in one place (``agent.tls``, imported on this call)."""
    from agent.tls import tls_context as build

    return build(tls)


def set_backoff(client: mqtt.Client, low: float, high: float) -> None:
    """paho's capped exponential reconnect delay, in whole seconds (at least 1: no busy loop)."""
    client.reconnect_delay_set(max(1, math.ceil(low)), max(1, math.ceil(high)))


def resolve_credentials(
    config: MqttConfig, environ: Mapping[str, str] | None = None
) -> tuple[str | None, str | None]:
    """Username and password from systemd's credentials dir (wins) or the environment."""
    env = os.environ if environ is None else environ
    username = env.get(config.username_env) or None
    password = env.get(config.password_env) or None
    cred_dir = env.get(config.credentials_dir_env)
    if cred_dir:
        user_file, pass_file = (Path(cred_dir) / name for name in CREDENTIAL_FILES)
        from_file = _credential(user_file), _credential(pass_file)
        username = from_file[0] if from_file[0] is not None else username
        password = from_file[1] if from_file[1] is not None else password
    return username, password


def _credential(path: Path) -> str | None:
    """One systemd credential file's text (None: no such file); ConfigError when unreadable."""
    from agent.config import ConfigError  # late: agent.config imports this module's callers

    try:
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or exc
        raise ConfigError(f"credentials: {path}: {why}") from None


def env_credentials(environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """Username and password of the operator tools (``$IOTIDS_MQTT_USERNAME`` / ``_PASSWORD``).

    A broker URL never carries them: they would show in ``ps`` and shell history.
    """
    env = os.environ if environ is None else environ
    username = env.get(USERNAME_ENV) or None
    return username, (env.get(PASSWORD_ENV) or None) if username is not None else None


def url_tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context for an ``mqtts://`` URL: ``ca_file`` or the system store.

    Raises OSError / ssl.SSLError when the CA file cannot be read.
    """
    import ssl

    from agent.tls import ClosingSSLSocket

    context = ssl.create_default_context(cafile=ca_file)
    # Without this every refused handshake (retried with backoff) leaks a socket.
    context.sslsocket_class = ClosingSSLSocket
    return context


def is_auth_refused(reason: ReasonCode) -> bool:
    """True when a CONNACK refused the credentials (not the client id, not a busy broker)."""
    return reason.is_failure and reason.value in AUTH_REFUSED


def connect_error_text(exc: OSError) -> str:
    """A short, human reason for a failed TCP/TLS connect."""
    if is_ssl_error(exc):
        import ssl  # loaded already: exc is one of its errors

        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({exc.verify_message})"
        return f"TLS handshake failed ({getattr(exc, 'reason', None) or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc)


def is_ssl_error(exc: BaseException | None) -> bool:
    """True for an ``ssl.SSLError``, without importing ``ssl`` for a plain connection.

    With no ``ssl`` in ``sys.modules`` no SSL socket exists, so ``exc`` cannot be one of its
    errors.
    """
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


class FailureLog:
    """One client's connection failures: each said once at ERROR, identical repeats at DEBUG,
    so a broker that stays away (or a TLS handshake that keeps failing) is one line, not one
    per backoff, and never silence."""

    def __init__(self, log: logging.Logger, who: str) -> None:
        self._log = log
        self.who = who  # "mqtt", "sensor source plant": each line's prefix
        self._last = ""

    def say(self, what: str) -> None:
        message = f"{self.who}: {what}"
        if message == self._last:
            self._log.debug("%s", message)
            return
        self._last = message
        self._log.error("%s", message)

    def connected(self) -> bool:
        """Forget the last failure; True when there was one (the caller may say it is back)."""
        failed, self._last = bool(self._last), ""
        return failed

    def connect_failed(self, host: str, port: int, backoff_max: float) -> None:
        """Why the TCP or TLS connection failed: paho's ``on_connect_fail`` calls this inside
        its except block, where the exception is still at hand."""
        exc = sys.exc_info()[1]
        where = f"{host}:{port}"
        if is_ssl_error(exc):
            what = f"TLS handshake with {where} failed: {exc}"
            if any(word in str(exc) for word in ("not yet valid", "expired")):
                # a Pi has no real-time clock: before NTP its date may be months behind
                what += f" (this gateway's clock says {time.strftime('%Y-%m-%d')})"
        else:
            what = f"cannot connect to {where}: {exc}"
        self.say(f"{what}; retrying with backoff up to {backoff_max:g} s")

"""The fleet monitor's MQTT session: connect, wait for the CONNACK, feed the fleet.

paho's network thread only queues what arrives (a message, a CONNACK, a disconnect); the
caller's thread applies it to the :class:`~console.monitor_state.Fleet` and the view, so the
state is never touched from two threads.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV, BrokerUrl
from agent.contract import fleet_filters
from console.monitor_state import Fleet
from console.monitor_view import View

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0


class MonitorError(Exception):
    """Why the monitor cannot run: printed as ``iotids monitor: <message>``, exit 2."""


@dataclass(frozen=True)
class Incoming:
    """What paho's thread hands to the main loop: a message, a CONNACK or a disconnect."""

    kind: Literal["message", "connack", "disconnect"]
    topic: str = ""
    payload: bytes = b""
    retained: bool = False
    failure: str = ""


def _tls_context(url: BrokerUrl, ca_file: str | None) -> ssl.SSLContext | None:
    """A verifying TLS context for ``mqtts://`` (the CA file, else the system store)."""
    from agent.mqtt_client import url_tls_context

    if not url.tls:
        if ca_file:
            raise MonitorError(f"--ca-file needs an mqtts:// broker URL, got {url}")
        return None
    try:
        return url_tls_context(ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MonitorError(f"--ca-file {ca_file}: {getattr(exc, 'strerror', None) or exc}") from exc


def subscriptions(fleet: Fleet, share: str | None = None) -> list[str]:
    """The topic filters of one monitor: with ``share``, the streams split across a group.

    Events and stats go through the MQTT 5 shared subscription ``$share/<share>/...``, so each
    message reaches one member of the group. Status and model stay plain subscriptions: they
    are retained, and a broker never delivers retained messages to a shared subscription, so
    every member still learns which gateways exist and what they run.
    """
    if share is None:
        return fleet.subscriptions()
    return [
        *fleet_filters(fleet.prefix, ("status", "model")),
        *fleet_filters(fleet.prefix, ("events", "stats"), share=share),
    ]


def connect(
    url: BrokerUrl,
    fleet: Fleet,
    inbox: queue.Queue[Incoming],
    ca_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    share: str | None = None,
) -> mqtt.Client:
    """A paho client connected to ``url`` (CONNACK accepted) and feeding ``inbox``.

    ``share`` needs MQTT 5 (shared subscriptions), so it selects that protocol.
    """
    from agent.mqtt_client import connect_error_text, env_credentials, make_client

    username, password = env_credentials(environ)
    client = make_client(
        f"iotids-monitor-{uuid.uuid4().hex[:10]}",
        protocol="5" if share else "3.1.1",
        username=username,
        password=password,
        tls=_tls_context(url, ca_file),
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    _wire(client, subscriptions(fleet, share), fleet.prefix, inbox)
    try:
        client.connect(url.host, url.port, keepalive=30)
    except OSError as exc:
        raise MonitorError(f"cannot reach broker {url}: {connect_error_text(exc)}") from exc
    client.loop_start()
    try:
        _await_connack(url, inbox, username is not None)
    except MonitorError:
        client.loop_stop()
        client.disconnect()
        raise
    return client


def _wire(
    client: mqtt.Client, topics: list[str], prefix: str, inbox: queue.Queue[Incoming]
) -> None:
    """paho callbacks: (re)subscribe on every CONNACK, queue everything for the main loop."""

    def on_connect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            inbox.put(Incoming("connack", failure=str(reason)))
            return
        inbox.put(Incoming("connack"))
        client.subscribe([(topic, 1) for topic in topics])

    def on_disconnect(
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        inbox.put(Incoming("disconnect", failure=str(reason)))

    def on_subscribe(
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [t for t, r in zip(topics, reasons, strict=False) if r.is_failure]
        if refused:
            logger.warning("monitor: the broker refused the subscription to %s", refused)
        logger.debug("monitor: subscribed to %d topics under %s/", len(topics), prefix)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        inbox.put(Incoming("message", message.topic, bytes(message.payload), message.retain))

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_subscribe = on_subscribe
    client.on_message = on_message


def _await_connack(url: BrokerUrl, inbox: queue.Queue[Incoming], with_user: bool) -> None:
    """Wait for the broker's CONNACK; a refusal or silence is a MonitorError."""
    try:
        first = inbox.get(timeout=CONNECT_TIMEOUT_S)
    except queue.Empty:
        message = f"broker {url} did not answer CONNECT in {CONNECT_TIMEOUT_S:.0f} s"
        raise MonitorError(message) from None
    if first.kind == "connack" and not first.failure:
        return
    reason = first.failure or "connection closed"
    hint = "" if with_user else f" (no credentials given: set {USERNAME_ENV} / {PASSWORD_ENV})"
    raise MonitorError(f"broker {url} refused the connection: {reason}{hint}")


def follow(
    url: BrokerUrl,
    fleet: Fleet,
    *,
    view: View | None = None,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    ca_file: str | None = None,
    share: str | None = None,
) -> None:
    """Connect and keep ``fleet`` (and ``view``) current until ``timeout`` s pass or ``stop``.

    The embeddable monitor: ``iotids demo`` runs it while its agent replays. Raises
    MonitorError when the broker cannot be reached or refuses the connection; the caller
    closes ``view``. ``share`` joins an MQTT 5 shared-subscription group (see
    :func:`subscriptions`).
    """
    inbox: queue.Queue[Incoming] = queue.Queue()
    client = connect(url, fleet, inbox, ca_file, share=share)
    try:
        _watch(url, fleet, inbox, view, timeout, stop or threading.Event())
    finally:
        client.disconnect()
        client.loop_stop()


def _watch(
    url: BrokerUrl,
    fleet: Fleet,
    inbox: queue.Queue[Incoming],
    view: View | None,
    timeout: float | None,
    stop: threading.Event,
) -> None:
    """Apply messages until ``timeout`` seconds pass (forever when None) or ``stop`` is set."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not stop.is_set() and (deadline is None or (left := deadline - time.monotonic()) > 0):
        wait = 0.25 if deadline is None else min(0.25, left)
        try:
            item = inbox.get(timeout=wait)
        except queue.Empty:
            item = None
        now = time.time()
        lines = [] if item is None else _handle(url, fleet, item, now)
        if view is not None:
            if lines:
                view.changed(lines, fleet, now)
            view.tick(fleet, now)


def _handle(url: BrokerUrl, fleet: Fleet, item: Incoming, now: float) -> list[str]:
    """Lines describing what ``item`` changed."""
    if item.kind == "message":
        return fleet.apply(item.topic, item.payload, now, item.retained)
    if item.kind == "disconnect":
        return [f"lost broker {url} ({item.failure}); reconnecting"]
    if item.failure:
        return [f"broker {url} refused the reconnect: {item.failure}"]
    return [f"reconnected to {url}"]

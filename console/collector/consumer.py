"""The collector's MQTT side: shared subscriptions in, one store transaction per message.

Events and stats arrive through MQTT 5 shared subscriptions (``$share/<group>/<p>/+/events``,
``.../stats``): several collectors in one group split a fleet's messages between them, each
message going to one of them. Statuses (retained, tiny) come through a plain subscription, so
every collector sees every gateway's ``online`` / ``offline`` at once; storing one is an upsert,
so several collectors writing it do no harm.

The session is persistent (clean start off, session expiry ``SESSION_EXPIRY_S``) and every
message is acknowledged only after its transaction committed (paho's manual ack): a message
the database refused is not acknowledged, the collector reconnects after a pause and the
broker delivers it again. A copy that arrives twice (QoS 1 is at-least-once; a reconnect
replays the unacknowledged) is ignored by the store's key on event id, and dropped before the
database by a bounded in-memory window of recent ids.
"""

from __future__ import annotations

import hashlib
import logging
import math
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.contract import Deduplicator, fleet_filters
from agent.mqtt_client import make_client
from console.collector.metrics import FleetMetrics
from console.collector.rows import CONSUMED, Bad, Parser
from console.collector.store import EventRow, StatusRow, Store, StoreError

logger = logging.getLogger(__name__)

SESSION_EXPIRY_S = 3600
RETRY_AFTER_STORE_ERROR_S = 5.0
FLAP_LOSSES = 5  # connections lost within FLAP_AFTER_CONNECT_S of being made, in a minute
FLAP_AFTER_CONNECT_S = 10.0
FLAP_SAY_EVERY_S = 600.0


@dataclass(frozen=True)
class CollectorOptions:
    """Where to connect and how to subscribe."""

    host: str
    port: int
    prefix: str = "iotids"
    # "": plain subscriptions, one collector takes the whole fleet. A group splits the fleet
    # between collectors, but Mosquitto 2.0 does not keep a session's shared subscriptions
    # over a broker restart: what comes before the collector is back is not kept for it.
    share_group: str = ""
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive: int = 30

    def subscriptions(self) -> list[tuple[str, int]]:
        """Events and stats (shared in a group), status plain."""
        shared = fleet_filters(self.prefix, ("events", "stats"), share=self.share_group or None)
        return [(topic, 1) for topic in [*shared, *fleet_filters(self.prefix, ("status",))]]


def default_client_id(options: CollectorOptions, host: str | None = None) -> str:
    """The same id on every start of the same collector: its session is durable.

    The session holds this collector's share of the group's messages while it is away (up to
    ``SESSION_EXPIRY_S``); a new random id on each start left them there, never delivered.
    The host, share group and prefix tell collectors apart; two on one host in one group need
    ``--client-id`` each (one id holds one session; see ``_note_loss``).
    """
    name = (host if host is not None else socket.gethostname()) or "host"
    digest = hashlib.sha256(f"{options.share_group}\0{options.prefix}".encode()).hexdigest()
    return f"iotids-collector-{name[:40]}-{digest[:8]}"


class Collector:
    """Consumes a fleet into a :class:`Store` and a :class:`FleetMetrics`."""

    def __init__(
        self,
        options: CollectorOptions,
        store: Store,
        metrics: FleetMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.store = store
        self.metrics = metrics
        self.parser = Parser(options.prefix)
        self._clock = clock
        self._subscribed = threading.Event()
        self._store_failed = threading.Event()
        self._store_down = False  # said once until a message is stored again
        self.stored = 0  # messages this instance committed (not duplicates)
        self._client_id = options.client_id or default_client_id(options)
        self._client: mqtt.Client | None = None
        self._connected_at = 0.0  # monotonic time of the last CONNACK
        self._early_losses: deque[float] = deque(maxlen=FLAP_LOSSES)
        self._flap_said = -math.inf
        self._quiet_connect = False  # a reconnect of our own for redelivery: not news
        self._unreachable = False  # said the broker cannot be reached, until it can

    def _new_client(self) -> mqtt.Client:
        """A fresh paho client per connection: paho leaks its wake-up socket pair when one
        client's network loop is started a second time."""
        client = make_client(
            self._client_id,
            protocol="5",
            username=self.options.username,
            password=self.options.password,
            tls=self.options.tls,
        )
        client.manual_ack_set(True)  # acknowledged only once stored
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        return client

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a persistent session); returns at once."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._subscribed.clear()
        self._client = self._new_client()
        self._client.connect_async(
            self.options.host,
            self.options.port,
            self.options.keepalive,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker acknowledged the subscriptions."""
        return self._subscribed.wait(timeout)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: after a store error, reconnect so the broker redelivers."""
        self.start()
        while not stop.wait(0.5):
            if self._store_failed.is_set() and not stop.wait(RETRY_AFTER_STORE_ERROR_S):
                # said once with the failure; a retry every few seconds is not news
                logger.debug("collector: reconnecting so the broker redelivers what failed")
                self._quiet_connect = True
                self._store_failed.clear()
                self.stop()
                self.start()
        self.stop()

    def stop(self) -> None:
        """Disconnect (the session stays on the broker) and stop paho's thread."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.error("collector: the broker refused the connection: %s", reason)
            return
        say = logger.debug if self._quiet_connect else logger.info
        self._quiet_connect = False
        if self._unreachable:
            say = logger.warning
            self._unreachable = False
        say("collector: connected (session present: %s)", flags.session_present)
        self._connected_at = time.monotonic()
        client.subscribe(self.options.subscriptions())

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            logger.error("collector: subscriptions refused: %s", ", ".join(refused))
            return
        self._subscribed.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        """The broker cannot be reached: one line until a connection is made (paho retries)."""
        if not self._unreachable:
            self._unreachable = True
            logger.warning(
                "collector: cannot reach the broker at %s:%d; retrying",
                self.options.host,
                self.options.port,
            )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            logger.warning("collector: disconnected (%s); reconnecting", reason)
            self._note_loss(time.monotonic())

    def _note_loss(self, now: float) -> None:
        """Say so when connections keep dying right after they are made.

        Two collectors with one client id take the session from each other at every reconnect
        (Mosquitto 2.0 closes the older connection without a reason code); nothing is lost, as
        each acknowledges only what it stored, but the operator has to give each its own id.
        """
        if now - self._connected_at > FLAP_AFTER_CONNECT_S:
            return
        self._early_losses.append(now)
        recent = len(self._early_losses) == FLAP_LOSSES and now - self._early_losses[0] < 60
        if recent and now - self._flap_said > FLAP_SAY_EVERY_S:
            self._flap_said = now
            logger.error(
                "collector: the connection was lost %d times in a minute, each right after it "
                "was made: is another collector using client id %s? Give each its own "
                "--client-id",
                FLAP_LOSSES,
                self._client_id,
            )

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._store_failed.is_set():
            return  # not acknowledged: the broker redelivers it after the reconnect
        try:
            done = self.handle(message.topic, bytes(message.payload), message.retain)
        except Exception as exc:  # paho's network thread must outlive any one message
            # A message that breaks its handler would break it again on every redelivery:
            # skipped and acknowledged, counted and said, so the rest of the fleet goes on.
            logger.error(
                "collector: skipped a message on %s that failed: %s: %s",
                message.topic[:200],
                type(exc).__name__,
                str(exc)[:200],
            )
            kind = message.topic.rsplit("/", 1)[-1]
            self._skip(kind if kind in CONSUMED else "other", "failed to handle", message.topic)
            done = True
        if done:
            client.ack(message.mid, message.qos)

    # -- one message -------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, retained: bool = False) -> bool:
        """Store one message; False only when the database failed (the message stays unacked)."""
        now = self._clock()
        parsed = self.parser.parse(topic, payload, now)
        if isinstance(parsed, Bad):
            self._skip(parsed.kind, parsed.reason, topic)
            return True
        row = parsed.row
        kind = "events" if isinstance(row, EventRow) else "stats"
        kind = "status" if isinstance(row, StatusRow) else kind
        if isinstance(row, EventRow) and not self.parser.first_time(row.id):
            self.metrics.message(kind, "duplicate")
            return True
        try:
            stored = self.store.add(row)
        except StoreError as exc:
            if not exc.retryable:  # this message can never be stored: skip it, keep going
                self._skip(kind, "refused by the database", topic)
                return True
            self.metrics.message(kind, "store_error")
            self.metrics.store_up(False)
            # The redelivery of this message must not look like a duplicate of itself.
            self.parser.seen = Deduplicator()
            # one line when the database fails, not one per retry while it stays down
            say = logger.debug if self._store_down else logger.error
            say(
                "collector: could not store a message on %s: %s (retried every %g s)",
                kind,
                exc,
                RETRY_AFTER_STORE_ERROR_S,
            )
            self._store_down = True
            self._store_failed.set()
            return False
        if self._store_down:
            self._store_down = False
            logger.warning("collector: the database takes messages again")
        self.metrics.store_up(True)
        self.metrics.message(kind, "stored" if stored else "duplicate")
        if stored:
            self.stored += 1
            if isinstance(row, EventRow):
                self.metrics.event(row.type, row.category)
                if row.opens_incident:
                    self.metrics.incident(row.category)
        online = row.status == "online" if isinstance(row, StatusRow) else None
        self.metrics.heard(row.device, row.received, online=online, gauges=parsed.gauges)
        return True

    def _skip(self, kind: str, reason: str, topic: str) -> None:
        self.metrics.message(kind, "bad")
        self.metrics.bad(reason)
        logger.debug("collector: skipped a message on %s: %s", topic[:200], reason)

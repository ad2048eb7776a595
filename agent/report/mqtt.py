"""The MQTT sink: the gateway's side of the contract in ``agent.contract``.

Topics, schema names and the payload envelope (``schema``, ``device``, ``time``) are defined in
``agent.contract``; this module adds what the sink itself promises:

Event (``iotids.event/1``), one message per lifecycle step of a detection:
``id`` (str, unique per message: a uuid4 hex unless the caller gave one — consumers drop
duplicates by it, since QoS 1 is at-least-once and the outbox replays after a crash),
``type`` (``"new"`` | ``"update"`` | ``"end"``), ``detection`` (str, the id shared by the
``new``/``update``/``end`` of one detection), ``incident`` (str, the detection id it recurs,
else its own) and ``recurrence`` (int, 0 unless it recurs one: ``agent.recurrence``),
``active_events`` (int, detections active on this
device after this message, as in the retained state), and from the
decider: ``label``, ``category``, ``score``, ``peak_score``, ``model``, ``start`` / ``end``
(Unix s), ``evidence`` (``top_sources``, ``top_ports``, ``packets``, ``bytes``). An ``end``
the agent made at start for a detection a crash left open carries ``end_reason``
``"agent-restart"`` (``agent.report.detections``).

Stats (``iotids.stats/1``): the app's figures (``packets_per_s``, ``drops``, ``malformed``,
``sampling_ratio``, ``latency_ms_p50`` / ``latency_ms_p99``, ``queue_depth``, ``cpu_percent``,
``rss_bytes``, ``temperature_c``, ``uptime_s``, ``active_model``) plus, from the sink,
``outbox``: ``{"depth": int, "bytes": int, "dropped": {kind: int}}`` — messages waiting for the
broker and those the outbox caps dropped since start.

Model (``iotids.model/1``, retained): ``bundle_id``, ``feature_set``, ``schema_id``, ``metrics``
and ``last_update`` (``{"result": "activated" | "refused", "reason": str, "time": float}``).

State (``iotids.state/1``, retained, after every event and at start): ``active_events``,
``detections`` (a summary of each open detection) and ``last_attack`` (a summary of the last
event, or null); what Home Assistant's entities read.

Status: the plain strings ``online`` / ``offline`` (retained), matching the HA availability topic.

Delivery: ``publish_*`` only write to the durable outbox and return; a publisher thread drains
it in order while connected, at most ``replay_rate`` messages/s once the burst allowance is spent,
and deletes a row only when the broker acknowledges it (PUBACK/PUBCOMP; QoS 0 rows once handed
to paho).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.contract import (
    MODEL_SCHEMA,
    OFFLINE,
    ONLINE,
    STATE_SCHEMA,
    STATS_SCHEMA,
    Topics,
    encode,
    stamp,
)
from agent.mqtt_client import (
    FailureLog,
    is_auth_refused,
    make_client,
    resolve_credentials,
    set_backoff,
    tls_context,
)
from agent.report import homeassistant
from agent.report.detections import Detections, event_payload
from agent.report.outbox import KINDS, Kind, Outbox, Row, Track

logger = logging.getLogger(__name__)

# Rows handed to paho and not yet acknowledged; matches paho's default max_inflight_messages so
# paho never holds a queue of its own: the outbox stays the one source of truth.
_WINDOW: Final = 20
_EVENT_KINDS: Final[Mapping[str, Kind]] = {
    "new": "event_new",
    "update": "event_update",
    "end": "event_end",
}
# Kept in memory, in order, while the disk refuses them (full): everything but stats, whose
# next one says the same. About 10 MB at most; past that the oldest is lost, said in a line.
_HELD_KINDS: Final = frozenset(KINDS) - {"stats"}
_HELD_MAX: Final = 10_000


@dataclass(frozen=True)
class _Held:
    """A message the outbox could not store yet."""

    kind: Kind
    topic: str
    payload: bytes
    qos: int
    retain: bool
    track: Track | None


def _log_callback_failures(client: mqtt.Client, userdata: object, level: int, text: str) -> None:
    """paho's on_log: surface the exceptions it suppressed in our callbacks, nothing else."""
    if text.startswith("Caught exception in"):
        logger.error("mqtt: %s", text)


class _RateLimiter:
    """A token bucket: bursts up to ``rate`` messages, then ``rate`` messages per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Take a token for the next message; seconds to wait before sending it (0: send now)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0  # may go negative: the debt is the wait
        return max(0.0, -self.tokens / self.rate)


class MqttSink:
    """Reports to an MQTT broker through a durable outbox; never blocks the caller on the network.

    The outbox belongs to the caller, who closes it after :meth:`close`. ``on_model_set`` runs on
    paho's network thread: it must only hand the bytes over (e.g. put them on a queue).
    """

    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        outbox: Outbox,
        *,
        on_model_set: Callable[[bytes], None] | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.outbox = outbox
        self.topics = Topics.for_device(config.topic_prefix, device_id)
        self._on_model_set = on_model_set
        self._username, password = resolve_credentials(config)
        self._client_id = config.resolved_client_id(device_id)
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acks: queue.SimpleQueue[tuple[int, ReasonCode]] = queue.SimpleQueue()
        self._acked: list[int] = []  # acknowledged rows not yet deleted from the outbox
        self._held: deque[_Held] = deque()  # what the disk refused, oldest first
        self._held_lock = threading.Lock()
        self._holding = False
        self._detections = Detections(outbox.open_detections(), outbox.last_event())
        self._events_lock = threading.Lock()  # an event and the state after it stay in order
        self._failure_log = FailureLog(logger, "mqtt")
        self._in_auth_backoff = False
        self._online_mid = -1
        self._failures = 0
        self._thread: threading.Thread | None = None
        ha = config.homeassistant
        self._birth_topic = homeassistant.birth_topic(ha.discovery_prefix) if ha.enabled else ""
        self._client = self._make_client(password)

    # -- Sink -------------------------------------------------------------------------------

    def start(self) -> None:
        """Close what a crash left open, then connect in the background and drain the outbox."""
        for end in self._detections.restart_ends():
            logger.warning(
                "mqtt: detection %s (%s) was open when the agent last stopped; ending it (%s)",
                end.get("detection"),
                end.get("label"),
                end.get("end_reason"),
            )
            self.publish_event(end)
        self._queue_state()  # the retained state tells the truth from this start on
        self._client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self._client.loop_start()
        self._thread = threading.Thread(
            target=self._drain_loop, name=f"iotids-mqtt-outbox-{self.device_id}", daemon=True
        )
        self._thread.start()

    def publish_event(self, event: Mapping[str, object]) -> None:
        """Queue a detection event (QoS 1) and the state after it durably; never raises."""
        with self._events_lock:
            payload, key, opened = event_payload(event, self.device_id, self._detections)
            event_type = str(payload.get("type", ""))
            kind = _EVENT_KINDS.get(event_type)
            if kind is None:
                # Unknown lifecycle step: keep it with the never-dropped-early detections.
                logger.warning("mqtt: event %s has unknown type %r", payload["id"], event_type)
                kind = "event_new"
            track = None if opened is None else Track(key, opened)
            self._queue(kind, self.topics.events, payload, 1, retain=False, track=track)
            self._queue_state()

    def publish_stats(self, stats: Mapping[str, object]) -> None:
        """Queue a stats payload (``stats_qos``) with the outbox depth and drops; never raises."""
        payload = self._stamp(stats, STATS_SCHEMA)
        payload["outbox"] = {
            "depth": self.outbox.depth(),
            "bytes": self.outbox.size_bytes(),
            "dropped": self.outbox.dropped(),
        }
        self._queue("stats", self.topics.stats, payload, self.config.stats_qos, retain=False)

    def publish_model(self, state: Mapping[str, object]) -> None:
        """Queue the active model state (QoS 1, retained); never raises."""
        self._queue("model", self.topics.model, self._stamp(state, MODEL_SCHEMA), 1, retain=True)

    def close(self) -> None:
        """Deliver what is queued for up to ``drain_on_close`` s, publish ``offline``, disconnect.

        Rows still queued after that stay in the outbox and go out after the next start: the
        final ``end`` events a shutdown produces should not wait for a restart when the broker
        is there to take them.
        """
        deadline = time.monotonic() + self.config.drain_on_close
        while self.outbox.depth() > 0 and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._held_lock:
            self._store_held()
            if self._held:
                logger.error("mqtt: %d messages the disk refused are lost at exit", len(self._held))
        if self._connected.is_set():
            info = self._client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError) as exc:
                logger.warning("mqtt: could not publish offline on shutdown: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()

    # -- observability -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True from the broker's ack of ``online`` until the next disconnect."""
        return self._connected.is_set()

    @property
    def failures(self) -> int:
        """Payloads that could not be queued (encoding or disk errors) since start."""
        return self._failures

    # -- building ----------------------------------------------------------------------------

    def _make_client(self, password: str | None) -> mqtt.Client:
        """A paho client with will, credentials, TLS, backoff and callbacks set."""
        client = make_client(
            self._client_id,
            protocol=self.config.protocol,
            username=self._username,
            password=password,
            tls=tls_context(self.config.tls) if self.config.tls is not None else None,
            will=(self.topics.status, OFFLINE),
            backoff=(self.config.backoff_min, self.config.backoff_max),
        )
        # Room for our window plus `online` and the discovery configs, so paho never has to
        # queue a row behind its in-flight limit.
        client.max_inflight_messages_set(_WINDOW + 8)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # A bug in one of our callbacks must not end paho's network thread, and with it all
        # delivery: paho then reports the exception through on_log and carries on. Only that
        # report is forwarded; paho's other chatter would repeat what we already log once.
        client.suppress_exceptions = True
        client.on_log = _log_callback_failures
        return client

    def _stamp(self, data: Mapping[str, object], schema: str) -> dict[str, object]:
        """A copy of ``data`` with the schema, device and time keys the contract promises."""
        return stamp(data, schema, self.device_id, time.time())

    def _queue_state(self) -> None:
        """Queue the retained state (it replaces a state still waiting in the outbox)."""
        state = self._stamp(self._detections.state(), STATE_SCHEMA)
        self._queue("state", self.topics.state, state, 1, retain=True)

    def _queue(
        self,
        kind: Kind,
        topic: str,
        payload: Mapping[str, object],
        qos: int,
        *,
        retain: bool,
        track: Track | None = None,
    ) -> None:
        """Encode and store one message, then wake the publisher; errors are logged, not raised.

        A message the disk refuses (full) waits in memory with those after it, in order, and
        is stored as soon as the disk takes it (the publisher retries every second)."""
        try:
            data = encode(payload)
        except (TypeError, ValueError) as exc:
            # A sink never takes the app down: count it, say it, carry on.
            self._failures += 1
            logger.error("mqtt: could not encode a %s for %s: %s", kind, topic, exc)
            return
        if kind not in _HELD_KINDS:
            try:
                self.outbox.put(kind, topic, data, qos, retain, track=track)
            except (sqlite3.Error, OSError) as exc:
                self._failures += 1
                logger.error("mqtt: could not queue a %s for %s: %s", kind, topic, exc)
                return
        else:
            with self._held_lock:
                self._held.append(_Held(kind, topic, data, qos, retain, track))
                self._store_held()
        self._wake.set()

    def _store_held(self) -> None:
        """Store the held messages in order until the disk refuses one (the caller holds the
        held lock); past ``_HELD_MAX`` the oldest is lost."""
        while self._held:
            item = self._held[0]
            try:
                self.outbox.put(
                    item.kind, item.topic, item.payload, item.qos, item.retain, track=item.track
                )
            except (sqlite3.Error, OSError) as exc:
                if not self._holding:
                    logger.error(
                        "mqtt: could not queue a %s (%s); holding messages in memory until the "
                        "disk takes them",
                        item.kind,
                        exc,
                    )
                self._holding = True
                while len(self._held) > _HELD_MAX:
                    lost = self._held.popleft()
                    self._failures += 1
                    logger.error("mqtt: %d messages held; lost the oldest %s", _HELD_MAX, lost.kind)
                return
            self._held.popleft()
        if self._holding:
            logger.warning("mqtt: the held messages are queued")
            self._holding = False

    # -- the publisher thread ----------------------------------------------------------------

    def _drain_loop(self) -> None:
        """Hand outbox rows to paho in order while connected; delete them when acknowledged."""
        inflight: dict[int, int] = {}  # paho mid -> outbox seq
        last = 0  # highest seq handed to paho by this process
        limiter = _RateLimiter(self.config.replay_rate)
        trouble = ""  # the outbox's error, said once (a full disk fails every second)
        while not self._stop.is_set():
            try:
                last, refused = self._drain_once(inflight, last, limiter)
                if refused is not None:
                    raise refused
            except (sqlite3.Error, OSError) as exc:
                if str(exc) != trouble:
                    logger.error("mqtt: the outbox cannot be used (%s); retrying every second", exc)
                trouble = str(exc)
                self._stop.wait(1.0)
                continue
            except Exception:
                logger.exception("mqtt: outbox publisher failed; retrying")
                self._stop.wait(1.0)
                continue
            if trouble:
                logger.warning("mqtt: the outbox is usable again")
                trouble = ""
        with suppress(sqlite3.Error, OSError):
            self._settle_acks(inflight)

    def _drain_once(
        self, inflight: dict[int, int], last: int, limiter: _RateLimiter
    ) -> tuple[int, Exception | None]:
        """Store what the disk refused before, settle the acks, then publish what the window
        allows (or wait); the new ``last``, and the error deleting acknowledged rows raised (they
        stay, and what is stored still goes out)."""
        if self._held:
            with self._held_lock:
                self._store_held()
        refused: Exception | None = None
        try:
            self._settle_acks(inflight)
        except (sqlite3.Error, OSError) as exc:
            refused = exc
        rows: list[Row] = []
        if self._connected.is_set() and len(inflight) < _WINDOW:
            rows = self.outbox.peek(_WINDOW - len(inflight), after=last)
        if not rows:
            if refused is None:
                self._wait()
            return last, refused
        for row in rows:
            pause = limiter.delay()
            if pause and self._stop.wait(pause):
                break
            info = self._client.publish(row.topic, row.payload, row.qos, row.retain)
            if row.qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break  # not connected any more: QoS 0 was not kept, retry the row later
            if row.qos > 0 and info.rc not in (
                MQTTErrorCode.MQTT_ERR_SUCCESS,
                MQTTErrorCode.MQTT_ERR_NO_CONN,  # paho keeps QoS>0 and sends on reconnect
            ):
                logger.warning("mqtt: paho refused row %d: %s", row.seq, info.rc)
                break
            last = row.seq
            if row.qos == 0:
                self.outbox.ack(row.seq)
            else:
                inflight[info.mid] = row.seq
        return last, refused

    def _wait(self) -> None:
        """Sleep until something changes (a put, an ack, a connect) or a second passes."""
        self._wake.wait(1.0)
        self._wake.clear()

    def _settle_acks(self, inflight: dict[int, int]) -> None:
        """Delete the rows whose PUBACK/PUBCOMP arrived, in one transaction."""
        done: list[int] = []
        while True:
            try:
                mid, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            seq = inflight.pop(mid, None)
            if seq is None:
                continue
            if reason.is_failure:
                # A broker that refuses a message (MQTT 5 reason) would refuse it forever.
                logger.warning("mqtt: broker refused row %d (%s); dropping it", seq, reason)
            done.append(seq)
        self._acked.extend(done)
        if self._acked:  # kept until they are deleted: a full disk fails the delete
            self.outbox.ack_many(self._acked)
            self._acked.clear()

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Announce ``online`` only on a successful CONNACK; back off long on bad credentials."""
        if reason.is_failure:
            self._refused(client, reason)
            return
        if self._in_auth_backoff:
            set_backoff(client, self.config.backoff_min, self.config.backoff_max)
            self._in_auth_backoff = False
        self._failure_log.connected()
        logger.info(
            "mqtt: connected to %s:%d as %r", self.config.host, self.config.port, self._client_id
        )
        # Rows flow again only once `online` is acknowledged: paho re-sends the messages that
        # were in flight before the drop right after this callback, so waiting for this PUBACK
        # keeps new rows behind them and the topic in order.
        self._online_mid = client.publish(self.topics.status, ONLINE, qos=1, retain=True).mid
        client.subscribe(self.topics.model_set, qos=1)
        if self.config.homeassistant.enabled:
            client.subscribe(self._birth_topic, qos=1)
            self._announce(client)

    def _refused(self, client: mqtt.Client, reason: ReasonCode) -> None:
        """Log a refused CONNACK once and pick the backoff it deserves."""
        if is_auth_refused(reason):
            backoff = self.config.auth_backoff
            set_backoff(client, backoff, backoff)
            self._in_auth_backoff = True
            self._failure_log.say(
                f"broker refused the credentials for user {self._username!r} ({reason}); "
                f"retrying in {backoff:g} s"
            )
        else:
            self._failure_log.say(
                f"broker {self.config.host}:{self.config.port} refused the connection "
                f"({reason}); retrying with backoff up to {self.config.backoff_max:g} s"
            )

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._failure_log.connect_failed(
            self.config.host, self.config.port, self.config.backoff_max
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Stop handing rows to paho; paho keeps in-flight QoS 1 messages for the reconnect."""
        if self._connected.is_set():
            self._connected.clear()
            if not self._stop.is_set():
                logger.warning(
                    "mqtt: lost the connection to %s:%d (%s); reconnecting with backoff up to %g s",
                    self.config.host,
                    self.config.port,
                    reason,
                    self.config.backoff_max,
                )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        """Hand the ack to the publisher thread (paho holds its own locks here: do no I/O)."""
        if mid == self._online_mid:
            self._connected.set()
        else:
            self._acks.put((mid, reason))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        """Route ``model/set`` bundles to the app and re-announce when Home Assistant restarts."""
        try:
            if message.topic == self.topics.model_set:
                logger.info(
                    "mqtt: received a bundle of %d bytes on model/set", len(message.payload)
                )
                if self._on_model_set is not None:
                    self._on_model_set(bytes(message.payload))
            elif message.topic == self._birth_topic and message.payload == ONLINE:
                logger.info("mqtt: Home Assistant is online; re-announcing discovery")
                self._announce(client)
        except Exception:
            logger.exception("mqtt: handling a message on %s failed", message.topic)

    def _announce(self, client: mqtt.Client) -> None:
        """Publish the retained Home Assistant discovery configs."""
        ha = self.config.homeassistant
        for topic, payload in homeassistant.discovery_messages(
            self.device_id, self.config.topic_prefix, ha.discovery_prefix
        ):
            client.publish(topic, payload, qos=1, retain=True)

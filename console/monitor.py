"""``iotids monitor --broker URL``: a live terminal view of a fleet of gateways (issue 9).

It subscribes to ``<prefix>/+/status``, ``/events``, ``/stats`` and ``/model`` (the contract in
``agent/report/mqtt.py``) and keeps, per gateway: online/offline, when it was last heard, the
active detections (a ``new``/``update`` opens or refreshes one by its ``detection`` id, an
``end`` closes it; a message whose ``id`` was already seen is dropped, since QoS 1 is
at-least-once and brokers may replay retained messages), the last N detections, packets/s,
inference latency p50/p99 and the active model.

On a terminal the view redraws in place with plain ANSI escapes (no curses); otherwise it prints
one line per change, which is what logs and tests see. ``--once --timeout S`` collects for S
seconds, prints one snapshot (``--json`` for machines) and exits 0. A broker that cannot be
reached or refuses the connection is one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol, TextIO

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV, BrokerUrl, BrokerUrlError, parse_broker_url
from agent.fleet import DEFAULT_PREFIX, Fleet, describe, fmt
from agent.tls import ClosingSSLSocket

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
ACTIVITY_LINES: Final = 8
EXIT_OK: Final = 0
EXIT_ERROR: Final = 2

_GREEN, _RED, _YELLOW, _BOLD, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
_CLEAR: Final = "\x1b[H\x1b[2J"
_ENTER_SCREEN: Final = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE_SCREEN: Final = "\x1b[?25h\x1b[?1049l"


class MonitorError(Exception):
    """Why the monitor cannot run: printed as ``monitor: <message>``, exit 2."""


# --- rendering ------------------------------------------------------------------------------


def _clock(stamp: float | None) -> str:
    """HH:MM:SS UTC of a Unix time, ``-`` when unknown."""
    return "-" if stamp is None else time.strftime("%H:%M:%S", time.gmtime(stamp))


def _ago(stamp: float | None, now: float) -> str:
    """How long ago, compactly: ``4s``, ``3m``, ``2h``."""
    if stamp is None:
        return "-"
    seconds = max(0.0, now - stamp)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _paint(text: str, colour: str, enabled: bool) -> str:
    return f"{colour}{text}{_RESET}" if enabled else text


def render(fleet: Fleet, now: float, header: str, colour: bool = False) -> str:
    """The whole view as text: gateways table, active events, recent detections."""
    online = sum(g.status == "online" for g in fleet.gateways.values())
    lines = [
        _paint(f"{header}  {len(fleet.gateways)} gateways, {online} online", _BOLD, colour),
        "",
        f"{'GATEWAY':<20} {'STATUS':<8} {'SEEN':>5} {'PKT/S':>9} {'P50 MS':>7} {'P99 MS':>7}"
        f" {'ACTIVE':>6}  MODEL",
    ]
    for name in sorted(fleet.gateways):
        gateway = fleet.gateways[name]
        status = f"{gateway.status:<8}"
        if gateway.status in ("online", "offline"):
            status = _paint(status, _GREEN if gateway.status == "online" else _RED, colour)
        model = (gateway.model or {}).get("bundle_id") or "-"
        lines.append(
            f"{name[:20]:<20} {status} {_ago(gateway.last_seen, now):>5}"
            f" {fmt(gateway.stats.get('packets_per_s')):>9}"
            f" {fmt(gateway.stats.get('latency_ms_p50'), 2):>7}"
            f" {fmt(gateway.stats.get('latency_ms_p99'), 2):>7}"
            f" {len(gateway.active):>6}  {model}"
        )
    active = [(g.device, d) for g in fleet.gateways.values() for d in g.active.values()]
    lines += ["", _paint(f"ACTIVE EVENTS ({len(active)})", _BOLD, colour)]
    for device, detection in sorted(active, key=lambda item: item[1].start or 0.0):
        lines.append(
            _paint(
                f"  {device:<20} since {_clock(detection.start)}  {describe(detection)}",
                _YELLOW,
                colour,
            )
        )
    recent = [(g.device, d) for g in fleet.gateways.values() for d in g.recent.values()]
    recent.sort(key=lambda item: item[1].start or item[1].end or 0.0, reverse=True)
    lines += ["", _paint("RECENT DETECTIONS", _BOLD, colour)]
    for device, detection in recent[: fleet.recent]:
        ended = "active" if detection.end is None else f"ended {_clock(detection.end)}"
        when = _clock(detection.start or detection.end)
        lines.append(f"  {when}  {device:<20} {describe(detection)}  {ended}")
    return "\n".join(lines)


class View(Protocol):
    """Where the live monitor shows what changed."""

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None: ...

    def tick(self, fleet: Fleet, now: float) -> None: ...

    def close(self) -> None: ...


class LineView:
    """Not a terminal: one timestamped line per change, nothing else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None:
        """Print each change with its UTC time."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        for line in lines:
            self.out.write(f"{stamp} {line}\n")
        self.out.flush()

    def tick(self, fleet: Fleet, now: float) -> None:
        """Nothing to refresh between changes."""

    def close(self) -> None:
        """Nothing to restore."""


class ScreenView:
    """A terminal: the whole view redrawn in place, at most every ``interval`` seconds."""

    def __init__(self, out: TextIO, header: Callable[[], str], interval: float = 1.0) -> None:
        self.out = out
        self.header = header
        self.interval = interval
        self._drawn = 0.0
        self._dirty = True
        self._opened = False
        self._activity: deque[str] = deque(maxlen=ACTIVITY_LINES)

    def changed(self, lines: list[str], fleet: Fleet, now: float) -> None:
        """Keep the changes for the activity footer; the next tick redraws."""
        self._activity.extend(f"  {_clock(now)}  {line}" for line in lines)
        self._dirty = self._dirty or bool(lines)

    def tick(self, fleet: Fleet, now: float) -> None:
        """Redraw when something changed or once a second (the "seen" column ages)."""
        if not self._dirty and now - self._drawn < self.interval:
            return
        if not self._opened:
            # Entered on the first draw, so a connection error prints on the normal screen.
            self.out.write(_ENTER_SCREEN)
            self._opened = True
        footer = "\n".join(["", "", _paint("ACTIVITY", _BOLD, True), *self._activity])
        self.out.write(_CLEAR + render(fleet, now, self.header(), colour=True) + footer + "\n")
        self.out.flush()
        self._drawn, self._dirty = now, False

    def close(self) -> None:
        """Give the terminal back as it was."""
        if self._opened:
            self.out.write(_LEAVE_SCREEN)
            self.out.flush()
            self._opened = False


# --- the MQTT session -----------------------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """What paho's thread hands to the main loop: a message, a CONNACK or a disconnect."""

    kind: Literal["message", "connack", "disconnect"]
    topic: str = ""
    payload: bytes = b""
    retained: bool = False
    failure: str = ""


def _reason_text(exc: OSError) -> str:
    """A short, human reason for a failed TCP/TLS connect."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return exc.strerror or str(exc)


def _tls_context(url: BrokerUrl, ca_file: str | None) -> ssl.SSLContext | None:
    """A verifying TLS context for ``mqtts://`` (the CA file, else the system store)."""
    if not url.tls:
        if ca_file:
            raise MonitorError(f"--ca-file needs an mqtts:// broker URL, got {url}")
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise MonitorError(f"--ca-file {ca_file}: {getattr(exc, 'strerror', None) or exc}") from exc
    context.sslsocket_class = ClosingSSLSocket
    return context


def connect(
    url: BrokerUrl,
    fleet: Fleet,
    inbox: queue.Queue[Incoming],
    ca_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> mqtt.Client:
    """A paho client connected to ``url`` (CONNACK accepted) and feeding ``inbox``."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    env = os.environ if environ is None else environ
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"iotids-monitor-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv311,
    )
    username = env.get(USERNAME_ENV) or None
    if username is not None:
        client.username_pw_set(username, env.get(PASSWORD_ENV) or None)
    context = _tls_context(url, ca_file)
    if context is not None:
        client.tls_set_context(context)
    client.reconnect_delay_set(1, 30)
    client.connect_timeout = CONNECT_TIMEOUT_S
    _wire(client, fleet, inbox)
    try:
        client.connect(url.host, url.port, keepalive=30)
    except OSError as exc:
        raise MonitorError(f"cannot reach broker {url}: {_reason_text(exc)}") from exc
    client.loop_start()
    try:
        _await_connack(url, inbox, username is not None)
    except MonitorError:
        client.loop_stop()
        client.disconnect()
        raise
    return client


def _wire(client: mqtt.Client, fleet: Fleet, inbox: queue.Queue[Incoming]) -> None:
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
        client.subscribe([(topic, 1) for topic in fleet.subscriptions()])

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
        topics = fleet.subscriptions()
        refused = [t for t, r in zip(topics, reasons, strict=False) if r.is_failure]
        if refused:
            logger.warning("monitor: the broker refused the subscription to %s", refused)
        logger.debug("monitor: subscribed to %d topics under %s/", len(topics), fleet.prefix)

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
) -> None:
    """Connect and keep ``fleet`` (and ``view``) current until ``timeout`` s pass or ``stop``.

    The embeddable monitor: ``iotids demo`` runs it while its agent replays. Raises
    MonitorError when the broker cannot be reached or refuses the connection; the caller
    closes ``view``.
    """
    inbox: queue.Queue[Incoming] = queue.Queue()
    client = connect(url, fleet, inbox, ca_file)
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


# --- the command ----------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids monitor``."""
    parser.add_argument("--broker", required=True, help="mqtt://host:1883 or mqtts://host:8883")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default iotids)")
    parser.add_argument("--ca-file", help="CA certificate (PEM) for mqtts:// (default: system)")
    parser.add_argument("--recent", type=int, default=10, help="recent detections to keep")
    parser.add_argument(
        "--once", action="store_true", help="collect for --timeout seconds, print one snapshot"
    )
    parser.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    parser.epilog = f"Credentials come from ${USERNAME_ENV} and ${PASSWORD_ENV}."


def _check(args: argparse.Namespace) -> BrokerUrl:
    """Validate the arguments together; errors name the option."""
    if args.json and not args.once:
        raise MonitorError("--json needs --once")
    if args.once and args.timeout is None:
        raise MonitorError("--once needs --timeout SECONDS")
    if args.timeout is not None and args.timeout <= 0:
        raise MonitorError(f"--timeout must be > 0, got {args.timeout}")
    if not args.prefix.strip("/") or any(c in args.prefix for c in "+#"):
        raise MonitorError(f"--prefix must be a plain topic prefix, got {args.prefix!r}")
    if args.recent < 1:
        raise MonitorError(f"--recent must be >= 1, got {args.recent}")
    try:
        return parse_broker_url(args.broker)
    except BrokerUrlError as exc:
        raise MonitorError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Watch the fleet; 0 when done or interrupted, 2 when the broker cannot be used."""
    stop = threading.Event()
    try:
        url = _check(args)
        fleet = Fleet(args.prefix, args.recent)
        view = None if args.once else default_view(url, fleet)
        try:
            with _stop_on_signals(stop):
                follow(url, fleet, view=view, timeout=args.timeout, stop=stop, ca_file=args.ca_file)
        finally:
            if view is not None:
                view.close()
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
        return EXIT_ERROR
    if args.once:
        _print_snapshot(url, fleet, args.json)
    return EXIT_OK


def default_view(url: BrokerUrl, fleet: Fleet, out: TextIO | None = None) -> View:
    """A redrawing screen on a terminal, one line per change anywhere else."""
    stream = sys.stdout if out is None else out
    if stream.isatty():
        return ScreenView(stream, lambda: f"iotids monitor  {url}  prefix {fleet.prefix}")
    return LineView(stream)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT / SIGTERM set ``stop`` (the loop ends, the terminal is restored) while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_snapshot(url: BrokerUrl, fleet: Fleet, as_json: bool) -> None:
    """The ``--once`` result on stdout."""
    now = time.time()
    if as_json:
        snapshot = {"broker": str(url), **fleet.snapshot(now)}
        print(json.dumps(snapshot, indent=2, sort_keys=True))  # noqa: T201 - CLI output
    else:
        print(render(fleet, now, f"iotids monitor  {url}  {_clock(now)} UTC"))  # noqa: T201

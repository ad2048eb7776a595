"""Fleet health in Prometheus' text exposition format, served over HTTP at ``/metrics``.

The collector updates a :class:`FleetMetrics` from paho's network thread; the HTTP server
renders it from its own. Gateways are keyed by device id, which comes off the network: at
most ``max_devices`` are tracked (the rest are counted in ``iotids_collector_untracked_total``)
so a flood of invented ids cannot grow the collector's memory or a scrape without bound.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from agent.contract import MAX_GATEWAYS

logger = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_DEVICES: Final = MAX_GATEWAYS
MAX_HTTP_CLIENTS: Final = 16  # /metrics connections served at once (a scraper needs one)
HTTP_TIMEOUT_S: Final = 10.0
# Families are a small taxonomy, but a payload may name any: past this many, "other"
MAX_CATEGORIES: Final = 64
OTHER_CATEGORY: Final = "other"
# Per-gateway figures from the stats payload that dashboards plot, with their metric names.
GATEWAY_GAUGES: Final[Mapping[str, str]] = {
    "packets_per_s": "iotids_gateway_packets_per_second",
    "cpu_percent": "iotids_gateway_cpu_percent",
    "rss_bytes": "iotids_gateway_rss_bytes",
    "outbox_depth": "iotids_gateway_outbox_depth",
    "active_events": "iotids_gateway_active_events",
    "latency_ms_p99": "iotids_gateway_latency_ms_p99",
}


def escape(value: str) -> str:
    """A label value as the exposition format wants it (backslash, quote, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{escape(value)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


@dataclass
class _Gateway:
    online: bool | None = None
    last_seen: float = 0.0
    gauges: dict[str, float] = field(default_factory=dict)


class FleetMetrics:
    """Counters and per-gateway gauges; every method is thread-safe and O(1)."""

    def __init__(self, max_devices: int = MAX_DEVICES) -> None:
        self.max_devices = max_devices
        self._lock = threading.Lock()
        self._messages: dict[tuple[str, str], int] = {}  # (kind, result) -> count
        self._bad: dict[str, int] = {}  # reason -> count
        self._events: dict[tuple[str, str], int] = {}  # (type, category) -> count
        self._incidents: dict[str, int] = {}  # category -> incidents opened
        self._categories: set[str] = set()  # the label values in use, at most MAX_CATEGORIES
        self._gateways: dict[str, _Gateway] = {}
        self._untracked = 0
        self._store_up = True

    def message(self, kind: str, result: str) -> None:
        """Count one message of ``kind`` (events/stats/status) by what became of it."""
        with self._lock:
            key = (kind, result)
            self._messages[key] = self._messages.get(key, 0) + 1

    def bad(self, reason: str) -> None:
        """Count one payload skipped as malformed or hostile, by reason."""
        with self._lock:
            self._bad[reason] = self._bad.get(reason, 0) + 1

    def store_up(self, up: bool) -> None:
        """Whether the last write reached the database."""
        with self._lock:
            self._store_up = up

    def event(self, event_type: str, category: str) -> None:
        """Count one stored event by lifecycle step and attack family."""
        with self._lock:
            key = (event_type, self._category(category))
            self._events[key] = self._events.get(key, 0) + 1

    def incident(self, category: str) -> None:
        """Count one incident opened (a new detection that recurs none), by attack family."""
        with self._lock:
            category = self._category(category)
            self._incidents[category] = self._incidents.get(category, 0) + 1

    def _category(self, category: str) -> str:
        """``category`` as a label value: each new one past MAX_CATEGORIES is ``other``."""
        if category in self._categories:
            return category
        if len(self._categories) >= MAX_CATEGORIES:
            return OTHER_CATEGORY
        self._categories.add(category)
        return category

    def heard(
        self,
        device: str,
        when: float,
        *,
        online: bool | None = None,
        gauges: Mapping[str, float] | None = None,
    ) -> None:
        """A gateway was heard from at ``when``; optionally its status and figures."""
        with self._lock:
            gateway = self._gateways.get(device)
            if gateway is None:
                if len(self._gateways) >= self.max_devices:
                    self._untracked += 1
                    return
                gateway = self._gateways[device] = _Gateway()
            gateway.last_seen = max(gateway.last_seen, when)
            if online is not None:
                gateway.online = online
            for name, value in (gauges or {}).items():
                if name in GATEWAY_GAUGES and math.isfinite(value):
                    gateway.gauges[name] = value

    def render(self) -> str:
        """The exposition text of everything counted so far."""
        with self._lock:
            return "".join(self._lines())

    def _lines(self) -> Iterable[str]:
        yield from _family(
            "iotids_collector_messages_total",
            "counter",
            "Messages consumed, by topic kind and result (stored, duplicate, bad, store_error).",
            ((_labels([("kind", k), ("result", r)]), n) for (k, r), n in self._messages.items()),
        )
        yield from _family(
            "iotids_collector_bad_payloads_total",
            "counter",
            "Payloads skipped as malformed or hostile, by reason.",
            ((_labels([("reason", r)]), n) for r, n in self._bad.items()),
        )
        yield from _family(
            "iotids_collector_untracked_total",
            "counter",
            "Messages from gateways beyond the tracked limit (not in per-gateway metrics).",
            [("", self._untracked)],
        )
        yield from _family(
            "iotids_collector_store_up",
            "gauge",
            "1 while the last database write succeeded.",
            [("", 1 if self._store_up else 0)],
        )
        yield from _family(
            "iotids_events_total",
            "counter",
            "Events stored, by lifecycle step and attack family.",
            ((_labels([("type", t), ("category", c)]), n) for (t, c), n in self._events.items()),
        )
        yield from _family(
            "iotids_incidents_total",
            "counter",
            "Incidents opened, by attack family: new detections that recur no earlier one.",
            ((_labels([("category", c)]), n) for c, n in self._incidents.items()),
        )
        gateways = sorted(self._gateways.items())
        yield from _family(
            "iotids_gateways",
            "gauge",
            "Gateways known to this collector, by status.",
            [
                (_labels([("status", s)]), sum(_status(g) == s for _, g in gateways))
                for s in ("online", "offline", "unknown")
            ],
        )
        yield from _family(
            "iotids_gateway_up",
            "gauge",
            "1 online, 0 offline (its retained status or last will).",
            (
                (_labels([("device", d)]), 1 if g.online else 0)
                for d, g in gateways
                if g.online is not None
            ),
        )
        yield from _family(
            "iotids_gateway_last_seen_seconds",
            "gauge",
            "Unix time the gateway was last heard from.",
            ((_labels([("device", d)]), g.last_seen) for d, g in gateways),
        )
        for key, name in GATEWAY_GAUGES.items():
            yield from _family(
                name,
                "gauge",
                f"The gateway's latest {key}.",
                ((_labels([("device", d)]), g.gauges[key]) for d, g in gateways if key in g.gauges),
            )


def _status(gateway: _Gateway) -> str:
    if gateway.online is None:
        return "unknown"
    return "online" if gateway.online else "offline"


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> Iterable[str]:
    yield f"# HELP {name} {help_text}\n"
    yield f"# TYPE {name} {kind}\n"
    for labels, value in samples:
        yield f"{name}{labels} {_number(value)}\n"


class _Handler(BaseHTTPRequestHandler):
    metrics: FleetMetrics  # set on the subclass made per server
    timeout = HTTP_TIMEOUT_S  # an idle or trickling client is dropped, not held for ever

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404, "only /metrics is served")
            return
        body = self.metrics.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("metrics http: %s", format % args)


class _BoundedServer(ThreadingHTTPServer):
    """At most ``MAX_HTTP_CLIENTS`` at once: past that a connection is closed at once.

    Each client is a thread and a descriptor; idle connections held by the hundred used up
    the collector's descriptors, and then it could not open a socket to its broker.
    """

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_HTTP_CLIENTS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a scraper that hangs up mid-reply is not worth a traceback on stderr
        logger.debug("metrics http: a client at %s failed: %s", client_address, sys.exc_info()[1])

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def serve(metrics: FleetMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; ``shutdown()`` stops it."""
    handler = type("MetricsHandler", (_Handler,), {"metrics": metrics})
    server = _BoundedServer((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, name="iotids-collector-metrics", daemon=True
    )
    thread.start()
    return server

"""``iotids collect``: a fleet's events and stats into a database, health for Prometheus.

Run one (or several, in one ``--share`` group) beside the broker::

    iotids collect --broker mqtt://broker:1883 --db postgresql://iotids@db/iotids \\
        --metrics-port 9108 [--share iotids-collectors]

Credentials come from ``IOTIDS_MQTT_USERNAME`` / ``IOTIDS_MQTT_PASSWORD``, never the URL.
Runs until SIGTERM / SIGINT; exit 2 on bad arguments, 1 when the database cannot be opened.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import threading

from agent.broker_url import BrokerUrlError, parse_broker_url
from agent.config_loader import MAX_CLIENT_ID_BYTES, utf8_len, valid_topic_prefix
from agent.signals import stop_on_signals

logger = logging.getLogger(__name__)

DEFAULT_DB = "iotids-fleet.sqlite"
DEFAULT_METRICS_PORT = 9108
# Share group names become a topic level: the same characters a topic level may not hold.
_BAD_GROUP_CHARS = frozenset("/+#\x00")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtt://host[:port] or mqtts://...")
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"postgresql://... or a SQLite file (default {DEFAULT_DB})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"serve Prometheus /metrics on this port, 0 for none (default {DEFAULT_METRICS_PORT})",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address to serve /metrics on")
    parser.add_argument(
        "--share",
        metavar="GROUP",
        help="MQTT 5 shared-subscription group: collectors in one group split the fleet "
        "(default: none, this collector takes every message)",
    )
    parser.add_argument("--prefix", default="iotids", help="the gateways' mqtt.topic_prefix")
    parser.add_argument(
        "--client-id",
        default="",
        help="MQTT client id, the name of its durable session "
        "(default: iotids-collector-<host>-<hash of --share and --prefix>)",
    )
    parser.add_argument("--ca-file", help="CA file for an mqtts:// broker (default: system)")


def _utf8(text: str) -> bool:
    """An argument that is UTF-8 (argv bytes that are not arrive as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _fail(message: str) -> int:
    print(f"iotids collect: {message}", file=sys.stderr)  # noqa: T201 - the CLI's error line
    return 2


def run(args: argparse.Namespace) -> int:
    """Collect until a signal; the exit code."""
    from agent.mqtt_client import env_credentials, url_tls_context
    from console.collector.consumer import Collector, CollectorOptions
    from console.collector.metrics import FleetMetrics, serve
    from console.collector.store import StoreError, open_store, vanishes

    try:
        url = parse_broker_url(args.broker)
    except BrokerUrlError as exc:
        return _fail(f"--broker: {exc}")
    if args.share is not None and (not args.share or _BAD_GROUP_CHARS & set(args.share)):
        return _fail(f"--share: a group name without '/', '+', '#', got {args.share!r}")
    if args.ca_file and not url.tls:
        return _fail(f"--ca-file needs an mqtts:// broker URL, got {url}")
    if not 0 <= args.metrics_port <= 65535:
        return _fail(f"--metrics-port: must be 0..65535, got {args.metrics_port}")
    if not valid_topic_prefix(args.prefix):
        return _fail(
            f"--prefix: a topic without '+', '#', NUL or a leading '$', got {args.prefix[:40]!r}"
        )
    if (
        not _utf8(args.client_id)
        or utf8_len(args.client_id) > MAX_CLIENT_ID_BYTES
        or (set(args.client_id) & _BAD_GROUP_CHARS)
    ):
        return _fail(
            f"--client-id: at most {MAX_CLIENT_ID_BYTES} bytes without NUL, '+', '#' or '/', "
            f"got {args.client_id[:40]!r}"
        )
    if vanishes(args.db):
        return _fail(f"--db: a database file path or a postgresql:// URL, got {args.db!r}")
    try:
        store = open_store(args.db)
    except StoreError as exc:
        print(f"iotids collect: --db: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    metrics = FleetMetrics()
    server = None
    if args.metrics_port:
        try:
            server = serve(metrics, args.metrics_host, args.metrics_port)
        except OSError as exc:
            store.close()
            where = f"--metrics-host {args.metrics_host} --metrics-port {args.metrics_port}"
            return _fail(f"{where}: {exc.strerror or exc}")
    try:
        tls = url_tls_context(args.ca_file) if url.tls else None
    except (OSError, ssl.SSLError) as exc:
        store.close()
        return _fail(f"--ca-file {args.ca_file}: {getattr(exc, 'strerror', None) or exc}")
    username, password = env_credentials()
    options = CollectorOptions(
        host=url.host,
        port=url.port,
        prefix=args.prefix,
        share_group=args.share or "",
        client_id=args.client_id,
        username=username,
        password=password,
        tls=tls,
    )
    stop = threading.Event()
    collector = Collector(options, store, metrics)
    logger.info(
        "collect: %s (group %s) -> %s; metrics on %s",
        url,
        args.share or "none",
        "PostgreSQL" if args.db.startswith("postgres") else args.db,
        f"{args.metrics_host}:{args.metrics_port}/metrics" if server else "no port",
    )
    try:
        with stop_on_signals(stop):
            collector.run(stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        store.close()
    logger.info("collect: stopped after storing %d messages", collector.stored)
    return 0

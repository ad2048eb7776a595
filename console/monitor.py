"""``iotids monitor --broker URL``: a live terminal view of a fleet of gateways.

It subscribes to ``<prefix>/+/status``, ``/events``, ``/stats`` and ``/model`` (the contract in
``agent/contract.py``) and keeps, per gateway: online/offline, when it was last heard, the
active detections (a ``new``/``update`` opens or refreshes one by its ``detection`` id, an
``end`` closes it; a message whose ``id`` was already seen is dropped, since QoS 1 is
at-least-once and brokers may replay retained messages), the last N detections, packets/s,
inference latency p50/p99 and the active model.

On a terminal the view redraws in place with plain ANSI escapes (no curses); otherwise it prints
one line per change, which is what logs and tests see. ``--once`` collects for ``--timeout``
seconds (default 5: the retained status and model arrive at once, a few seconds catch the
next stats), prints one snapshot (``--json`` for machines) and exits 0. A broker that cannot be
reached or refuses the connection is one clear line and exit 2.

``--share GROUP`` makes several monitors split the event and stats streams through an MQTT 5
shared subscription (``console.monitor_client.subscriptions``).

State lives in ``console.monitor_state``, the views in ``console.monitor_view`` and the MQTT
session in ``console.monitor_client``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Final, TextIO

from agent.broker_url import PASSWORD_ENV, USERNAME_ENV, BrokerUrl, BrokerUrlError, parse_broker_url
from agent.contract import DEFAULT_PREFIX, valid_prefix, valid_share
from agent.signals import stop_on_signals
from console.monitor_client import MonitorError, follow
from console.monitor_state import Fleet
from console.monitor_view import LineView, ScreenView, View, clock, render

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2
ONCE_TIMEOUT_S: Final = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``iotids monitor``."""
    parser.add_argument("--broker", required=True, help="mqtt://host:1883 or mqtts://host:8883")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default iotids)")
    parser.add_argument("--ca-file", help="CA certificate (PEM) for mqtts:// (default: system)")
    parser.add_argument("--recent", type=int, default=10, help="recent detections to keep")
    parser.add_argument(
        "--once",
        action="store_true",
        help=f"collect for --timeout seconds (default {ONCE_TIMEOUT_S:g}), print one snapshot",
    )
    parser.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--share",
        metavar="GROUP",
        help="split events and stats with the other monitors of GROUP (MQTT 5 shared subscription)",
    )
    parser.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON")
    parser.epilog = f"Credentials come from ${USERNAME_ENV} and ${PASSWORD_ENV}."


def _check(args: argparse.Namespace) -> BrokerUrl:
    """Validate the arguments together; errors name the option."""
    if args.json and not args.once:
        raise MonitorError("--json needs --once")
    if args.timeout is not None and args.timeout <= 0:
        raise MonitorError(f"--timeout must be > 0, got {args.timeout}")
    if args.share is not None and not valid_share(args.share):
        raise MonitorError(f"--share must be a plain group name, got {args.share!r}")
    if not valid_prefix(args.prefix):
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
        timeout = ONCE_TIMEOUT_S if args.once and args.timeout is None else args.timeout
        try:
            with stop_on_signals(stop):
                follow(
                    url,
                    fleet,
                    view=view,
                    timeout=timeout,
                    stop=stop,
                    ca_file=args.ca_file,
                    share=args.share,
                )
        finally:
            if view is not None:
                view.close()
    except MonitorError as exc:
        print(f"iotids monitor: {exc}", file=sys.stderr)  # noqa: T201 - the CLI talks to its user
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


def _print_snapshot(url: BrokerUrl, fleet: Fleet, as_json: bool) -> None:
    """The ``--once`` result on stdout."""
    now = time.time()
    if as_json:
        snapshot = {"broker": str(url), **fleet.snapshot(now)}
        print(json.dumps(snapshot, indent=2, sort_keys=True))  # noqa: T201 - CLI output
    else:
        print(render(fleet, now, f"iotids monitor  {url}  {clock(now)} UTC"))  # noqa: T201

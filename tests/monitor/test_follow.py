"""The monitor as a process (SIGTERM) and as a library (``follow`` with a stop Event)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from agent.broker_url import parse_broker_url
from console.monitor_client import follow
from console.monitor_state import Fleet
from console.monitor_view import LineView
from tests.broker import REPO, Broker
from tests.monitor.gateway import FakeGateway

pytestmark = pytest.mark.broker


def test_sigterm_ends_the_live_monitor_with_exit_0(
    mosquitto: Broker, gateways: Callable[..., FakeGateway]
) -> None:
    gateways(mosquitto.host, mosquitto.port, device="gw-sig").status("online")
    url = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "monitor", "--broker", url],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the retained status arrives
        assert first.rstrip().endswith(" gw-sig online")
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        process.kill()
        process.communicate()


def test_follow_returns_when_its_stop_event_is_set(
    embedded_url: str, gateways: Callable[..., FakeGateway]
) -> None:
    url = parse_broker_url(embedded_url)
    gateway = gateways(url.host, url.port, device="gw-lib")
    gateway.status("online")
    fleet = Fleet()
    stop = threading.Event()
    seen: list[str] = []

    class Recorder(LineView):
        def changed(self, lines: list[str], fleet: Fleet, now: float) -> None:
            seen.extend(lines)
            stop.set()

    started = time.monotonic()
    follow(url, fleet, view=Recorder(sys.stdout), stop=stop)
    assert time.monotonic() - started < 5
    assert seen == ["gw-lib online"]
    assert fleet.gateways["gw-lib"].status == "online"

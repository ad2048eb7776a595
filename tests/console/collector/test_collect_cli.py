"""`iotids collect` as a process: stores, serves /metrics, stops on SIGTERM; bad args exit 2."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.broker import HOST, Broker, Probe, free_port
from tests.console.collector.test_collector import event, stats

REPO = Path(__file__).resolve().parents[3]


def _collect(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "collect", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def _collecting(*args: str) -> Iterator[subprocess.Popen[str]]:
    """``iotids collect`` running; killed on the way out if the test left it running."""
    process = _collect(*args)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2) as reply:
        return str(reply.read().decode())


def _rows(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.mark.broker
@pytest.mark.slow
def test_collect_stores_serves_metrics_and_stops_on_sigterm(
    mosquitto: Broker, tmp_path: Path
) -> None:
    db, port = tmp_path / "fleet.sqlite", free_port()
    broker = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    with _collecting("--broker", broker, "--db", str(db), "--metrics-port", str(port)) as process:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline and "iotids_collector_store_up" not in text:
            try:
                text = _scrape(port)
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        assert "iotids_collector_store_up 1.0" in text
        time.sleep(1.0)  # its subscriptions go out right after the CONNACK
        with Probe(mosquitto, client_id="gw") as gateway:
            gateway.publish("iotids/gw-7/events", event("gw-7", "new", uuid.uuid4().hex))
            gateway.publish("iotids/gw-7/stats", stats("gw-7"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and 'kind="stats",result="stored"' not in text:
            time.sleep(0.2)
            text = _scrape(port)
        assert 'iotids_collector_messages_total{kind="events",result="stored"} 1.0' in text
        assert 'iotids_gateway_packets_per_second{device="gw-7"} 120.0' in text
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert _rows(db, "events") == 1
    assert _rows(db, "stats") == 1


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--broker", "http://x"], "--broker"),
        (["--broker", "mqtt://u:p@x"], "--broker"),
        (["--broker", "mqtt://x", "--share", "a/b"], "--share"),
        (["--broker", "mqtt://x", "--metrics-port", "70000"], "--metrics-port"),
        (["--broker", "mqtt://x", "--ca-file", "/nonexistent"], "--ca-file"),
        # the two below hung for ever with a traceback in paho's thread
        (["--broker", "mqtt://x", "--prefix", "#"], "--prefix"),
        (["--broker", "mqtt://x", "--client-id", "x" * 70_000], "--client-id"),
        # SQLite's private temporary database: every message acknowledged, then gone at exit
        (["--broker", "mqtt://x", "--db", ""], "--db"),
        (["--broker", "mqtt://x", "--db", "sqlite://"], "--db"),
        (["--broker", "mqtt://x", "--db", ":memory:"], "--db"),
        (["--broker", "mqtt://x", "--metrics-host", "no such host"], "--metrics-host"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_option_and_exit_2(
    args: list[str], names: str, tmp_path: Path
) -> None:
    if "--db" not in args:
        args = [*args, "--db", str(tmp_path / "x.sqlite")]
    process = _collect(*args)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert names in err
    assert len(err.strip().splitlines()) == 1, err


def _wait_for(process: subprocess.Popen[str], db: Path, table: str, rows: int) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists() and _rows(db, table) >= rows:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.broker
@pytest.mark.slow
def test_a_collector_killed_and_started_again_gets_what_came_meanwhile(
    mosquitto: Broker, tmp_path: Path
) -> None:
    # the default client id is the same on every start: the broker kept its share in its session
    db = tmp_path / "fleet.sqlite"
    broker = f"mqtt://{mosquitto.host}:{mosquitto.port}"
    args = ("--broker", broker, "--db", str(db), "--metrics-port", "0")
    with _collecting(*args) as first:
        time.sleep(2.0)  # connected and subscribed
        with Probe(mosquitto, client_id="gw") as gateway:
            gateway.publish("iotids/gw-7/events", event("gw-7", "new", uuid.uuid4().hex))
            assert _wait_for(first, db, "events", 1)
            first.kill()
            first.communicate()
            for _ in range(5):  # while no collector runs
                gateway.publish("iotids/gw-7/events", event("gw-7", "new", uuid.uuid4().hex))
    with _collecting(*args) as again:
        assert _wait_for(again, db, "events", 6)
        again.send_signal(signal.SIGTERM)
        _, err = again.communicate(timeout=15)
    assert again.returncode == 0, err
    assert _rows(db, "events") == 6


def test_a_client_id_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path) -> None:
    command: list[str | bytes] = [sys.executable, "-m", "agent.cli", "collect"]
    command += ["--broker", "mqtt://x", "--db", str(tmp_path / "x.sqlite")]
    command += ["--client-id", b"gw-\xff"]  # argv bytes that are not UTF-8
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert err.startswith("iotids collect: --client-id:")
    assert len(err.strip().splitlines()) == 1, err

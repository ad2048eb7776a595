"""A stderr nobody reads must not stall the agent: its log drops lines instead of blocking."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.contract import Topics
from tests.agent import agent_run
from tests.agent.flood_bundle import REPO, flood_kit
from tests.broker import Broker, Probe

pytestmark = pytest.mark.broker


def test_an_agent_whose_stderr_is_never_read_still_reconnects_and_reports(tmp_path: Path) -> None:
    kit = flood_kit(tmp_path / "kit")
    broker = Broker(tmp_path / "broker", persistence=False)
    broker.start()
    topics = Topics.for_device("iotids", "gw")
    # debug: the flood then logs every detection update, so the pipe this test does not read
    # until the end is full within seconds, as a paused terminal or a stuck log reader leaves it
    config = agent_run.agent_toml(kit, tmp_path, agent_run.mqtt_toml(broker), log_level="debug")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with Probe(broker, [topics.events, topics.status]) as probe:
            assert probe.wait_for(lambda m: m.payload == b"online", 60) is not None
            assert probe.wait_for(lambda m: m.topic == topics.events, 30) is not None
            time.sleep(3)  # the pipe fills
            broker.kill()
            time.sleep(2.5)
            broker.start()
            back = probe.wait_for(lambda m: m.payload == b"online", 30)
            assert back is not None, "the agent stalled on its own log"
            assert probe.wait_for(lambda m: m.topic == topics.events, 30) is not None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        broker.kill()
    assert proc.returncode == 0
    assert b"Traceback" not in err


def test_drain_writes_every_queued_line_before_the_caller_speaks() -> None:
    # a command's own last words (a replay's summary, a wrapper's report) come after its log
    code = (
        "import logging, sys\n"
        "from agent.log_sink import configure_logging, drain\n"
        "configure_logging(logging.INFO)\n"
        "for i in range(2000):\n"
        "    logging.getLogger('t').info('line %d', i)\n"
        "assert drain(timeout=10.0)\n"
        "print('DONE', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-500:]
    lines = done.stderr.splitlines()
    assert lines[-1] == "DONE"
    assert sum("line " in line for line in lines) == 2000


def test_a_logged_value_cannot_forge_a_line_or_reach_the_terminal_raw() -> None:
    # a topic or a pushed bundle's field, logged as a value: one line, its controls escaped;
    # a traceback still has its lines
    code = (
        "import logging\n"
        "from agent.log_sink import configure_logging, drain\n"
        "configure_logging(logging.INFO)\n"
        "log = logging.getLogger('t')\n"
        "log.warning('refused: %s', 'x\\n2026-01-01 00:00:00,000 INFO forged\\x1b]0;t\\x07')\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    log.exception('failed')\n"
        "drain(timeout=10.0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    lines = done.stderr.splitlines()
    assert lines[0].endswith(
        "WARNING t: refused: x\\x0a2026-01-01 00:00:00,000 INFO forged\\x1b]0;t\\x07"
    )
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert "\x1b" not in done.stderr
    assert lines[1].endswith("ERROR t: failed")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: boom"

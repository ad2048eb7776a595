"""Run the agent in this process on a config until its sources end (pcap replays do)."""

from __future__ import annotations

import threading
from typing import Any

from agent.app import App
from agent.config import parse_config
from agent.report.memory import MemorySink


def run_to_end(config: dict[str, Any], timeout: float = 60.0) -> MemorySink:
    """The agent's messages, collected in memory; fails when it is still running after
    ``timeout`` seconds."""
    sink = MemorySink()
    app = App(parse_config(config), sinks=[sink])
    thread = threading.Thread(target=app.run, name="agent-under-test")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the agent still ran after {timeout:g} s"
    return sink

"""A source whose read raises restarts with back-off or ends the agent, never silently.

A real live source cannot be made to fail on cue (a NIC vanishing, a driver bug), so these
tests give the real ``SourceRunner`` and ``App`` a source that raises on purpose; the
registry's ``host`` entry is pointed at it for the restart path.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent import supervise
from agent.app import App
from agent.config import AgentConfig, parse_config
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from agent.health import Health
from agent.sources import SourceStats, StepBatch
from agent.sources.registry import SOURCE_KINDS

OPENED: list[FlakySource] = []
FAILURES_LEFT = [0]


class FlakySource:
    """Raises on read while the shared FAILURES_LEFT counter is above zero, then yields steps."""

    lossless = False
    finished = False

    def __init__(self, config: Any, agent: Any = None) -> None:
        self.name = config.name
        self.step = StepSpec()
        self.feature_set = FeatureSet("flaky", 1, ("x",))
        self.stats = SourceStats()
        self.closed = False
        OPENED.append(self)

    def read(self, timeout: float) -> StepBatch | None:
        if FAILURES_LEFT[0] > 0:
            FAILURES_LEFT[0] -= 1
            raise RuntimeError("device vanished")
        self.stats.readings += 1
        return StepBatch(np.zeros(1, np.int64), np.zeros((1, 1), np.float32))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AgentConfig:
    OPENED.clear()
    host = SOURCE_KINDS["host"]
    monkeypatch.setitem(SOURCE_KINDS, "host", replace(host, factory=f"{__name__}:FlakySource"))
    monkeypatch.setattr(supervise, "BACKOFF_S", (0.01, 0.02))
    return parse_config(
        {
            "agent": {"device_id": "gw", "state_dir": str(tmp_path)},
            "mqtt": {"enabled": False},
            "sources": [{"name": "dev", "kind": "host"}],
        }
    )


def _runner(config: AgentConfig, delivered: list[StepBatch], failed: list[str]) -> Any:
    stop = threading.Event()

    def deliver(source: Any, batch: StepBatch) -> None:
        delivered.append(batch)
        if len(delivered) >= 3:
            stop.set()

    def fail(message: str) -> None:
        failed.append(message)
        stop.set()

    source = FlakySource(config.sources[0])
    runner = supervise.SourceRunner(config, {"dev": source}, Health(), stop, deliver, fail)
    return runner, source


def test_a_live_source_that_fails_is_restarted_and_counted(flaky: AgentConfig) -> None:
    FAILURES_LEFT[0] = 3
    delivered: list[StepBatch] = []
    failed: list[str] = []
    runner, first = _runner(flaky, delivered, failed)
    runner.run(first)
    assert not failed
    assert len(delivered) == 3  # reading resumed after the restarts
    assert runner.health.source_restarts["dev"] == 3
    assert first.closed
    assert runner.sources["dev"] is OPENED[-1]  # the App's dict holds the fresh instance
    assert runner.sources["dev"].stats is first.stats  # running totals survive a restart
    assert first.stats.readings == 3


def test_a_live_source_failing_every_time_ends_the_agent(flaky: AgentConfig) -> None:
    FAILURES_LEFT[0] = 10**6
    delivered: list[StepBatch] = []
    failed: list[str] = []
    runner, first = _runner(flaky, delivered, failed)
    runner.run(first)
    assert len(failed) == 1
    assert f"source dev failed {supervise.MAX_FAILURES} times in a row" in failed[0]
    assert runner.health.source_restarts["dev"] == supervise.MAX_FAILURES - 1
    assert "dev" in runner.drained


def test_the_app_exits_non_zero_when_a_source_gives_up(flaky: AgentConfig) -> None:
    FAILURES_LEFT[0] = 10**6
    app = App(flaky, sinks=[])
    assert app.run() == supervise.EXIT_FAILED


def test_the_app_exits_non_zero_when_a_thread_dies(flaky: AgentConfig) -> None:
    FAILURES_LEFT[0] = 0
    app = App(flaky, sinks=[])

    def broken() -> None:
        raise RuntimeError("a bug")

    app._stats_loop = broken  # type: ignore[method-assign]
    assert app.run() == supervise.EXIT_FAILED

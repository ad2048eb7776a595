"""The host source: one psutil snapshot per time step, as host-v1 rows."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from agent.features.host import HOST_V1, HostSnapshot, host_row, take_snapshot
from agent.sources import SourceStats, StepBatch

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.config import AgentConfig, SourceConfig

logger = logging.getLogger(__name__)


class HostSource:
    """Samples the gateway at every step boundary (steps aligned to the wall clock)."""

    lossless = False
    finished = False

    def __init__(
        self,
        config: SourceConfig,
        agent: AgentConfig | None = None,
        *,
        snapshot: Callable[[], HostSnapshot] = take_snapshot,
    ) -> None:
        self.name = config.name
        self.feature_set = HOST_V1
        self.step = config.step_spec
        self.stats = SourceStats()
        self._snapshot = snapshot
        self._size_ns = self.step.size_ns
        self._previous: HostSnapshot | None = snapshot()
        self._next_ns = (time.time_ns() // self._size_ns + 1) * self._size_ns

    def read(self, timeout: float) -> StepBatch | None:
        """Wait for the next step boundary (up to ``timeout`` s) and return that step's row."""
        wait = (self._next_ns - time.time_ns()) / 1e9
        if wait > timeout:
            time.sleep(max(timeout, 0.0))
            return None
        if wait > 0:
            time.sleep(wait)
        current = self._snapshot()
        row = host_row(self._previous, current)
        start = self._next_ns - self._size_ns
        self._previous = current
        self._next_ns += self._size_ns
        behind = (time.time_ns() - self._next_ns) // self._size_ns
        if behind > 0:  # we slept through steps (suspended VM, overloaded Pi): skip, not burst
            self._next_ns += int(behind + 1) * self._size_ns
        self.stats.steps += 1
        return StepBatch(np.asarray([start], np.int64), row.reshape(1, -1))

    def close(self) -> None:
        """Nothing to release."""

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
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.name = config.name
        self.feature_set = HOST_V1
        self.step = config.step_spec
        self.stats = SourceStats()
        self._snapshot = snapshot
        self._clock = clock
        self._size_ns = self.step.size_ns
        self._previous: HostSnapshot | None = snapshot()
        self._next_ns = (clock() // self._size_ns + 1) * self._size_ns

    def read(self, timeout: float) -> StepBatch | None:
        """Wait for the next step boundary (up to ``timeout`` s) and return that step's row."""
        now = self._clock()
        if self._next_ns - now > 2 * self._size_ns:
            # The next boundary is never two steps away unless the wall clock went back
            # (NTP correcting a Pi without RTC): waiting for the old boundary would stop this
            # source for as long as the jump, so steps restart from the clock as it is now.
            logger.warning(
                "host source %s: the clock went back %.1f s; steps restart from now",
                self.name,
                (self._next_ns - now) / 1e9,
            )
            self._next_ns = (now // self._size_ns + 1) * self._size_ns
        wait = (self._next_ns - now) / 1e9
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
        behind = (self._clock() - self._next_ns) // self._size_ns
        if behind > 0:  # we slept through steps (suspended VM, overloaded Pi): skip, not burst
            self._next_ns += int(behind + 1) * self._size_ns
        self.stats.steps += 1
        return StepBatch(np.asarray([start], np.int64), row.reshape(1, -1))

    def close(self) -> None:
        """Nothing to release."""

"""Source threads under supervision: a source that fails restarts or ends the agent, never silently.

Sources count and skip bad input themselves; a ``read`` that raises is a bug or a broken
device. A file source then ends the agent with ``EXIT_FAILED`` (the same file would fail the
same way again). A live source is closed and opened again after 1, 2, 4 ... 30 s, each restart
counted in the stats' ``source_restarts``; after ``MAX_FAILURES`` failures in a row (no good
read between them) the agent exits ``EXIT_FAILED`` so that systemd's ``Restart=on-failure``
takes over with a fresh process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.config import AgentConfig
from agent.health import Health
from agent.sources import FeatureSource, StepBatch, open_source

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
MAX_FAILURES = 5
BACKOFF_S = (1.0, 30.0)  # first delay, longest delay


@dataclass
class SourceRunner:
    """Runs a source's loop on its thread; a restart replaces its entry in ``sources``."""

    config: AgentConfig
    sources: dict[str, FeatureSource]
    health: Health
    stop: threading.Event
    deliver: Callable[[FeatureSource, StepBatch], None]  # into the step queue
    fail: Callable[[str], None]  # log one line, end the agent with EXIT_FAILED
    drained: set[str] = field(default_factory=set)  # sources whose thread has ended
    timeout: float = 0.5

    def run(self, source: FeatureSource) -> None:
        """Read batches and deliver them until stopped, the source runs dry, or it gives up."""
        name = source.name
        failures = 0
        current: FeatureSource | None = source
        while current is not None and not self.stop.is_set() and not current.finished:
            try:
                batch = current.read(timeout=self.timeout)
            except Exception as exc:
                logger.debug("source %s: read failed", name, exc_info=True)
                failures += 1
                current, failures = self._reopen(current, exc, failures)
                continue
            failures = 0
            if batch is not None and len(batch):
                self.deliver(current, batch)
        self.drained.add(name)

    def _reopen(
        self, source: FeatureSource, error: Exception, failures: int
    ) -> tuple[FeatureSource | None, int]:
        """A fresh instance of a failed live source and the failure count; None: given up."""
        name = source.name
        _close_quietly(source)
        while not self.stop.is_set():
            if source.lossless or failures >= MAX_FAILURES:
                if source.lossless:
                    self.fail(f"file source {name} failed: {error!r}")
                else:
                    self.fail(f"source {name} failed {failures} times in a row: {error!r}")
                return None, failures
            delay = min(BACKOFF_S[0] * 2 ** (failures - 1), BACKOFF_S[1])
            logger.warning(
                "source %s failed (%r); restart %d of at most %d in %.1f s",
                name,
                error,
                failures,
                MAX_FAILURES - 1,
                delay,
            )
            if self.stop.wait(delay):
                break
            self.health.source_restarts[name] += 1
            try:
                fresh = open_source(self.config.source(name), self.config)
            except Exception as exc:  # the device is still gone: one more failure in the row
                error, failures = exc, failures + 1
                continue
            fresh.stats = source.stats  # the stats keep running totals across restarts
            self.sources[name] = fresh
            logger.info("source %s restarted", name)
            return fresh, failures
        return None, failures


def _close_quietly(source: FeatureSource) -> None:
    try:
        source.close()
    except Exception as exc:  # it failed already; its close failing too changes nothing
        logger.debug("source %s: close failed: %r", source.name, exc)

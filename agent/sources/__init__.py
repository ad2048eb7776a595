"""Feature sources: small plugins that turn packets, sensor readings or host metrics into steps.

Each kind lives in its own module and is found through ``agent.sources.registry``, a table of
lazy import paths, so an unused source's dependencies never load on the gateway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from agent.config_loader import ConfigError
from agent.decide import Evidence
from agent.features.schema import FeatureSet
from agent.features.steps import StepSpec
from agent.sources.registry import SOURCE_KINDS, kinds, resolve

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig


@dataclass(frozen=True)
class StepBatch:
    """Finished steps of one source: ``start_ns`` (S,), ``values`` (S, F) float32, evidence.

    ``evidence`` (one per step, or empty: none) may be lazy (``agent.evidence.StepEvidence``):
    indexing it summarises the step then.
    """

    start_ns: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    evidence: Sequence[Evidence | None] = ()

    def __len__(self) -> int:
        return int(self.start_ns.shape[0])


@dataclass
class SourceStats:
    """Counters a source keeps since it started (health reads them each stats interval)."""

    packets: int = 0
    bytes: int = 0
    frames: int = 0
    drops: int = 0  # frames the kernel (or a full buffer) dropped before we saw them
    readings: int = 0
    steps: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


class FeatureSource(Protocol):
    """A source of feature steps; ``read`` returns None when nothing finished within timeout."""

    name: str
    feature_set: FeatureSet
    step: StepSpec
    lossless: bool  # True: a full queue blocks the source (file replay) instead of dropping
    stats: SourceStats

    @property
    def finished(self) -> bool:
        """True once a finite source (a file) has delivered its last step."""
        ...

    def read(self, timeout: float) -> StepBatch | None:
        """The next batch of finished steps, or None after ``timeout`` seconds without one."""
        ...

    def close(self) -> None:
        """Release sockets, files and threads."""
        ...


class SourceFactory(Protocol):
    """What a registry entry points at: a class built from its config section."""

    def __call__(self, config: SourceConfig, agent: AgentConfig) -> FeatureSource: ...


def source_class(kind: str) -> SourceFactory:
    """Import the class for ``kind``; an unknown kind is a ConfigError listing the valid ones."""
    try:
        entry = SOURCE_KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown source {kind!r} (valid: {kinds()})") from None
    factory: SourceFactory = resolve(entry.factory)
    return factory


def open_source(config: SourceConfig, agent: AgentConfig) -> FeatureSource:
    """Build the source a ``[[sources]]`` table describes."""
    return source_class(config.kind)(config, agent)


def empty_batch(width: int) -> StepBatch:
    """A batch of zero steps of ``width`` features."""
    return StepBatch(np.zeros(0, np.int64), np.zeros((0, width), np.float32))


def longest_wait_ns(step: StepSpec) -> int:
    """The longest gap of a recording a realtime replay waits out, in recorded time.

    The featurizers keep at most ``MAX_IDLE_STEPS`` empty steps of a gap (steps of the time
    limit; 1 s for packet-count steps, which have none): waiting longer shows the agent nothing
    more, and one stamp far ahead (days, a clock set wrong when it was recorded) would stall
    the replay that long.
    """
    from agent.features.traffic import MAX_IDLE_STEPS

    return MAX_IDLE_STEPS * (step.limit_ns or 1_000_000_000)

"""Decoded packets to traffic-v1 steps plus each step's evidence, shared by pcap and live.

The featurizer computes the model's inputs; beside it this keeps, per step, the packets whose
counts and busiest sources and ports an event reports as evidence (``StepEvidence``: summarised
only when an event needs it; the model slot bounds how many packets wait that way).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.evidence import Evidence, StepEvidence
from agent.features.packets import PacketTable
from agent.features.steps import StepSpec
from agent.sources import StepBatch

logger = logging.getLogger(__name__)

# packets of unfinished time steps held for their evidence (~70 bytes each: ~18 MiB)
MAX_OPEN_PACKETS = 1 << 18


class TrafficStepper:
    """Feeds packet tables to a TrafficFeaturizer and pairs every finished step with evidence."""

    def __init__(self, step: StepSpec) -> None:
        from agent.features.traffic import TRAFFIC_V1, TrafficFeaturizer

        self.step = step
        self.feature_set = TRAFFIC_V1
        self._featurizer = TrafficFeaturizer(step)
        self._pending: list[PacketTable] = []  # packets of steps not finished yet
        self._held = 0  # packets in _pending
        self._trimmed = False  # some packets of the pending steps are not held (too many)
        self._trim_end_ns = 0  # the time of the last packet left out
        self.trimmed_packets = 0  # packets counted in features but left out of evidence

    def push(self, table: PacketTable) -> StepBatch:
        """Add decoded packets (time-ordered); returns the steps they finished."""
        kept = table
        if self.step.kind == "time" and self._held + len(table) > MAX_OPEN_PACKETS:
            # A long time step under a flood held every packet for its evidence (~70 bytes
            # each, without bound): past the cap the features still count every packet, the
            # evidence's top lists come from the first MAX_OPEN_PACKETS and its counts from
            # the featurizer.
            kept = table.take(slice(0, max(MAX_OPEN_PACKETS - self._held, 0)))
            self.trimmed_packets += len(table) - len(kept)
            self._trimmed = True
            self._trim_end_ns = int(table.ts_ns[-1])
        if len(kept):
            self._pending.append(kept)
            self._held += len(kept)
        return self._batch(self._featurizer.push(table))

    def advance(self, now_ns: int) -> StepBatch:
        """Close the time steps that ended by ``now_ns`` (live capture on a quiet link)."""
        return self._batch(self._featurizer.advance(now_ns))

    def flush(self) -> StepBatch:
        """Close the last, partial step (end of a capture file)."""
        return self._batch(self._featurizer.flush())

    def _batch(self, steps: Any) -> StepBatch:
        """A StepBatch of the featurizer's steps with evidence cut from the pending packets."""
        starts = np.asarray(steps.start_ns, np.int64)
        values = np.asarray(steps.values, np.float32)
        if starts.shape[0] == 0:
            return StepBatch(starts, values)
        counts = np.asarray(steps.packets, np.int64)
        exact = None
        if self._trimmed:
            byte_counts = np.rint(values[:, self.feature_set.index("bytes")]).astype(np.int64)
            exact = (counts, byte_counts)
        evidence = self._evidence(starts, counts, exact)
        return StepBatch(starts, values, evidence)

    def _evidence(
        self, starts: Any, counts: Any, exact: tuple[Any, Any] | None = None
    ) -> Sequence[Evidence | None]:
        """Evidence per finished step; the packets of those steps leave the pending list."""
        table = PacketTable.concat(self._pending) if len(self._pending) != 1 else self._pending[0]
        if self.step.kind == "time":
            bounds = np.searchsorted(table.ts_ns, starts + self.step.size_ns, side="left")
        else:
            # packet-count steps (with or without a time limit) hold consecutive packets, and
            # an idle step holds none: the counts alone cut the pending packets
            bounds = np.minimum(np.cumsum(counts), len(table))
        ends = np.maximum.accumulate(bounds)
        found = StepEvidence(table, ends, exact=exact)
        rest = table.take(slice(int(ends[-1]), None))
        self._pending = [rest] if len(rest) else []
        self._held = len(rest)
        if self._trimmed and int(starts[-1]) + self.step.size_ns > self._trim_end_ns:
            self._trimmed = False  # the step that held the last packet left out has closed
        return found

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


class TrafficStepper:
    """Feeds packet tables to a TrafficFeaturizer and pairs every finished step with evidence."""

    def __init__(self, step: StepSpec) -> None:
        from agent.features.traffic import TRAFFIC_V1, TrafficFeaturizer

        self.step = step
        self.feature_set = TRAFFIC_V1
        self._featurizer = TrafficFeaturizer(step)
        self._pending: list[PacketTable] = []  # packets of steps not finished yet

    def push(self, table: PacketTable) -> StepBatch:
        """Add decoded packets (time-ordered); returns the steps they finished."""
        if len(table):
            self._pending.append(table)
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
        evidence = self._evidence(starts, np.asarray(steps.packets, np.int64))
        return StepBatch(starts, values, evidence)

    def _evidence(self, starts: Any, counts: Any) -> Sequence[Evidence | None]:
        """Evidence per finished step; the packets of those steps leave the pending list."""
        table = PacketTable.concat(self._pending) if len(self._pending) != 1 else self._pending[0]
        if self.step.kind == "time":
            bounds = np.searchsorted(table.ts_ns, starts + self.step.size_ns, side="left")
        else:
            # packet-count steps (with or without a time limit) hold consecutive packets, and
            # an idle step holds none: the counts alone cut the pending packets
            bounds = np.minimum(np.cumsum(counts), len(table))
        ends = np.maximum.accumulate(bounds)
        found = StepEvidence(table, ends)
        rest = table.take(slice(int(ends[-1]), None))
        self._pending = [rest] if len(rest) else []
        return found

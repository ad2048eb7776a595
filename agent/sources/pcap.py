"""Capture file replay: a pcap/pcapng file through the same decoder and featurizer as live.

As fast as possible (forensics, benchmarks), or paced by the capture's own timestamps
(``realtime``) so a replay looks to the agent like the traffic it recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from agent.sources import SourceStats, StepBatch, longest_wait_ns
from agent.sources.traffic_steps import TrafficStepper

if TYPE_CHECKING:
    from agent.config import AgentConfig, SourceConfig
    from agent.features.packets import Capture, PacketTable

logger = logging.getLogger(__name__)

FAST_CHUNK = 8192  # frames per decode; 4096 would save 3 MB of RSS but replays 12-17% slower
REALTIME_CHUNK = 256  # small chunks so pacing follows the capture closely


class PcapSource:
    """Replays one capture file (optionally in a loop) as traffic-v1 steps."""

    lossless = True  # a file can wait: a full queue blocks the replay instead of dropping

    def __init__(self, config: SourceConfig, agent: AgentConfig | None = None) -> None:
        from agent.config import PcapOptions

        options = config.options
        if not isinstance(options, PcapOptions):
            raise TypeError(f"{config.name}: pcap source needs PcapOptions")
        self.name = config.name
        self.path = options.path
        _check_capture(self.path)
        self.realtime = options.realtime
        self.speed = options.speed
        self.loop = options.loop
        self.step = config.step_spec
        self._stepper = TrafficStepper(self.step)
        self.feature_set = self._stepper.feature_set
        self.stats = SourceStats()
        self.file_read = 0  # bytes of the file read so far (this pass): a replay's progress
        self._chunks = self._open()
        self._finished = False
        self._offset_ns = 0  # added to timestamps on each loop so time keeps moving forward
        self._first_ts: int | None = None
        self._pass_first: int | None = None  # the file's first and last packet times
        self._pass_last = 0
        self._held: PacketTable | None = None  # decoded packets not yet released (realtime)
        self._last_ts = 0
        self._wall0 = 0.0

    @property
    def finished(self) -> bool:
        """True once the file (and its last partial step) has been delivered."""
        return self._finished

    def read(self, timeout: float) -> StepBatch | None:
        """Decode chunks until at least one step finishes, the file ends, or ``timeout`` passes."""
        if self._finished:
            return None
        deadline = time.monotonic() + timeout
        while True:
            if self._held is None:
                capture = next(self._chunks, None)
                if capture is None:
                    if self.loop and self._pass_first is not None:
                        self._offset_ns += self._pass_last - self._pass_first + self.step.size_ns
                        self._chunks = self._open()
                        continue
                    return self._end()
                self._held = self._accept(capture)
                if self._held is None:
                    continue
            batch = self._release(deadline)
            if len(batch) or time.monotonic() >= deadline:
                self.stats.steps += len(batch)
                return batch

    def _end(self) -> StepBatch:
        """The file is done: close the last, partial step."""
        self._finished = True
        batch = self._stepper.flush()
        self.stats.steps += len(batch)
        return batch

    def _open(self) -> Iterator[Capture]:
        from agent.features.capture import iter_capture

        chunk = REALTIME_CHUNK if self.realtime else FAST_CHUNK
        return iter_capture(self.path, chunk_frames=chunk, progress=self._read_to)

    def _read_to(self, position: int) -> None:
        self.file_read = position

    def _accept(self, capture: Capture) -> PacketTable | None:
        """Account for one chunk; its decoded packets (time-shifted when looping), or None."""
        table = capture.packets
        self.stats.frames += capture.frames
        self.stats.malformed.update(capture.malformed)
        if not len(table):
            return None
        if self._pass_first is None:
            self._pass_first = int(table.ts_ns[0])
        self._pass_last = int(table.ts_ns[-1])  # as recorded, before any loop shift
        if self._offset_ns:
            table.ts_ns[:] += self._offset_ns
        if self._first_ts is None:
            self._first_ts = int(table.ts_ns[0])
            self._wall0 = time.monotonic()
        self._last_ts = int(table.ts_ns[-1])
        self.stats.packets += len(table)
        self.stats.bytes += int(table.wire_len.sum())
        return table

    def _release(self, deadline: float) -> StepBatch:
        """Featurize the held packets that are due (all of them unless realtime)."""
        held = self._held
        assert held is not None
        if not self.realtime:
            self._held = None
            return self._stepper.push(held)
        assert self._first_ts is not None
        now_ts = self._first_ts + int((time.monotonic() - self._wall0) * self.speed * 1e9)
        due = int(np.searchsorted(held.ts_ns, now_ts, side="right"))
        if due == 0:
            skip = int(held.ts_ns[0]) - now_ts - longest_wait_ns(self.step)
            if skip > 0:  # the replay's clock jumps the part of the gap no step would show
                self._first_ts += skip
                now_ts += skip
            wait = (int(held.ts_ns[0]) - now_ts) / 1e9 / self.speed
            time.sleep(max(min(wait, deadline - time.monotonic()), 0.0))
            return self._stepper.advance(now_ts)
        self._held = held.take(slice(due, None)) if due < len(held) else None
        return self._stepper.push(held.take(slice(0, due)))

    def close(self) -> None:
        """Stop reading (the file is closed when its iterator is dropped)."""
        self._chunks = iter(())
        self._finished = True


def _check_capture(path: str) -> None:
    """Fail at start-up (one config error, exit 2) rather than in the source's thread.

    A file that is missing, unreadable, empty or not a capture at all raises OSError or
    ValueError (CaptureFormatError) here, from its first bytes (decoding waits for the thread:
    replaying many small files paid a whole decode per file twice).
    """
    from agent.features.capture import check_capture

    check_capture(path)

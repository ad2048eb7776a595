"""Step boundaries of ``packets_or_time`` steps: N packets or T seconds, whichever first.

A step opens at its first packet and closes at its N-th packet or T seconds after it opened
(the next packet at or past that time, or the clock, closes it). Silence after a step is
counted in whole T-second stretches, each one an all-zero step ("nothing seen", like an empty
time step), at most ``max_idle`` of them in a row. Time comparisons use the running maximum of
the timestamps, so a late packet joins the open step, as with time steps.

The state carries across calls: cutting a capture anywhere gives the same boundaries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agent.features.steps import StepSpec

I64 = npt.NDArray[np.int64]
_I64_MIN, _I64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _clamp(value: int) -> int:
    return min(max(value, _I64_MIN), _I64_MAX)


class MixedClock:
    """Assigns every packet a step index; indexes skipped over are all-zero idle steps."""

    def __init__(self, packets: int, limit_ns: int, max_idle: int) -> None:
        self.packets = packets
        self.limit_ns = limit_ns
        self.max_idle = max_idle
        self.open_index: int | None = None  # the open step (it holds packets), None between steps
        self.count = 0  # packets in the open step
        self.deadline = 0  # the open step closes at this time
        self.next_index = 0
        self.idle_from: int | None = None  # when the last step closed (idle steps count from it)
        self.idle_done = 0  # idle steps already given out since idle_from
        self.max_ts = _I64_MIN
        self.zero_starts: dict[int, int] = {}  # idle step index -> its start time, until emitted

    def assign(self, ts_ns: I64) -> I64:
        """Step index of each packet (in order); closes and idles the steps they pass."""
        n = len(ts_ns)
        out = np.empty(n, np.int64)
        if n == 0:
            return out
        running = np.maximum.accumulate(np.maximum(ts_ns, np.int64(self.max_ts)))
        i = 0
        while i < n:
            now = int(running[i])
            if self.open_index is None:
                self.idle_until(now)
                self.open_index, self.count = self.next_index, 0
                self.next_index += 1
                self.deadline = now + self.limit_ns  # may pass int64 on garbage clocks
                self.idle_from = None
            elif now >= self.deadline:
                self.close(self.deadline)
                continue
            by_time = (
                i + int(np.searchsorted(running[i:], self.deadline, side="left"))
                if self.deadline <= _I64_MAX
                else n
            )
            j = min(i + self.packets - self.count, by_time)
            out[i:j] = self.open_index
            self.count += j - i
            i = j
            if self.count >= self.packets:
                self.close(int(running[j - 1]))
        self.max_ts = int(running[-1])
        return out

    def close(self, at_ns: int) -> None:
        """The open step ends at ``at_ns``; silence from then on counts as idle steps."""
        self.open_index, self.count = None, 0
        self.idle_from, self.idle_done = at_ns, 0

    def expired(self, now_ns: int) -> bool:
        """The open step's time is up by ``now_ns``."""
        return self.open_index is not None and now_ns >= self.deadline

    def idle_until(self, now_ns: int) -> None:
        """Give out the idle steps that fit between the last close and ``now_ns``."""
        if self.idle_from is None:
            return
        total = min(max((now_ns - self.idle_from) // self.limit_ns, 0), self.max_idle)
        for k in range(self.idle_done, total):
            self.zero_starts[self.next_index] = _clamp(self.idle_from + k * self.limit_ns)
            self.next_index += 1
        self.idle_done = max(total, self.idle_done)

    def take_zeros(self, before: int) -> tuple[I64, I64]:
        """Indexes and start times of the idle steps before index ``before``, forgotten here."""
        keys = sorted(k for k in self.zero_starts if k < before)
        starts = [self.zero_starts.pop(k) for k in keys]
        return np.array(keys, np.int64), np.array(starts, np.int64)


def packet_rows(ts_ns: I64, spec: StepSpec, max_idle: int) -> I64:
    """Each packet's row in the steps ``featurize`` gives for a packet-count step (labelling)."""
    if spec.kind == "packets":
        return np.arange(len(ts_ns), dtype=np.int64) // int(spec.size)
    if spec.kind != "packets_or_time":
        raise ValueError(f"packet_rows needs a packet-count step, got {spec.kind!r}")
    return MixedClock(int(spec.size), spec.limit_ns, max_idle).assign(ts_ns)

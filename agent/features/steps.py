"""How packets are grouped into time steps, and how steps become windows.

A step is a fixed time interval (default 1 s) or a fixed number of packets; short, dense
attack captures (MQTTset slowite: 6,447 packets in 0.6 s) need packet-count steps to yield
enough samples. The bundle and saved windows record which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

StepKind = Literal["time", "packets"]


@dataclass(frozen=True)
class StepSpec:
    """``kind="time"``: ``size`` seconds per step; ``kind="packets"``: ``size`` packets per step."""

    kind: StepKind = "time"
    size: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("time", "packets"):
            raise ValueError(f"step kind must be 'time' or 'packets', got {self.kind!r}")
        if not self.size > 0:
            raise ValueError(f"step size must be > 0, got {self.size!r}")
        if self.kind == "packets" and int(self.size) != self.size:
            raise ValueError(f"a packet-count step needs a whole number, got {self.size!r}")

    @property
    def size_ns(self) -> int:
        """Step length in integer nanoseconds (time steps only)."""
        return round(self.size * 1_000_000_000)

    def to_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind, "size": self.size}

    @classmethod
    def parse(cls, text: str) -> StepSpec:
        """``"1s"``, ``"0.5s"`` or ``"100p"`` (100 packets)."""
        text = text.strip().lower()
        if text.endswith("p"):
            return cls("packets", float(int(text[:-1])))
        if text.endswith("s"):
            text = text[:-1]
        return cls("time", float(text))


def sliding_windows(steps: npt.NDArray[np.float32], length: int) -> npt.NDArray[np.float32]:
    """All windows of ``length`` consecutive steps, sliding by one: shape (S-T+1, T, F).

    A read-only view (no copy); rows are time steps, columns are features.
    """
    if steps.ndim != 2:
        raise ValueError(f"steps must be (S, F), got shape {steps.shape}")
    if steps.shape[0] < length:
        return np.zeros((0, length, steps.shape[1]), dtype=steps.dtype)
    view = np.lib.stride_tricks.sliding_window_view(steps, length, axis=0)
    return view.transpose(0, 2, 1)  # (S-T+1, F, T) -> (S-T+1, T, F)

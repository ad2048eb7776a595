"""How packets are grouped into steps, and how steps become windows.

A step is a fixed time interval (default 1 s), a fixed number of packets, or N packets or T
seconds, whichever comes first (``"20p/1s"``). Short, dense attack captures (MQTTset slowite:
6,447 packets in 0.6 s) need packet-count steps to yield enough samples; the time limit keeps
a trickle (one packet a second) from waiting 20 s for a step to fill. The bundle and saved
windows record which was used.

Windows of a stream may be *padded*: before T steps exist, the missing steps are all-zero rows
("nothing seen", which is what an empty time step is), so the first step of a stream already
gives a window. Training pads each recording's start the same way and the bundle records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

StepKind = Literal["time", "packets", "packets_or_time"]
STEP_KINDS: tuple[StepKind, ...] = ("time", "packets", "packets_or_time")
Padding = Literal["none", "zeros"]
PADDINGS: tuple[Padding, ...] = ("none", "zeros")
# Bounds any step must keep: a time in whole nanoseconds, neither zero nor past any capture, and
# a packet count a step buffer can hold (a config or a signed manifest may say anything)
MIN_STEP_SECONDS = 1e-6
MAX_STEP_SECONDS = 86_400.0
MAX_STEP_PACKETS = 1_000_000


@dataclass(frozen=True)
class StepSpec:
    """``kind="time"``: ``size`` seconds per step; ``kind="packets"``: ``size`` packets per step;
    ``kind="packets_or_time"``: ``size`` packets or ``seconds`` after the step's first packet,
    whichever comes first.
    """

    kind: StepKind = "time"
    size: float = 1.0
    seconds: float = 0.0  # the time limit of a packets_or_time step (0 for the other kinds)

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"step kind must be one of {', '.join(STEP_KINDS)}, got {self.kind!r}")
        if self.kind == "time":
            _check_seconds("step size", self.size)
        elif not 1 <= self.size <= MAX_STEP_PACKETS or int(self.size) != self.size:
            raise ValueError(
                f"a packet-count step must be a whole number 1..{MAX_STEP_PACKETS}, "
                f"got {self.size!r}"
            )
        if self.kind == "packets_or_time":
            _check_seconds("step seconds", self.seconds)
        elif self.seconds != 0:
            raise ValueError(f"only a packets_or_time step has seconds, got {self.seconds!r}")

    @property
    def counts_packets(self) -> bool:
        """Steps close on a packet count (``packets`` and ``packets_or_time``)."""
        return self.kind != "time"

    @property
    def size_ns(self) -> int:
        """Step length in integer nanoseconds (time steps only)."""
        return round(self.size * 1_000_000_000)

    @property
    def limit_ns(self) -> int:
        """Longest a step lasts in nanoseconds: the time step, the time limit, or 0 (packets)."""
        if self.kind == "time":
            return self.size_ns
        return round(self.seconds * 1_000_000_000)

    @property
    def text(self) -> str:
        """The short form ``parse`` reads: ``"1.0s"``, ``"20p"``, ``"20p/1.0s"``."""
        if self.kind == "time":
            return f"{self.size}s"
        if self.kind == "packets":
            return f"{int(self.size)}p"
        return f"{int(self.size)}p/{self.seconds}s"

    def to_dict(self) -> dict[str, float | str]:
        data: dict[str, float | str] = {"kind": self.kind, "size": self.size}
        if self.kind == "packets_or_time":
            data["seconds"] = self.seconds
        return data

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> StepSpec:
        """The inverse of ``to_dict``; ValueError names what is wrong."""
        kind, size, seconds = raw.get("kind"), raw.get("size"), raw.get("seconds", 0.0)
        if kind not in STEP_KINDS:
            raise ValueError(f"kind must be one of {', '.join(STEP_KINDS)}, got {kind!r}")
        for key, value in (("size", size), ("seconds", seconds)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
        return cls(kind, float(size), float(seconds))  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str) -> StepSpec:
        """``"1s"``, ``"0.5s"``, ``"100p"`` (100 packets) or ``"20p/1s"`` (whichever first)."""
        text = text.strip().lower()
        if "/" in text:
            count, _, limit = text.partition("/")
            packets, seconds = cls.parse(count), cls.parse(limit)
            if packets.kind != "packets" or seconds.kind != "time":
                raise ValueError(f"expected N packets / T seconds such as 20p/1s, got {text!r}")
            return cls("packets_or_time", packets.size, seconds.size)
        try:
            if text.endswith("p"):
                return cls("packets", float(int(text[:-1])))
            return cls("time", float(text.removesuffix("s")))
        except OverflowError:  # an integer wider than a float
            raise ValueError(f"step out of range: {text[:40]!r}") from None


def _check_seconds(name: str, value: float) -> None:
    """ValueError unless ``value`` seconds is a finite time within the step bounds."""
    if not MIN_STEP_SECONDS <= value <= MAX_STEP_SECONDS:  # NaN and inf fail too
        raise ValueError(
            f"{name} must be {MIN_STEP_SECONDS:g}..{MAX_STEP_SECONDS:g} seconds, got {value!r}"
        )


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


def lead_in(
    length: int,
    width: int,
    padding: str,
    fill: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """The rows that precede a stream's first step: ``length - 1`` pad rows, or none.

    ``fill`` is the pad row in the caller's units (training pads already scaled steps, so it
    passes the scaled image of an all-zero row); by default an all-zero raw row.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    rows = length - 1 if padding == "zeros" else 0
    row = np.zeros(width, np.float32) if fill is None else np.asarray(fill, np.float32)
    return np.repeat(row.reshape(1, width), max(rows, 0), axis=0)


def stream_windows(
    steps: npt.NDArray[np.float32],
    length: int,
    padding: str = "none",
    fill: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Windows of a stream from its first step: one per step when padded, else S-T+1.

    The agent's model slot starts its tail with the same ``lead_in``, so the windows it scores
    are these, bit for bit.
    """
    if padding == "none":
        return sliding_windows(steps, length)
    rows = np.concatenate((lead_in(length, steps.shape[1], padding, fill), steps), axis=0)
    return sliding_windows(rows.astype(steps.dtype, copy=False), length)

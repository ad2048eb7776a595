"""A stream's start period: a network booting, judged against its own ``unknown`` edge.

A stream's first windows (every device of a site connecting at once) score far from benign
once per boot, which a site calibration's tail fit never sees. Its start period is the first
``START_WINDOWS`` windows; where the calibration's own boot outlasted them (packet-count steps
come faster than a boot ends), also twice that boot's seconds, at most ``START_SECONDS``. The
edge for it is ``START_MARGIN`` x the highest score the calibration's start reached: a period
holds one boot, and one boot's highest is one draw (the bundle's signed start edge is set the
same way, from the training recordings' starts: ``training.openset``).

The agent (``agent.inference``, ``agent.openset.Fusion``) and the calibration that sets the edge
(``agent.calibration``) read the period from here. Numpy only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# A stream's first windows have their own unknown edge. The boot of development sites spent its
# far windows in the first 2; 10 leaves room for a slower one and ends seconds after start.
START_WINDOWS = 10
# ... and for the seconds a site's boot outlasts them, at most: at packet-count steps windows
# come faster than a boot ends (a development site's outlasted 10 windows of 20 packets by a
# second); 10 s are the 10 windows of the 1-s steps the count was chosen on
START_SECONDS = 10.0
# The start edge is this many times a start's highest score. Starts of benign generated streams
# of the training network (150 s, seeds 950-1009) scored up to 1.7 x the training recording's
# own start's highest; 950-959 so too with 3 model seeds. Where a site's next boot passed the
# one its calibration saw (development sites 461/462), it did by under 1.2 x.
START_MARGIN = 2.0
START_LIMIT = 1_000  # windows a start period holds at most: bounded collection at any rate


def starting(
    numbers: npt.NDArray[np.int64],
    elapsed_ns: npt.NDArray[np.int64] | None,
    windows: int,
    seconds: float,
) -> npt.NDArray[np.bool_]:
    """Which windows are in a stream's start period: its first ``windows``, and those whose last
    step began less than ``seconds`` after its first step (``elapsed_ns``, never negative: the
    clock went back), at most START_LIMIT."""
    at = np.asarray(numbers, np.int64)
    early = at < windows
    if seconds > 0 and elapsed_ns is not None:
        late = np.asarray(elapsed_ns, np.int64)
        # A live stream's clock is the wall clock: stepped back (NTP, an admin), a window
        # seems to end before the stream began. That is not its start: counted as one, every
        # window up to START_LIMIT would be judged at the lenient start edge again.
        early |= (at < START_LIMIT) & (late >= 0) & (late < int(seconds * 1e9))
    return early


def calibrated_start(
    start: npt.NDArray[np.float64],
    ends: npt.NDArray[np.int64] | None,
    steady: float,
    groups: tuple[float, ...] | None,
) -> tuple[float | None, float]:
    """The start edge and the seconds the period lasts past its windows, from a calibration's
    start-period scores (rows: raw, or raw then ratios to the signed group edges), their end
    times (None: windows only), the steady edge and the calibrated group edges.

    (None, 0.0) when the start stayed under the steady edge. A grouped model's start edge is
    in units of the largest ratio to the signed group edges.
    """
    seconds = boot_seconds(start, ends, steady, groups)
    rows = np.arange(len(start)) < START_WINDOWS
    if seconds > 0 and ends is not None:
        rows |= elapsed_seconds(start, ends) < seconds
    edge = start_edge(
        largest_ratio(np.asarray(start, np.float64)[rows]),
        1.0 if groups is not None else steady,
    )
    return edge, seconds if edge is not None else 0.0


def elapsed_seconds(
    start: npt.NDArray[np.float64], ends: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Seconds from the first seen start window's end to each one's (inf: not seen)."""
    seen = np.isfinite(raw_scores(start))
    at = np.asarray(ends, np.int64)
    if not seen.any():
        return np.full(len(at), np.inf)
    return np.where(seen, (at - at[np.argmax(seen)]) / 1e9, np.inf)


def boot_seconds(
    start: npt.NDArray[np.float64],
    ends: npt.NDArray[np.int64] | None,
    steady: float,
    groups: tuple[float, ...] | None,
) -> float:
    """How long the start period must last in seconds for the calibration's own boot: twice
    the time to its last window past the steady edge(s), at most START_SECONDS, and 0 when
    that came within the first START_WINDOWS windows (the window count covers it, and an
    attack under way at agent start is not held back by seconds another site's boot needs).
    Twice: no two boots last as long (on a development site the counted stretch's boot
    outlasted the calibration's by a fifth)."""
    if ends is None:
        return 0.0
    values = np.asarray(start, np.float64)
    if values.ndim == 2 and groups is not None:
        far = np.any(values[:, 1:] / np.asarray(groups, np.float64) >= 1.0, axis=1)
    else:
        far = raw_scores(values) >= steady  # NaN (not seen) is not far
    far[:START_WINDOWS] = False
    if not far.any():
        return 0.0
    last = float(elapsed_seconds(values, ends)[np.nonzero(far)[0][-1]])
    return min(START_SECONDS, 2.0 * last)


def start_edge(start: npt.NDArray[np.float64] | None, steady: float | None) -> float | None:
    """The stream start's edge: ``START_MARGIN`` x its highest finite score, when that is above
    the steady edge (None: the steady edge covers another boot too).

    A window at the edge is far from benign: a benign model's score saturates (an int8 output,
    a clipped summary), and another boot reaches the same highest score or more."""
    if start is None or steady is None:
        return None
    scores = np.asarray(start, np.float64)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        return None
    edge = START_MARGIN * float(scores.max())
    return edge if edge > steady else None


def raw_scores(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A window's raw score: itself, or a grouped model's first column."""
    values = np.asarray(scores, np.float64)
    return values[:, 0] if values.ndim == 2 else values


def largest_ratio(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A window's score: itself, or a grouped model's largest group ratio (NaN stays NaN)."""
    values = np.asarray(scores, np.float64)
    return values[:, 1:].max(axis=1) if values.ndim == 2 else values

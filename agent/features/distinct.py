"""Bounded distinct counting and entropy over hash buckets, exact in integers across chunks.

A gateway under a spoofed SYN flood sees tens of thousands of sources per step (the StopDDoS
capture has 37,623 in 24 s), so per-step distinct counts cannot keep a set of addresses.
Instead every key (a 128-bit address, a port) is mixed to 64 bits and dropped into one of a
fixed number of buckets (``BUCKETS`` = 2^14). Per step we keep only two integers per key kind:

* ``nonzero``: buckets hit. The distinct estimate is linear counting,
  ``m * ln(m / empty)`` (Whang et al. 1990): unbiased, within ~1 % up to a few times ``m``
  distinct keys, and close to the exact count for small steps (2 keys -> 2.0001).
* ``xlogx``: the sum over buckets of ``c * log2(c)`` in fixed point (``XLOGX_ONE`` units), so
  the Shannon entropy over bucket counts is ``log2(N) - xlogx / N``. It equals the entropy over
  keys while keys rarely share a bucket, and it saturates near ``log2(m)`` = 14 bits beyond.

Both are integers, so a step summarised from one chunk or from several is bit-identical.
Memory is one ``m``-bucket array per key kind for the step that is still open, whatever the
traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BUCKETS_LOG2 = 14
BUCKETS = 1 << BUCKETS_LOG2
XLOGX_ONE = 1 << 20  # fixed-point unit of the c*log2(c) sums
# Groups averaging fewer keys than this (packet-count steps) are sorted by a merge sort
_SMALL_GROUPS = 64
_TABLE_SIZE = 1 << 12  # c*log2(c) looked up below this (32 KB), computed above (busy steps)

_M1 = np.uint64(0x9E37_79B9_7F4A_7C15)
_M2 = np.uint64(0xBF58_476D_1CE4_E5B9)
_M3 = np.uint64(0x94D0_49BB_1331_11EB)


def _xlogx_fixed_formula(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``round(c * log2(c) * XLOGX_ONE)`` computed directly (0 for c <= 1)."""
    c = np.maximum(counts, 1).astype(np.float64)
    return np.rint(c * np.log2(c) * XLOGX_ONE).astype(np.int64)


_XLOGX_TABLE = _xlogx_fixed_formula(np.arange(_TABLE_SIZE, dtype=np.int64))
# linear-counting estimate indexed by the number of empty buckets; a full sketch saturates
_LINEAR_COUNT = BUCKETS * np.log(BUCKETS / np.maximum(np.arange(BUCKETS + 1), 1))


def mix64(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of a 128-bit key (splitmix64 finaliser over both words)."""
    h = hi * _M1
    h ^= lo
    h ^= h >> np.uint64(30)
    h *= _M2
    h ^= h >> np.uint64(27)
    h *= _M3
    h ^= h >> np.uint64(31)
    return h


def bucket_of(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """The bucket (0 .. BUCKETS-1) of each 128-bit key: the hash's top bits."""
    return (mix64(hi, lo) >> np.uint64(64 - BUCKETS_LOG2)).astype(np.int64)


def xlogx_fixed(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``c * log2(c)`` in ``XLOGX_ONE`` units, from a table so every path gets the same value."""
    small = counts < _TABLE_SIZE
    if bool(small.all()):
        return _XLOGX_TABLE[counts]
    out = np.empty(counts.shape, dtype=np.int64)
    out[small] = _XLOGX_TABLE[counts[small]]
    out[~small] = _xlogx_fixed_formula(counts[~small])
    return out


def distinct_estimate(nonzero: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Linear-counting estimate of distinct keys from the number of buckets hit."""
    estimate: npt.NDArray[np.float64] = _LINEAR_COUNT[BUCKETS - nonzero]
    return estimate


def entropy_bits(
    total: npt.NDArray[np.int64], xlogx: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Shannon entropy (bits) over bucket counts: ``log2(N) - sum(c log2 c) / N``; 0 when N=0."""
    n = np.maximum(total, 1).astype(np.float64)
    h = np.log2(n) - xlogx.astype(np.float64) / (XLOGX_ONE * n)
    return np.maximum(h, 0.0)  # fixed-point rounding can dip a hair below zero


@dataclass(frozen=True)
class BucketCounts:
    """Per-(group, bucket) counts of one chunk, sorted by group then bucket."""

    group: npt.NDArray[np.int64]
    bucket: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]

    @classmethod
    def of(cls, group: npt.NDArray[np.int64], bucket: npt.NDArray[np.int64]) -> BucketCounts:
        """Count each (group, bucket) pair; ``group`` is the step of each key, 0-based."""
        keys = _sorted_keys(group, bucket)
        if keys.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty)
        first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        count = np.diff(np.append(first, keys.size)).astype(np.int64)
        uniq = keys[first]
        return cls(uniq >> BUCKETS_LOG2, uniq & (BUCKETS - 1), count)

    def summaries(self, groups: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(nonzero, xlogx)`` for each of ``groups`` groups (zeros for a group with no keys)."""
        pos = np.searchsorted(self.group, np.arange(groups + 1))
        nonzero = np.diff(pos).astype(np.int64)
        cum = np.concatenate(([0], np.cumsum(xlogx_fixed(self.count))))
        return nonzero, (cum[pos[1:]] - cum[pos[:-1]]).astype(np.int64)

    def of_group(self, g: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """``(buckets, counts)`` of one group."""
        lo, hi = np.searchsorted(self.group, [g, g + 1])
        return self.bucket[lo:hi], self.count[lo:hi]


def _sorted_keys(
    group: npt.NDArray[np.int64], bucket: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """``np.sort(group * BUCKETS + bucket)``, by the cheapest sort that gives the same keys.

    numpy radix-sorts 16-bit integers: keys of up to four groups fit in 16 bits; else a
    stable radix pass by bucket, then one by group (groups of a chunk fit 16 bits), which is
    2-3x faster than sorting the int64 keys. Many small groups (packet-count steps) come
    nearly sorted, where a stable 32-bit merge sort is faster still.
    """
    keys = group * BUCKETS + bucket
    if keys.size == 0:
        return keys
    low, high = int(keys.min()), int(keys.max())
    if low < 0 or int(bucket.min()) < 0 or int(bucket.max()) >= BUCKETS:
        return np.sort(keys)  # not what the featurizer passes: the plain sort
    if high < 1 << 16:
        return np.sort(keys.astype(np.uint16), kind="stable").astype(np.int64)
    if high < 1 << 32 and keys.size < _SMALL_GROUPS * (int(group.max()) - int(group.min()) + 1):
        return np.sort(keys.astype(np.uint32), kind="stable").astype(np.int64)
    if int(group.max()) < 1 << 16:
        by_bucket = np.argsort(bucket.astype(np.uint16), kind="stable")
        order = by_bucket[np.argsort(group.astype(np.uint16)[by_bucket], kind="stable")]
        ordered: npt.NDArray[np.int64] = keys[order]
        return ordered
    return np.sort(keys)


class BucketSketch:
    """The open step's bucket counts: a fixed ``BUCKETS`` array, merged across chunks."""

    def __init__(self) -> None:
        self.counts = np.zeros(BUCKETS, dtype=np.int64)

    def add(self, buckets: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> None:
        """Add counts for distinct buckets (as :meth:`BucketCounts.of_group` yields them)."""
        self.counts[buckets] += counts

    def clear(self) -> None:
        """Forget the closed step."""
        self.counts.fill(0)

    def summary(self) -> tuple[int, int]:
        """``(nonzero, xlogx)``: the same integers :meth:`BucketCounts.summaries` gives."""
        hit = self.counts[self.counts > 0]
        return int(hit.size), int(xlogx_fixed(hit).sum())

    @property
    def nbytes(self) -> int:
        """Memory held: fixed at ``BUCKETS`` counters."""
        return int(self.counts.nbytes)

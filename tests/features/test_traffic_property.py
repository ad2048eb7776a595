"""Batch and incremental featurizing agree bit for bit, wherever a capture is cut."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agent.features.capture import read_capture
from agent.features.packets import COLUMNS, PacketTable
from agent.features.steps import StepSpec, sliding_windows
from agent.features.traffic import TRAFFIC_V1, Steps, TrafficFeaturizer, WindowBuffer, featurize

S = 1_000_000_000
T0 = 1_700_000_000 * S + 123_456_789
WINDOW = 4
SPECS = st.sampled_from(
    [
        StepSpec(),
        StepSpec("time", 0.25),
        StepSpec("packets", 1),
        StepSpec("packets", 7),
        StepSpec("packets_or_time", 7, 0.25),
        StepSpec("packets_or_time", 1, 1.0),
        StepSpec("packets_or_time", 20, 1.0),
    ]
)


@st.composite
def random_tables(draw: st.DrawFn) -> PacketTable:
    """Small tables with repeats, idle gaps of several steps and a few late timestamps."""
    n = draw(st.integers(0, 250))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gaps = rng.choice(
        [0, 1_000, 3_000_000, 300_000_000, 2_700_000_000], n, p=[0.2, 0.4, 0.3, 0.07, 0.03]
    )
    ts = T0 + np.cumsum(gaps)
    late = rng.random(n) < 0.05
    ts[late] -= rng.integers(0, 2 * S, int(late.sum()))
    pick = rng.integers
    return PacketTable.from_columns(
        ts_ns=ts,
        ip_len=pick(20, 1500, n),
        wire_len=pick(20, 1600, n),
        l3=rng.choice([0, 1, 4, 4, 4, 6], n),
        proto=rng.choice([0, 1, 6, 6, 17, 58], n),
        src_hi=pick(0, 2, n).astype(np.uint64),
        src_lo=pick(0, 40, n).astype(np.uint64),
        dst_lo=pick(0, 5, n).astype(np.uint64),
        sport=rng.choice([53, 1883, 40000, 40001], n),
        dport=pick(0, 30, n) + rng.choice([0, 1883, 443], n),
        tcp_flags=pick(0, 256, n),
        ttl=pick(0, 256, n),
        frag=pick(0, 4, n),
        payload_len=pick(0, 1400, n),
        mqtt_type=pick(0, 16, n),
        icmp_type=rng.choice([0, 8, 128], n),
        arp_op=pick(0, 3, n),
    )


def incremental(
    t: PacketTable, spec: StepSpec, cuts: list[int], advance: list[bool]
) -> tuple[Steps, np.ndarray]:
    """Feed ``t`` cut at ``cuts``; where asked, advance the clock as far as the next packet.

    The batch path puts that packet in the step of the latest timestamp up to it, so the
    clock may go that far without changing the result: the steps before close early.
    """
    f = TrafficFeaturizer(spec)
    buffer = WindowBuffer(WINDOW, width=TRAFFIC_V1.width)
    bounds = [0, *sorted(cuts), len(t)]
    parts: list[Steps] = []
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        parts.append(f.push(t.take(slice(lo, hi))))
        if advance[i % len(advance)] and hi > 0:
            parts.append(f.advance(int(t.ts_ns[: hi + 1].max())))
    parts.append(f.flush())
    steps = Steps.concat(parts)
    windows = np.concatenate([buffer.push(p) for p in parts])
    return steps, windows


def assert_identical(got: Steps, want: Steps) -> None:
    assert np.array_equal(got.start_ns, want.start_ns)
    assert np.array_equal(got.packets, want.packets)
    assert got.values.shape == want.values.shape
    assert np.array_equal(got.values.view(np.uint32), want.values.view(np.uint32))  # bit for bit


@settings(max_examples=300, deadline=None)
@given(
    t=random_tables(),
    spec=SPECS,
    cuts=st.lists(st.integers(0, 250), max_size=6),
    advance=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_any_split_gives_the_batch_result(
    t: PacketTable, spec: StepSpec, cuts: list[int], advance: list[bool]
) -> None:
    want = featurize(t, spec)
    got, windows = incremental(t, spec, [min(c, len(t)) for c in cuts], advance)
    assert_identical(got, want)
    assert np.array_equal(windows, sliding_windows(want.values, WINDOW))
    assert int(want.packets.sum()) == len(t)
    assert np.isfinite(want.values).all()


@st.composite
def garbage_tables(draw: st.DrawFn) -> PacketTable:
    """Any value in any column, timestamps anywhere in int64: what a broken reader might give."""
    n = draw(st.integers(0, 60))
    cols = {
        name: draw(hnp.arrays(np.dtype(dtype), n, elements=hnp.from_dtype(np.dtype(dtype))))
        for name, dtype in COLUMNS.items()
    }
    return PacketTable.from_columns(**cols)


@settings(max_examples=200, deadline=None)
@given(t=garbage_tables(), spec=SPECS, cut=st.integers(0, 60))
def test_garbage_never_raises(t: PacketTable, spec: StepSpec, cut: int) -> None:
    want = featurize(t, spec)
    assert int(want.packets.sum()) == len(t)
    assert np.isfinite(want.values).all()
    assert (want.values >= 0).all()
    got, _ = incremental(t, spec, [min(cut, len(t))], [True])
    assert_identical(got, want)


@pytest.fixture(scope="module")
def real_tables(datasets: Path) -> list[PacketTable]:
    """Real MQTTset captures: one short and dense, one long with idle seconds."""
    folder = datasets / "mqttset_reduced_pcap"
    return [
        read_capture(folder / name).packets
        for name in ("malariados-train.pcap", "benign-train.pcap")
    ]


@settings(max_examples=40, deadline=None)
@given(
    which=st.integers(0, 1),
    spec=SPECS,
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=6),
    advance=st.lists(st.booleans(), min_size=1, max_size=4),
)
def test_real_capture_any_split(
    real_tables: list[PacketTable],
    which: int,
    spec: StepSpec,
    fractions: list[float],
    advance: list[bool],
) -> None:
    t = real_tables[which]
    want = featurize(t, spec)
    got, windows = incremental(t, spec, [int(f * len(t)) for f in fractions], advance)
    assert_identical(got, want)
    assert np.array_equal(windows, sliding_windows(want.values, WINDOW))


def test_a_timestamp_at_int64s_edge_opens_a_step_without_overflow() -> None:
    # Found by the garbage test: the first second of a timestamp within a second of int64's
    # minimum starts before it, which the int64 step-start arrays cannot hold.
    cols = {name: np.zeros(3, np.dtype(dtype)) for name, dtype in COLUMNS.items()}
    cols["ts_ns"] = np.array([-9_223_372_036_000_000_001] * 2 + [0], np.int64)
    table = PacketTable.from_columns(**cols)
    featurizer = TrafficFeaturizer(StepSpec("time", 1.0))
    steps = [featurizer.push(table.take(slice(0, 1))), featurizer.push(table.take(slice(1, None)))]
    steps.append(featurizer.flush())
    assert sum(len(s.start_ns) for s in steps) >= 2

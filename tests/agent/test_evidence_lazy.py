"""Evidence summarised only when an event needs it is the evidence summarised at once.

``StepEvidence`` keeps a batch's packets and summarises steps on first use; the model slot
keeps such batches for its last ``window - 1`` steps, bounded by ``MAX_PENDING_PACKETS``.
Whatever is summarised when, the events (evidence included) must be byte-identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import agent.inference
import agent.sources.pcap
from agent.bundle import Bundle, load_bundle
from agent.event import comparable
from agent.evidence import (
    Evidence,
    StepEvidence,
    held_packets,
    join_evidence,
    step_evidence,
)
from agent.features.capture import read_capture
from agent.features.packets import IPV4_MAPPED_LO_PREFIX, PacketTable
from agent.inference import Debounce, ModelSlot
from agent.replay import replay_capture
from agent.sources.traffic_steps import TrafficStepper
from tests.agent.flood_bundle import FloodKit, flood_kit


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> FloodKit:
    return flood_kit(tmp_path_factory.mktemp("lazy"))


@pytest.fixture(scope="module")
def bundle(kit: FloodKit) -> Bundle:
    return load_bundle(kit.bundle, [kit.public_key.read_bytes()])


def _packets(rng: np.random.Generator, n: int) -> PacketTable:
    """Few addresses and ports, so counts tie and top lists are cut at k."""
    hosts = IPV4_MAPPED_LO_PREFIX | rng.integers(1, 9, n).astype(np.uint64)
    return PacketTable.from_columns(
        ts_ns=np.arange(n),
        src_lo=hosts,
        src_hi=np.where(rng.random(n) < 0.1, np.uint64(0x20010DB8 << 32), np.uint64(0)),
        dst_lo=IPV4_MAPPED_LO_PREFIX | rng.integers(1, 4, n).astype(np.uint64),
        dport=rng.choice([0, 22, 80, 443, 1883, 8080, 53], n),
        wire_len=rng.integers(60, 1500, n),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_steps_summarised_in_any_order_match_all_at_once(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = rng.choice([0, 0, 1, 3, 20, 200], 40)  # empty steps among busy ones
    table = _packets(rng, int(counts.sum()))
    ends = np.cumsum(counts).astype(np.int64)
    step = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    expected = step_evidence(table, step, len(counts))
    lazy = StepEvidence(table, ends)
    assert held_packets(lazy) == len(table)
    for _ in range(12):  # overlapping ranges, in random order, as windows ask for them
        start = int(rng.integers(0, len(counts)))
        lazy.summarise(start, start + int(rng.integers(1, 17)))
    order = rng.permutation(len(counts))
    assert [lazy[i] for i in order] == [expected[i] for i in order]
    assert list(lazy) == expected
    assert list(lazy[3:19]) == expected[3:19]
    assert held_packets(lazy) == 0  # every step summarised: its packets are gone
    one_by_one = StepEvidence(table, ends)
    assert [one_by_one[i] for i in range(len(counts))] == expected
    assert any(e is None for e in expected)
    assert any(e is not None and len(e.top_sources) == 5 for e in expected)


def test_joined_batches_read_as_one_and_stay_lazy() -> None:
    rng = np.random.default_rng(7)
    first, second = _packets(rng, 50), _packets(rng, 30)
    a = StepEvidence(first, np.array([20, 20, 50], np.int64))
    b = StepEvidence(second, np.array([30], np.int64))
    joined = join_evidence(a, b)
    assert len(joined) == 4
    assert held_packets(joined) == 80
    assert joined[3] == step_evidence(second, np.zeros(30, np.int64), 1)[0]
    assert held_packets(joined) == 50  # the second batch is summarised, the first waits
    assert joined[1] is None
    assert joined[-1] is joined[3]
    assert join_evidence((), b) is b


def _strip(events: list[Any]) -> list[dict[str, Any]]:
    return comparable(e.to_dict() for e in events)


def _eager(
    self: TrafficStepper, starts: Any, counts: Any, exact: Any = None
) -> tuple[Evidence | None, ...]:
    """Every step summarised as soon as it closes (how the stepper worked before)."""
    return tuple(_lazy_evidence(self, starts, counts, exact))


_lazy_evidence = TrafficStepper._evidence


@pytest.mark.parametrize("chunk", [8192, 300])
def test_replay_events_are_identical_however_evidence_is_summarised(
    kit: FloodKit, bundle: Bundle, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(agent.sources.pcap, "FAST_CHUNK", chunk)  # windows across batches
    ended = Debounce(hold=0.0)  # the end decided on a window, with evidence (not at shutdown)
    lazy = _strip(replay_capture(bundle, kit.capture, debounce=ended).events)
    with monkeypatch.context() as m:
        m.setattr(agent.inference, "MAX_PENDING_PACKETS", 0)  # the tail summarised at once
        bounded = _strip(replay_capture(bundle, kit.capture, debounce=ended).events)
    with monkeypatch.context() as m:
        m.setattr(TrafficStepper, "_evidence", _eager)
        eager = _strip(replay_capture(bundle, kit.capture, debounce=ended).events)
    assert {e["type"] for e in eager} == {"new", "update", "end"}
    assert all(e["evidence"]["packets"] > 0 for e in eager)
    assert lazy == eager
    assert bounded == eager


def test_the_slot_keeps_at_most_the_bound_unsummarised(
    kit: FloodKit, bundle: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound = 500
    monkeypatch.setattr(agent.inference, "MAX_PENDING_PACKETS", bound)
    table = read_capture(kit.capture).packets
    stepper = TrafficStepper(bundle.manifest.step)
    slot = ModelSlot("cnn", "lan", stepper.feature_set, stepper.step, bundle)
    held = []
    for start in range(0, len(table), 700):
        slot.push(stepper.push(table.take(slice(start, start + 700))))
        batches = {id(seq): seq for seq, _ in slot._evidence}
        held.append(sum(held_packets(seq) for seq in batches.values()))
    assert max(held) <= bound
    assert max(held) > 0  # quiet stretches stay lazy under the bound


def test_a_lazy_batch_keeps_its_own_copy_of_the_packets() -> None:
    rng = np.random.default_rng(3)
    table = _packets(rng, 100)
    lazy = StepEvidence(table, np.array([100], np.int64))
    expected = step_evidence(table, np.zeros(100, np.int64), 1)[0]
    table.src_lo[:] = 0  # a copy, not a view: the decoded chunk itself can be freed
    assert lazy[0] == expected

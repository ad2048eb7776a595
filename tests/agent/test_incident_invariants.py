"""The incident state machine on random streams: every detection opened is closed once, in order.

Random labels on many victims and senders, with pauses, through a decider that holds quiet
detections (``hold``), merges by targets and supersedes on raises: whatever the stream, each
``new`` is followed by updates of that detection only until its single ``end``, nothing
follows an ``end``, an ``end`` never says a time after it was decided, and the dormant
detections kept stay bounded (at each raise; the active ones that go quiet after it add one a
label).
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.decide import MAX_DORMANT, Decider, DecisionPolicy, Event, Evidence

LABELS = ("benign", "syn_flood", "mqtt_bruteforce", "udp_scan", "unknown")
SECOND = 1_000_000_000


def _stream(seed: int, n: int) -> list[tuple[int | None, Evidence]]:
    rng = np.random.default_rng(seed)
    victims = [f"10.0.{v // 250}.{v % 250 + 1}" for v in range(400)]
    plan: list[tuple[int | None, Evidence]] = []
    while len(plan) < n:
        label = int(rng.integers(1, len(LABELS))) if rng.random() < 0.6 else None
        length = int(rng.integers(1, 12))
        victim = victims[int(rng.integers(0, len(victims)))]
        sender = f"192.0.2.{int(rng.integers(1, 200))}"
        port = int(rng.choice([22, 80, 1883, 161]))
        shown = Evidence(
            packets=40,
            top_sources=((sender, 40),),
            top_destinations=((victim, 40),),
            top_ports=((port, 40),),
        )
        plan += [(label, shown)] * length
    return plan[:n]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("hold", [30.0, 1800.0])  # the long hold fills and evicts the dormant
def test_random_streams_keep_every_detection_whole(seed: int, hold: float) -> None:
    policy = DecisionPolicy.from_manifest(
        LABELS, {}, {}, raise_k=2, raise_n=3, clear_m=2, quiet_s=2.0, update_s=3.0, hold_s=hold
    )
    decider = Decider(policy, "m", "lan")
    events: list[Event] = []
    most_dormant = 0
    for t, (label, shown) in enumerate(_stream(seed, 3000)):
        row = np.full(len(LABELS), 0.05)
        row[label if label is not None else 0] = 0.9
        events += decider.observe(t * SECOND, row, shown)
        most_dormant = max(most_dormant, sum(inc.dormant for inc in decider._incidents))
    events += decider.close(3000 * SECOND)
    assert sum(e.kind == "new" for e in events) > 100  # the stream did raise and supersede
    # bounded: checked at each raise; the active ones that go quiet after it add one a label
    assert most_dormant <= MAX_DORMANT + len(LABELS) - 1
    if hold > 1000:
        assert most_dormant > MAX_DORMANT // 2  # the bound was approached, not idle
    state: dict[str, str] = {}
    for e in events:
        if e.kind == "new":
            assert e.id not in state
        else:
            assert state.get(e.id) == "open", f"{e.kind} for {e.id[:8]} after {state.get(e.id)}"
        if e.kind == "end":
            assert e.ended_ns is not None
            assert e.ended_ns <= e.time_ns
            state[e.id] = "ended"
        else:
            state[e.id] = "open"
    assert all(s == "ended" for s in state.values())  # close() ended every one
    assert decider.active_labels == []

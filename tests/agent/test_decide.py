"""Debounced decisions: k of n to raise, m clean windows to end, one id per detection."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from agent.decide import Decider, DecisionPolicy, Evidence, address_text, packet_evidence
from agent.features.packets import IPV4_MAPPED_LO_PREFIX, PacketTable

LABELS = ("benign", "ddos", "scan")


def _decider(**kw: int) -> Decider:
    policy = DecisionPolicy.from_manifest(
        LABELS,
        {"benign": "benign", "ddos": "dos", "scan": "recon"},
        {"ddos": 0.6, "scan": 0.8},
        **kw,
    )
    return Decider(policy, model_id="m-1", source="lan")


def _feed(decider: Decider, rows: list[tuple[float, float, float]]) -> list[list[str]]:
    out = []
    for t, row in enumerate(rows):
        events = decider.observe(t * 1_000_000_000, np.asarray(row), Evidence(packets=10))
        out.append([f"{e.kind}:{e.label}" for e in events])
    return out


def test_k_of_n_raises_and_m_clean_windows_end() -> None:
    decider = _decider(raise_k=2, raise_n=3, clear_m=2)
    hit, clean = (0.1, 0.9, 0.0), (0.9, 0.1, 0.0)
    got = _feed(decider, [hit, clean, hit, hit, clean, hit, clean, clean, clean])
    assert got == [[], [], ["new:ddos"], [], [], [], [], ["end:ddos"], []]


def test_a_single_spike_does_not_raise() -> None:
    decider = _decider(raise_k=2, raise_n=3)
    hit, clean = (0.1, 0.9, 0.0), (0.9, 0.1, 0.0)
    assert _feed(decider, [hit, clean, clean, hit, clean, clean]) == [[]] * 6


def test_a_window_above_raise_score_raises_at_once() -> None:
    sure, unsure, clean = (0.0, 0.99, 0.01), (0.3, 0.7, 0.0), (0.9, 0.1, 0.0)
    fast = DecisionPolicy.from_manifest(
        LABELS, {"ddos": "dos", "scan": "recon"}, {"ddos": 0.6}, raise_score=0.98
    )
    assert _feed(Decider(fast, "m-1", "lan"), [sure]) == [["new:ddos"]]
    # below raise_score the k-of-n rule still applies
    assert _feed(Decider(fast, "m-2", "lan"), [unsure, clean]) == [[], []]
    # the default policy has no fast path: one sure window is still a single spike
    assert _feed(_decider(raise_k=2, raise_n=3), [sure, clean]) == [[], []]


def test_per_class_thresholds_and_benign_never_raises() -> None:
    decider = _decider(raise_k=1, raise_n=1)
    # scan at 0.7 is below its 0.8 threshold; benign at 1.0 never raises
    assert _feed(decider, [(0.3, 0.0, 0.7), (1.0, 0.0, 0.0)]) == [[], []]
    assert _feed(decider, [(0.0, 0.0, 0.85)]) == [["new:scan"]]


def test_lifecycle_keeps_one_id_tracks_peak_and_updates() -> None:
    policy = DecisionPolicy(("ddos",), ("dos",), (0.5,), 1, 1, 2, update_every=2)
    decider = Decider(policy, "m-1", "lan")
    scores = [0.6, 0.9, 0.7, 0.8, 0.1, 0.2]
    events = []
    for t, s in enumerate(scores):
        events += decider.observe(t * 10**9, np.asarray([s]), Evidence(packets=t))
    assert [e.kind for e in events] == ["new", "update", "end"]
    assert len({e.id for e in events}) == 1
    uuid.UUID(events[0].id, version=4)
    end = events[-1]
    assert end.peak == pytest.approx(0.9)
    assert end.score == pytest.approx(0.2)
    assert end.started_ns == 0
    assert end.ended_ns == 5 * 10**9
    assert end.windows == 6
    payload = end.to_dict()
    assert payload["type"] == "end"
    assert payload["category"] == "flood"  # the family of the old bundle's "dos"
    assert payload["labels"] == {"ddos": 4}
    assert payload["model"] == "m-1"
    assert payload["end"] == 5.0
    assert payload["detection"] == end.id
    assert payload["peak_score"] == pytest.approx(0.9)
    assert payload["schema"] == "iotids.event/1"
    assert payload["id"] != end.to_dict()["id"]  # one id per message, for de-duplication
    assert payload["evidence"]["packets"] == 5
    # a new detection after the end gets a fresh id
    again = decider.observe(6 * 10**9, np.asarray([0.9]), Evidence())
    assert again[0].kind == "new"
    assert again[0].id != end.id


def test_close_ends_open_events() -> None:
    decider = _decider(raise_k=1, raise_n=1)
    _feed(decider, [(0.0, 0.9, 0.9)])
    assert decider.active_labels == ["ddos", "scan"]
    ended = decider.close(42)
    # both labels raised on the same window and targets: one incident, one end
    assert [e.kind for e in ended] == ["end"]
    assert dict(ended[0].labels) == {"ddos": 1, "scan": 1}
    assert decider.active_labels == []


def test_nan_scores_never_hit_and_wrong_width_is_refused() -> None:
    decider = _decider(raise_k=1, raise_n=1)
    assert _feed(decider, [(np.nan, np.nan, np.nan)]) == [[]]
    with pytest.raises(ValueError, match="expected 3 scores"):
        decider.observe(0, np.zeros(2), Evidence())


def test_packet_evidence_names_busiest_sources_and_ports() -> None:
    v4 = IPV4_MAPPED_LO_PREFIX | np.uint64(0x0A000001)  # 10.0.0.1
    other = IPV4_MAPPED_LO_PREFIX | np.uint64(0xC0A80102)  # 192.168.1.2
    table = PacketTable.from_columns(
        ts_ns=np.arange(6),
        src_lo=np.array([v4, v4, v4, v4, other, 1], np.uint64),
        src_hi=np.array([0, 0, 0, 0, 0, 0x20010DB8 << 32], np.uint64),
        dport=np.array([80, 80, 80, 22, 22, 0]),
        wire_len=np.full(6, 100),
    )
    ev = packet_evidence(table, k=2)
    assert ev.packets == 6
    assert ev.bytes == 600
    assert ev.top_sources == (("10.0.0.1", 4), ("192.168.1.2", 1))
    assert ev.top_ports == ((80, 3), (22, 2))
    merged = Evidence.merge([ev, None, ev])
    assert merged.packets == 12
    assert merged.top_sources[0] == ("10.0.0.1", 8)
    assert address_text(0x20010DB8 << 32, 1) == "2001:db8::1"

"""A live stream's clock is the wall clock, which NTP or an admin may step by hours or months
while the agent runs (a Pi has no RTC): detections, site calibration and the stream's start
period keep real ages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.bundle import load_bundle, load_public_key
from agent.calibration_collect import Collector
from agent.decide import Decider, DecisionPolicy, Event, Evidence
from agent.features.capture import read_capture
from agent.features.traffic import TRAFFIC_V1, featurize
from agent.inference import Debounce, ModelSlot
from agent.sources import StepBatch
from tests.agent.bundles import flood_frames, pcap_bytes
from tests.agent.flood_bundle import flood_kit

LABELS = ("benign", "syn_flood")
SECOND = 1_000_000_000
HOUR = 3600 * SECOND
VICTIM = Evidence(packets=50, top_destinations=(("10.0.0.5", 50),), top_ports=((80, 50),))


def _decider() -> Decider:
    policy = DecisionPolicy.from_manifest(
        LABELS, {}, {}, raise_k=2, raise_n=3, clear_m=3, quiet_s=3.0, hold_s=30.0
    )
    return Decider(policy, "m-1", "lan")


def _scores(pattern: str) -> np.ndarray:
    rows = np.zeros((len(pattern), len(LABELS)))
    for k, c in enumerate(pattern):
        rows[k, 1 if c == "x" else 0] = 0.9
    return rows


def _feed(decider: Decider, t0: int, pattern: str, many: bool) -> list[Event]:
    times = t0 + np.arange(len(pattern), dtype=np.int64) * SECOND
    scores = _scores(pattern)
    if many:
        return decider.observe_many(times, scores, lambda k: VICTIM)[0]
    events: list[Event] = []
    for t, row in zip(times, scores, strict=True):
        events += decider.observe(int(t), row, VICTIM)
    return events


def _dormant_then_clock_back(many: bool) -> tuple[list[Event], list[Event]]:
    decider = _decider()
    before = _feed(decider, 10 * HOUR, "xxxxxx" + "." * 8, many)  # dormant: quiet, held
    assert [e.kind for e in before] == ["new"]
    after = _feed(decider, 9 * HOUR, "." * 40, many)  # the clock stepped back an hour
    return before, after


def test_a_dormant_detection_ends_after_its_hold_when_the_clock_goes_back() -> None:
    for many in (False, True):
        before, after = _dormant_then_clock_back(many)
        assert [e.kind for e in after] == ["end"], many  # not an hour later
        end = after[0]
        # ended at its last hit, carried onto the clock as it is now; 30 s hold kept
        assert end.id == before[0].id
        last_hit = 9 * HOUR - 8 * SECOND  # 8 quiet windows before the jump (their ages kept)
        assert end.ended_ns == last_hit, (end.ended_ns - last_hit) / SECOND
        assert 29 * SECOND <= end.time_ns - end.ended_ns <= 31 * SECOND


def test_an_active_detection_ends_and_updates_when_the_clock_goes_back() -> None:
    decider = _decider()
    assert [e.kind for e in _feed(decider, 10 * HOUR, "xxxx", many=False)] == ["new"]
    after = _feed(decider, 9 * HOUR, "x" * 10 + "." * 40, many=False)
    kinds = [e.kind for e in after]
    assert "update" in kinds  # updates come due on the new clock, not an hour later
    assert kinds[-1] == "end"


def test_calibration_counts_the_period_it_saw_whatever_the_clock_did() -> None:
    day = 24 * HOUR
    collector = Collector(labels=2, capacity=100, max_gap_ns=2 * SECOND)
    probabilities = np.full((10, 2), 0.5)

    def add(t0: int) -> None:
        ends = t0 + np.arange(10, dtype=np.int64) * SECOND
        collector.add(ends, probabilities, None, np.zeros(10, bool))

    add(100 * day)
    add(100 * day + 10 * SECOND)
    assert collector.seconds == 19.0
    add(100 * day - 200 * day)  # stepped back 200 days: the period goes on, not back
    assert collector.seconds == 28.0
    add(day)  # and ahead a hundred days: one step at most, not a finished 24-h period
    assert collector.seconds == 39.0


def test_a_step_back_after_the_start_period_does_not_start_it_again(tmp_path: Path) -> None:
    # a minute in, the clock goes back an hour: the windows after it seemed to end before the
    # stream began, and each up to the 1,000th was judged at the lenient start edge again (and
    # learnt by a calibration as the site's boot)
    kit = flood_kit(tmp_path / "kit")
    bundle = load_bundle(kit.bundle, [load_public_key(kit.public_key)])
    frames, _ = flood_frames(calm_s=120, flood_s=0, calm_after_s=0)
    capture = tmp_path / "calm.pcap"
    capture.write_bytes(pcap_bytes(frames))
    steps = featurize(read_capture(capture).packets, bundle.manifest.step)
    slot = ModelSlot("m", "lan", TRAFFIC_V1, bundle.manifest.step, bundle, Debounce())
    early: list[int] = []
    slot.on_scores = lambda ends, p, a, busy, numbers, start: early.extend(numbers[start].tolist())
    start_ns = np.asarray(steps.start_ns, np.int64).copy()
    start_ns[60:] -= HOUR
    for i in range(0, len(start_ns), 10):
        slot.push(StepBatch(start_ns[i : i + 10], steps.values[i : i + 10]))
    assert len(start_ns) > 100
    assert early == list(range(10))

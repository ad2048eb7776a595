"""``Decider.observe_many`` (the quiet-run fast path) gives exactly ``observe``'s events."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.decide import Decider, DecisionPolicy, Evidence
from agent.event import comparable

LABELS = ("benign", "ddos", "scan")


def _policy(**kw: Any) -> DecisionPolicy:
    return DecisionPolicy.from_manifest(
        LABELS, {"benign": "benign", "ddos": "dos", "scan": "recon"}, {"default": 0.5}, **kw
    )


def _stream(seed: int, n: int) -> np.ndarray:
    """Mostly quiet windows with bursts of attack scores (some isolated single hits)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 0.45, (n, len(LABELS)))
    for start in rng.integers(0, n - 40, 12):
        length = int(rng.integers(1, 30))
        label = int(rng.integers(1, len(LABELS)))
        scores[start : start + length, label] = rng.uniform(0.3, 0.99, length)
    return scores


def _evidence(k: int) -> Evidence:
    return Evidence(k, 60 * k, top_destinations=((f"10.0.0.{k % 3}", 1),), top_ports=((80, 1),))


def _strip(events: list[Any]) -> list[dict[str, Any]]:
    return comparable(e.to_dict() for e in events)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 7, 64, 5000])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"quiet_s": 0.5, "raise_score": 0.95},
        {"quiet_s": 0.5, "hold_s": 3.0},
        {"quiet_s": 0.5, "hold_s": 3.0, "recur_s": 600.0},
    ],
)
def test_observe_many_matches_observe(seed: int, chunk: int, kw: dict[str, Any]) -> None:
    scores = _stream(seed, 2000)
    times = np.arange(len(scores), dtype=np.int64) * 50_000_000  # 20 windows a second
    one = Decider(_policy(**kw), "m", "s")
    expected: list[Any] = []
    expected_busy = []
    for k, row in enumerate(scores):
        expected_busy.append(one.busy)
        expected += one.observe(int(times[k]), row, _evidence(k))
    many = Decider(_policy(**kw), "m", "s")
    got: list[Any] = []
    busy: list[bool] = []
    for start in range(0, len(scores), chunk):
        part = slice(start, start + chunk)

        def at(k: int, start: int = start) -> Any:
            return lambda: _evidence(start + k)

        events, flags = many.observe_many(times[part], scores[part], at)
        got += events
        busy += flags.tolist()
    assert len(expected) > 10  # the stream raises, updates and ends incidents
    assert {e.kind for e in expected} == {"new", "update", "end"}
    if kw.get("hold_s"):  # some detections went dormant and ended at their last hit
        assert any(e.kind == "end" and e.ended_ns != e.time_ns for e in expected)
    if kw.get("recur_s"):  # some detections recur an ended one
        assert any(e.recurrence > 0 for e in expected)
    assert _strip(got) == _strip(expected)
    assert busy == expected_busy


def _floods(seed: int, n: int) -> np.ndarray:
    """Long floods read as one or two labels at once, scores rounded so that some tie."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(0, 0.45, (n, len(LABELS))), 2)
    for start in rng.integers(0, n - 400, 6):
        length = int(rng.integers(50, 400))
        for label in rng.choice([1, 2], int(rng.integers(1, 3)), replace=False):
            scores[start : start + length, label] = np.round(rng.uniform(0.4, 0.99, length), 1)
    return scores


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
@pytest.mark.parametrize("chunk", [3, 64, 5000])
@pytest.mark.parametrize(
    "kw",
    [{"quiet_s": 0.5, "update_s": 5.0}, {"quiet_s": 0.5, "hold_s": 3.0, "update_s": 0.3}, {}],
)
def test_observe_many_matches_observe_under_floods(
    seed: int, chunk: int, kw: dict[str, Any]
) -> None:
    # the flood path extends an open detection many windows at once: same events, same state
    scores = _floods(seed, 3000)
    times = np.arange(len(scores), dtype=np.int64) * 50_000_000
    one = Decider(_policy(**kw), "m", "s")
    expected: list[Any] = []
    for k, row in enumerate(scores):
        expected += one.observe(int(times[k]), row, _evidence(k))
    expected += one.close(int(times[-1]))
    many = Decider(_policy(**kw), "m", "s")
    got: list[Any] = []
    for start in range(0, len(scores), chunk):
        part = slice(start, start + chunk)

        def at(k: int, start: int = start) -> Any:
            return lambda: _evidence(start + k)

        got += many.observe_many(times[part], scores[part], at)[0]
    got += many.close(int(times[-1]))
    assert sum(e.kind == "update" for e in expected) > 5  # floods long enough to update
    assert _strip(got) == _strip(expected)


def test_observe_many_checks_the_score_width() -> None:
    with pytest.raises(ValueError, match="expected 3 scores"):
        Decider(_policy(), "m", "s").observe_many(
            np.zeros(2, np.int64), np.zeros((2, 2)), lambda k: Evidence
        )


def test_a_batched_flood_forgets_earlier_loose_hits() -> None:
    # a scan window on other targets inside a flood, 18 flood windows, then one more scan
    # window: two scan hits 19 windows apart must not add up to a raise (k = 2 of n = 3)
    victim = Evidence(50, 3000, top_destinations=(("10.0.0.5", 50),), top_ports=((80, 50),))
    other = Evidence(50, 3000, top_destinations=(("10.0.9.9", 50),), top_ports=((22, 50),))
    rows = [(1, victim), (1, victim), (3, other)] + [(1, victim)] * 18 + [(2, other)]
    scores = np.zeros((len(rows), len(LABELS)))
    for k, (which, _) in enumerate(rows):
        scores[k, 1] = 0.9 if which & 1 else 0.1  # ddos
        scores[k, 2] = 0.9 if which & 2 else 0.1  # scan
    times = np.arange(len(rows), dtype=np.int64) * 50_000_000
    policy = {"raise_k": 2, "raise_n": 3, "update_s": 100.0}
    one = Decider(_policy(**policy), "m", "s")
    expected: list[Any] = []
    for k, (_, shown) in enumerate(rows):
        expected += one.observe(int(times[k]), scores[k], shown)
    many = Decider(_policy(**policy), "m", "s")
    got = many.observe_many(times, scores, lambda k: lambda: rows[k][1])[0]
    assert [(e.kind, e.label) for e in expected] == [("new", "ddos")]
    assert _strip(got) == _strip(expected)

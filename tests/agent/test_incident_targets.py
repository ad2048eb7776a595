"""An attack that starts inside another open detection: targets are where a window's traffic
went (its bulk, not every busy address), and a hit that went elsewhere raises its own alarm.

The case from the open-set benchmark: a benign download raises ``unknown``, then a flood on the
broker begins while that detection is still open (or dormant). Every window's top list names
the broker, which all sensors publish to, so by top lists alone the two shared a target.
"""

from __future__ import annotations

import numpy as np

from agent.decide import Decider, DecisionPolicy, Event, Evidence, Targets

LABELS = ("benign", "syn_flood", "unknown")
SECOND = 1_000_000_000
BROKER = "10.0.0.1"
# a download to a camera: its bulk to 10.0.0.40, the broker's everyday publishes beside it
DOWNLOAD = Evidence(
    packets=2300,
    top_destinations=(("10.0.0.40", 1500), ("198.51.100.20", 650), (BROKER, 120)),
    top_ports=((43995, 1500), (443, 650), (1883, 120)),
)
# a flood on the broker, the camera's stream beside it
FLOOD = Evidence(
    packets=1400,
    top_destinations=((BROKER, 980), ("10.0.0.66", 300), ("10.0.0.40", 110)),
    top_ports=((1883, 860), (49812, 300), (5004, 110)),
)
# a slow attack on the broker: few packets, most of them still the broker's
SLOW = Evidence(
    packets=400,
    top_destinations=((BROKER, 300), ("10.0.0.66", 64), ("10.0.0.100", 24)),
    top_ports=((1883, 140), (5004, 110), (22, 46)),
)


def _decider(hold: float = 0.0) -> Decider:
    """1 s windows, the agent's defaults: updates every 5 windows, quiet after 3 s."""
    policy = DecisionPolicy.from_manifest(LABELS, {}, {}, quiet_s=3.0, update_s=5.0, hold_s=hold)
    return Decider(policy, "m-1", "lan")


def _run(decider: Decider, plan: list[tuple[str | None, Evidence]]) -> list[Event]:
    events: list[Event] = []
    for t, (label, evidence) in enumerate(plan):
        row = np.zeros(len(LABELS))
        row[LABELS.index(label or "benign")] = 0.9
        events += decider.observe(t * SECOND, row, evidence)
    return events


def test_targets_are_the_bulk_of_a_window() -> None:
    assert Targets.of(DOWNLOAD) == Targets(("10.0.0.40",), (43995,))
    assert Targets.of(FLOOD) == Targets((BROKER,), (1883,))
    # no address carries half: the busiest ones until half is carried
    even = Evidence(packets=90, top_destinations=(("a", 30), ("b", 30), ("c", 30)))
    assert Targets.of(even).addresses == ("a", "b")
    # top lists merged from several steps may count more than ``packets`` says
    merged = Evidence(packets=0, top_ports=((1, 4), (2, 4), (3, 2)))
    assert Targets.of(merged).ports == (1, 2)
    assert Targets.of(Evidence()) == Targets()
    # the broker is in both top lists, not in both bulks
    assert not Targets.of(DOWNLOAD).overlaps(Targets.of(FLOOD))


def test_a_flood_inside_an_open_unknown_raises_its_own_detection() -> None:
    decider = _decider()
    plan = [("unknown", DOWNLOAD)] * 4 + [("unknown", FLOOD)] * 12 + [(None, FLOOD)] * 6
    events = _run(decider, plan)
    news = [e for e in events if e.kind == "new"]
    assert [(e.label, e.time_ns // SECOND) for e in news] == [("unknown", 1), ("unknown", 6)]
    download, flood = news
    assert download.id != flood.id
    # raised when the download's detection was due its update: the hit went elsewhere
    assert Targets.of(flood.evidence) == Targets((BROKER,), (1883,))
    # the flood's hits are its own from then on; the download's detection ends on its own
    assert [e.id for e in events if e.kind == "update"] == [flood.id]
    ends = {e.id: e.time_ns // SECOND for e in events if e.kind == "end"}
    assert set(ends) == {download.id, flood.id}
    assert ends[download.id] < ends[flood.id]


def test_an_attack_after_a_dormant_unknown_on_other_targets_is_new() -> None:
    decider = _decider(hold=30.0)
    plan = [("unknown", DOWNLOAD)] * 3 + [(None, SLOW)] * 10 + [("unknown", SLOW)] * 6
    events = _run(decider, plan)
    news = [e for e in events if e.kind == "new"]
    assert len(news) == 2
    assert news[1].time_ns == 14 * SECOND  # debounced on its own: two hits
    assert all(e.id == news[1].id for e in events if e.kind == "update")
    # the download's detection is not resumed; it ends when its hold runs out, at its last hit
    later = _run(decider, [(None, SLOW)] * 40)
    first_end = [e for e in later if e.id == news[0].id]
    assert [(e.kind, e.ended_ns) for e in first_end] == [("end", 2 * SECOND)]


def test_a_sustained_flood_with_its_background_stays_one_detection() -> None:
    decider = _decider(hold=30.0)
    # the flood's bulk stays on the broker while its share and the background vary
    rng = np.random.default_rng(7)
    plan: list[tuple[str | None, Evidence]] = []
    for _ in range(120):
        flood = int(rng.integers(400, 3000))
        camera = int(rng.integers(90, 130))
        plan.append(
            (
                "unknown" if rng.random() > 0.1 else "syn_flood",
                Evidence(
                    packets=flood + camera + 20,
                    top_destinations=((BROKER, flood), ("10.0.0.40", camera), ("10.0.0.9", 20)),
                    top_ports=((1883, flood), (5004, camera)),
                ),
            )
        )
    events = _run(decider, [*plan, *[(None, FLOOD)] * 40])
    assert [e.kind for e in events].count("new") == 1
    assert len({e.id for e in events}) == 1
    assert events[-1].kind == "end"


def _scan_window(t: int) -> Evidence:
    """A Mirai-style telnet scan: 5 new random internet addresses each second, all on port 23."""
    hosts = tuple((f"203.0.{t}.{k}", 40) for k in range(5))
    return Evidence(packets=400, top_destinations=hosts, top_ports=((23, 380), (1883, 20)))


def test_a_scan_of_random_addresses_on_one_port_stays_one_detection() -> None:
    # its bulk addresses change every window, its port does not: one attack, one detection
    events = _run(_decider(hold=30.0), [("syn_flood", _scan_window(t)) for t in range(60)])
    assert [e.kind for e in events].count("new") == 1

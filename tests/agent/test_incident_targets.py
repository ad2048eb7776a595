"""An attack that starts inside another open detection: targets are where a window's traffic
went (its bulk, not every busy address), and a hit that went elsewhere raises its own alarm.

The case from the open-set benchmark: a benign download raises ``unknown``, then a flood on the
broker begins while that detection is still open (or dormant). Every window's top list names
the broker, which all sensors publish to, so by top lists alone the two shared a target.
And the other way round: one scanner whose bulk moves to new addresses and new ports at once
is still one attack, held together by its source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from agent.decide import TOP_K, Decider, DecisionPolicy, Event, Evidence, Targets

LABELS = ("benign", "syn_flood", "unknown")
SECOND = 1_000_000_000
BROKER = "10.0.0.1"
# a download to a camera from a server: its bulk to 10.0.0.40, the broker's everyday
# publishes beside it
DOWNLOAD = Evidence(
    packets=2300,
    top_sources=(("198.51.100.20", 1500), ("10.0.0.40", 650), ("10.0.0.21", 120)),
    top_destinations=(("10.0.0.40", 1500), ("198.51.100.20", 650), (BROKER, 120)),
    top_ports=((43995, 1500), (443, 650), (1883, 120)),
)
# a flood on the broker from 10.0.0.66 (the broker answers it), the camera's stream beside it
FLOOD = Evidence(
    packets=1400,
    top_sources=(("10.0.0.66", 980), (BROKER, 300), ("10.0.0.9", 110)),
    top_destinations=((BROKER, 980), ("10.0.0.66", 300), ("10.0.0.40", 110)),
    top_ports=((1883, 860), (49812, 300), (5004, 110)),
)
# a slow attack on the broker: few packets, most of them still the broker's
SLOW = Evidence(
    packets=400,
    top_sources=(("10.0.0.66", 300), (BROKER, 64), ("10.0.0.9", 24)),
    top_destinations=((BROKER, 300), ("10.0.0.66", 64), ("10.0.0.100", 24)),
    top_ports=((1883, 140), (5004, 110), (22, 46)),
)


def _decider(hold: float = 0.0) -> Decider:
    """1 s windows, the agent's defaults: updates every 5 windows, quiet after 3 s."""
    policy = DecisionPolicy.from_manifest(LABELS, {}, {}, quiet_s=3.0, update_s=5.0, hold_s=hold)
    return Decider(policy, "m-1", "lan")


def _run(decider: Decider, plan: list[tuple[str | None, Evidence]], t0: int = 0) -> list[Event]:
    events: list[Event] = []
    for t, (label, evidence) in enumerate(plan, start=t0):
        row = np.zeros(len(LABELS))
        row[LABELS.index(label or "benign")] = 0.9
        events += decider.observe(t * SECOND, row, evidence)
    return events


def test_targets_are_the_bulk_of_a_window() -> None:
    assert Targets.of(DOWNLOAD) == Targets(("10.0.0.40",), (43995,), ("198.51.100.20",))
    assert Targets.of(FLOOD) == Targets((BROKER,), (1883,), ("10.0.0.66",))
    # no address carries half: the busiest ones until half is carried
    even = Evidence(packets=90, top_destinations=(("a", 30), ("b", 30), ("c", 30)))
    assert Targets.of(even).addresses == ("a", "b")
    # top lists merged from several steps may count more than ``packets`` says
    merged = Evidence(packets=0, top_ports=((1, 4), (2, 4), (3, 2)))
    assert Targets.of(merged).ports == (1, 2)
    assert Targets.of(Evidence()) == Targets()
    # the broker is in both top lists, not in both bulks
    assert not Targets.of(DOWNLOAD).overlaps(Targets.of(FLOOD))


def test_a_hit_is_elsewhere_only_with_no_shared_address_port_or_source() -> None:
    download = Targets.of(DOWNLOAD)
    assert download.elsewhere(Targets.of(FLOOD))
    # the same server, now on the broker: the same actor, not another attack
    assert not download.elsewhere(Targets((BROKER,), (1883,), ("198.51.100.20",)))
    assert not download.elsewhere(Targets((BROKER,), (43995,), ("10.0.0.66",)))
    assert not download.elsewhere(Targets(("10.0.0.40",), (1883,), ("10.0.0.66",)))
    # evidence naming no source: addresses and ports decide, as before sources were kept
    assert download.elsewhere(Targets((BROKER,), (1883,)))
    # sources alone never make two hits the same targets (two attackers on one victim do)
    assert not Targets((BROKER,), (), ("a",)).overlaps(Targets(("10.0.0.40",), (), ("a",)))
    assert Targets((BROKER,), (), ("a",)).overlaps(Targets((BROKER,), (), ("b",)))


def test_a_flood_inside_an_open_unknown_raises_its_own_detection() -> None:
    decider = _decider()
    plan = [("unknown", DOWNLOAD)] * 4 + [("unknown", FLOOD)] * 12 + [(None, FLOOD)] * 6
    events = _run(decider, plan)
    news = [e for e in events if e.kind == "new"]
    assert [(e.label, e.time_ns // SECOND) for e in news] == [("unknown", 1), ("unknown", 6)]
    download, flood = news
    assert download.id != flood.id
    # raised when the download's detection was due its update: the hit went elsewhere
    assert Targets.of(flood.evidence) == Targets((BROKER,), (1883,), ("10.0.0.66",))
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
    later = _run(decider, [(None, SLOW)] * 40, t0=len(plan))  # the stream goes on
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


SCANNER = "203.0.113.9"
SENSORS = tuple(f"10.0.0.{20 + k}" for k in range(6))


def _window(probes: list[tuple[str, str, int]]) -> Evidence:
    """One second's evidence from its probes (source, destination, port), with the sensors'
    everyday publishes to the broker beside them; top lists as the agent makes them (the
    busiest five, ties to the one seen first)."""
    packets = [*probes, *((SENSORS[k % 6], BROKER, 1883) for k in range(20))]
    sources = Counter(src for src, _, _ in packets).most_common(TOP_K)
    destinations = Counter(dst for _, dst, _ in packets).most_common(TOP_K)
    ports = Counter(port for _, _, port in packets).most_common(TOP_K)
    return Evidence(len(packets), 0, tuple(sources), tuple(ports), tuple(destinations))


def _host_group_scan(seconds: int) -> list[Evidence]:
    """nmap -sS -T4 of the top 1,000 ports over a /24, 2,000 probes a second from one scanner.

    nmap scans hosts in groups, each group's ports in random order with the group's hosts
    interleaved on each port: within a group the addresses repeat, but every group brings new
    addresses and new ports (a group of 32 lasts 16 s here). Each host and each port gets more
    packets a second than the broker or its port, so the everyday traffic is in no bulk.
    """
    rng = np.random.default_rng(3)
    group, rate, probes = 32, 2000, []
    for first in range(1, 255, group):
        hosts = [f"192.168.50.{h}" for h in range(first, min(first + group, 255))]
        for port in rng.permutation(np.arange(1, 1001)).tolist():
            probes += [(SCANNER, host, port) for host in hosts]
        if len(probes) >= seconds * rate:
            break
    return [_window(probes[t * rate : (t + 1) * rate]) for t in range(seconds)]


def _service_sweep(seconds: int) -> list[Evidence]:
    """A host after host sweep of one service port each (the camera's RTSP, the hub's web
    port, a printer's JetDirect...): 2 s on each host, 100 probes a second, so every window's
    bulk is one address and one port, both new every other second."""
    services = (554, 8123, 9100, 8080, 1900, 5683, 502, 47808, 8883, 5353)
    return [
        _window([(SCANNER, f"192.168.50.{10 + t // 2}", services[(t // 2) % 10])] * 100)
        for t in range(seconds)
    ]


def _rotating_sweep(seconds: int) -> list[Evidence]:
    """A sweep of random internet addresses that moves to the next port every 5 s (the
    update period): new addresses every window, a new port at every update."""
    ports = (23, 2323, 22, 80, 8080, 7547, 5555, 37215, 52869, 81, 8443, 60001)
    return [
        _window([(SCANNER, f"198.18.{t}.{k}", ports[(t // 5) % 12]) for k in range(5)] * 80)
        for t in range(seconds)
    ]


@pytest.mark.parametrize("scan", [_host_group_scan, _service_sweep, _rotating_sweep])
def test_a_scan_over_new_addresses_and_ports_stays_one_detection(
    scan: Callable[[int], list[Evidence]],
) -> None:
    # every update's bulk names addresses and ports the detection never saw, from one scanner
    windows = scan(60)
    assert all(Targets.of(w).addresses and Targets.of(w).ports for w in windows)
    events = _run(_decider(hold=30.0), [("syn_flood", w) for w in windows])
    assert [e.kind for e in events].count("new") == 1
    assert len({e.id for e in events}) == 1


def test_a_scan_in_bursts_resumes_its_detection_by_its_source() -> None:
    # 2 s on each host, its own service port, then 4 s of nothing the model flags: dormant
    # between hosts (quiet after 3 s), and each burst names a new address and port
    services = (554, 8123, 9100, 8080, 1900, 5683, 502, 47808, 8883, 5353)
    plan: list[tuple[str | None, Evidence]] = []
    for t in range(60):
        probe = (SCANNER, f"192.168.50.{10 + t // 6}", services[t // 6])
        plan.append(("syn_flood", _window([probe] * 100)) if t % 6 < 2 else (None, _window([])))
    events = _run(_decider(hold=30.0), plan)
    assert [e.kind for e in events].count("new") == 1
    assert [e.kind for e in events].count("update") >= 9  # every burst resumed it


def _reflection(t: int) -> Evidence:
    """A SYN/ACK reflection on one victim: the same reflectors, the victim's ports 21 and 9069."""
    return Evidence(
        packets=300,
        top_sources=(("75.136.225.254", 120), ("93.114.150.139", 60), (f"198.51.{t}.7", 5)),
        top_destinations=(("10.10.10.10", 300),),
        top_ports=((21, 150), (9069, 60), (1000 + t, 5)),
    )


def test_the_same_traffic_under_another_label_stays_one_detection_at_any_age() -> None:
    # 10 minutes, past the merge horizon (300 s): the model reads some bursts as a SYN flood
    plan = [("syn_flood" if 400 <= t < 406 else "unknown", _reflection(t)) for t in range(600)]
    events = _run(_decider(hold=30.0), plan)
    assert [e.kind for e in events].count("new") == 1
    assert dict(events[-1].labels)["syn_flood"] >= 2


def test_a_brute_force_after_a_scan_from_the_same_host_is_its_own_detection() -> None:
    scan = Evidence(
        packets=400,
        top_sources=(("10.0.0.66", 400),),
        top_destinations=(("10.0.0.40", 400),),
        top_ports=tuple((p, 80) for p in (81, 8081, 5900, 3389, 25)),
    )
    brute = Evidence(
        packets=400,
        top_sources=(("10.0.0.66", 400),),
        top_destinations=(("10.0.0.40", 400),),
        top_ports=((22, 390), (81, 10)),
    )
    # past the merge horizon (300 s), where only the same traffic still joins
    plan = [("unknown", scan)] * 320 + [("syn_flood", brute)] * 20
    events = _run(_decider(hold=30.0), plan)
    assert [e.label for e in events if e.kind == "new"] == ["unknown", "syn_flood"]

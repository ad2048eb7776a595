"""Choosing ``hold`` on generated traffic: bursty attacks as one detection, attacks in a row apart.

``hold`` keeps a quiet detection dormant so that the same label on the same targets resumes it
(a model that fires on a long attack in bursts). Too short and a bursty attack is many
detections; too long and it costs nothing here, but a different attack that follows on the same
targets must still be its own detection (that is decided by label, not by ``hold``). This
measures both on generated traffic only, with seeds no benchmark reports on:

* bursty: every attack kind in bursts of 4 s with pauses of 4-15 s (drawn from the seed) for
  ~80 s, kinds 150 s apart: detections (``new`` events) per attack, target <= 2;
* campaign: the same with 4 bursts of 20-60 s and pauses of 20-120 s (a campaign over minutes):
  a pause past ``hold`` with nothing else joining it is a new detection, which the agent links
  to the one before as a recurrence (``recur``, an hour): incidents per attack are counted too,
  and the attacks with a detection linked to an incident opened before they began (the model
  gave two attacks one label from one sender: linked across attacks);
* in a row: the ``demo-test`` and ``mixed`` presets on seeds 901-903 / 911-913: attacks found
  under their own label and under any label (``benchmarks.detection``'s credit), which must not
  drop against ``hold`` = 0 (a detection ends after ``quiet``).

The model is the detection benchmark's CNN (1 s steps), trained here unless ``--bundle`` is
given. Run: ``python -m benchmarks.incident_hold [--quick] [--bundle B --trust-key K]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.detection import PLANS, replay_scenario, train_bundle

if TYPE_CHECKING:
    from agent.bundle import Bundle
    from training.synth.scenario import AttackSpec

HOLDS = (0.0, 10.0, 20.0, 30.0, 60.0, 120.0)
ROW_SEEDS = {"demo-test": (901, 902, 903), "mixed": (911, 912, 913)}
APART_S = 150.0


@dataclass(frozen=True)
class Bursts:
    """Every attack kind in ``count`` bursts with pauses between, one kind after another."""

    name: str
    seed: int
    count: int
    burst_s: tuple[float, float]  # drawn per burst
    pause_s: tuple[float, float]  # drawn per pause


# bursts of 4 s with short pauses (a model firing on a long attack now and then), and a
# campaign: minute-long bursts with pauses of up to two minutes, as a reflection campaign runs
BURSTY = Bursts("bursty", 921, 8, (4.0, 4.0), (4.0, 15.0))
CAMPAIGN = Bursts("campaign", 922, 4, (20.0, 60.0), (20.0, 120.0))

Span = tuple[str, float, float]  # attack kind, first burst's start, last pause's end (s)


def bursty_attacks(plan: Bursts) -> tuple[tuple[Span, ...], tuple[AttackSpec, ...]]:
    """Every attack kind in bursts, one kind after another; also each kind's span."""
    from training.synth.scenario import AttackSpec, preset

    rates = {a.kind: a.intensity for a in preset("demo-test").attacks}
    rng = np.random.default_rng(plan.seed)
    specs: list[AttackSpec] = []
    spans: list[Span] = []
    at = 20.0
    for kind in rates:
        first = at
        for _ in range(plan.count):
            burst = float(rng.uniform(*plan.burst_s))
            specs.append(AttackSpec(kind, at, at + burst, rates[kind]))
            at += burst + float(rng.uniform(*plan.pause_s))
        spans.append((kind, first, at))
        at += APART_S
    return tuple(spans), tuple(specs)


@dataclass(frozen=True)
class PerAttack:
    """What one bursty attack raised within its span (plus one window)."""

    detections: int  # ``new`` events
    incidents: int  # distinct incidents of those (a recurrence links to its first detection)
    linked_before: bool  # one of them recurs an incident opened before the attack began


def bursty_detections(
    loaded: Bundle, folder: Path, hold: float, plan: Bursts = BURSTY
) -> dict[str, PerAttack]:
    """Detections and incidents raised within each bursty attack's span (plus one window)."""
    from agent.inference import Debounce
    from agent.replay import replay_capture
    from training.synth.scenario import preset
    from training.synth.traffic import generate_traffic

    spans, specs = bursty_attacks(plan)
    last = spans[-1][2]
    scenario = dataclasses.replace(
        preset("benign"), seed=plan.seed, duration=last + 30.0, attacks=specs
    )
    pcap = folder / plan.name / "traffic.pcap"
    if not pcap.exists():
        generate_traffic(scenario, folder / plan.name)
    debounce = Debounce(PLANS["full"].raise_k, PLANS["full"].raise_n, hold=hold)
    events = replay_capture(loaded, pcap, debounce=debounce).events
    t0 = scenario.start_time * 1_000_000_000
    grace = loaded.manifest.window * loaded.manifest.step.size_ns
    out: dict[str, PerAttack] = {}
    for kind, start, stop in spans:
        a, b = t0 + round(start * 1e9), t0 + round(stop * 1e9) + grace
        news = [e for e in events if e.kind == "new" and a < e.time_ns <= b]
        incidents = {e.incident_id for e in news}
        opened_here = {e.id for e in news}
        out[kind] = PerAttack(len(news), len(incidents), not incidents <= opened_here)
    return out


def in_a_row(loaded: Bundle, folder: Path, hold: float) -> tuple[int, int, int, int]:
    """(found by label, found by any label, attacks, events outside attacks) over the seeds."""
    from agent.inference import Debounce

    plan = PLANS["full"]
    debounce = Debounce(plan.raise_k, plan.raise_n, hold=hold)
    by_label = by_any = total = outside = 0
    for name, seeds in ROW_SEEDS.items():
        for seed in seeds:
            run = replay_scenario(name, seed, loaded, folder, debounce)
            total += len(run.steps)
            by_label += sum(1 for own, _ in run.steps.values() if own is not None)
            by_any += sum(1 for _, anyone in run.steps.values() if anyone is not None)
            outside += run.outside
    return by_label, by_any, total, outside


def main() -> None:
    from agent.bundle import load_bundle, load_public_key

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick training plan")
    parser.add_argument("--bundle", type=Path, help="a signed 1 s bundle instead of training")
    parser.add_argument("--trust-key", type=Path, help="the bundle's public key")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="iotids-bench-hold-") as tmp:
        folder = Path(tmp)
        bundle, key = args.bundle, args.trust_key
        if bundle is None or key is None:
            trained = train_bundle(folder, PLANS["quick" if args.quick else "full"])
            bundle, key = trained.bundle, trained.public_key
        loaded = load_bundle(bundle, [load_public_key(key)])
        for hold in HOLDS:
            line = [f"hold {hold:5.0f} s"]
            for plan in (BURSTY, CAMPAIGN):
                per_attack = bursty_detections(loaded, folder, hold, plan)
                counts = {k: a.detections for k, a in per_attack.items()}
                incidents = {k: a.incidents for k, a in per_attack.items()}
                over = sorted(k for k, n in counts.items() if n > 2)
                linked = sorted(k for k, a in per_attack.items() if a.linked_before)
                line.append(
                    f"{plan.name}: {sum(counts.values()):3d} detections for "
                    f"{len(per_attack)} attacks, max {max(counts.values())}, > 2: "
                    f"{', '.join(over) or '-'}; {sum(incidents.values())} incidents, max "
                    f"{max(incidents.values())}, linked across attacks: {', '.join(linked) or '-'}"
                )
                print(f"    {plan.name} detections per attack:", counts, flush=True)
                print(f"    {plan.name} incidents per attack:", incidents, flush=True)
            label, anyone, total, outside = in_a_row(loaded, folder, hold)
            line.append(
                f"in a row: {label}/{total} by label, {anyone}/{total} any label, {outside} outside"
            )
            print("  |  ".join(line), flush=True)


if __name__ == "__main__":
    main()
